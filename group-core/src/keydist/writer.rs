//! Device → server messages written by hand (issue 12): the bodies of [`JoinRequest`],
//! [`Ack`], [`Leave`] and [`RekeyNeeded`] in postcard's encoding (docs/key-distribution.md §2),
//! byte for byte what `postcard::to_slice(&Message)` writes, without serde. A member writes
//! only these four kinds, so with this writer and the borrowing reader ([`parse_server`]) it
//! links no postcard or serde code at all (the key server and the tools keep both).
//!
//! ```text
//! body        = kind (varint: 0 JoinRequest, 2 Ack, 3 Leave, 4 RekeyNeeded) || fields
//! header      = group_id (varint) || device_id (varint) || nonce[16] || counter (varint)
//! JoinRequest = header || role (varint) || len (varint) || public_key[len]
//!               || lost (00/01) || challenge (00, or 01 || [16])
//! Ack         = header || epoch (varint)
//! Leave       = header
//! RekeyNeeded = header || epoch (varint) || reason (varint)
//! ```
//!
//! Every varint is unsigned LEB128, minimal (the only form the decoders accept). A body that
//! does not fit `out` is [`Error::BufferTooSmall`]; nothing here panics.
//!
//! [`parse_server`]: super::parse_server

use super::error::Error;
use super::message::{Ack, DeviceHeader, JoinRequest, Leave, Message, RekeyNeeded, RekeyReport};
use super::vocabulary::{DeviceId, Role};

/// A device → server message, borrowed: what a member sends (and what
/// [`write_device_body`] writes). [`Message::as_device`] borrows one from a [`Message`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeviceMessage<'a> {
    /// Kind 0.
    JoinRequest(&'a JoinRequest),
    /// Kind 2.
    Ack(&'a Ack),
    /// Kind 3.
    Leave(&'a Leave),
    /// Kind 4.
    RekeyNeeded(&'a RekeyNeeded),
}

impl DeviceMessage<'_> {
    /// The header every device message starts with.
    pub fn header(&self) -> &DeviceHeader {
        match self {
            Self::JoinRequest(m) => &m.header,
            Self::Ack(m) => &m.header,
            Self::Leave(m) => &m.header,
            Self::RekeyNeeded(m) => &m.header,
        }
    }

    /// The sending device.
    pub fn device_id(&self) -> DeviceId {
        self.header().device_id
    }

    /// The kind's number (the postcard variant index of [`Message`]).
    fn kind(&self) -> u8 {
        match self {
            Self::JoinRequest(_) => 0,
            Self::Ack(_) => 2,
            Self::Leave(_) => 3,
            Self::RekeyNeeded(_) => 4,
        }
    }
}

impl Message {
    /// This message as a [`DeviceMessage`], if it is a device → server kind.
    pub fn as_device(&self) -> Option<DeviceMessage<'_>> {
        match self {
            Message::JoinRequest(m) => Some(DeviceMessage::JoinRequest(m)),
            Message::Ack(m) => Some(DeviceMessage::Ack(m)),
            Message::Leave(m) => Some(DeviceMessage::Leave(m)),
            Message::RekeyNeeded(m) => Some(DeviceMessage::RekeyNeeded(m)),
            Message::KeyBundle(_)
            | Message::Removed(_)
            | Message::JoinChallenge(_)
            | Message::SenderKeys(_) => None,
        }
    }
}

/// A cursor writing into a caller's buffer; running out of room is [`Error::BufferTooSmall`].
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.at.checked_add(b.len()).ok_or(Error::BufferTooSmall)?;
        self.out
            .get_mut(self.at..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(b);
        self.at = end;
        Ok(())
    }

    fn byte(&mut self, b: u8) -> Result<(), Error> {
        self.bytes(&[b])
    }

    /// Unsigned LEB128, least significant 7 bits first, minimal (postcard's `u16`, `u32`,
    /// `u64`, enum tags and sequence lengths alike).
    fn varint(&mut self, mut v: u64) -> Result<(), Error> {
        loop {
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                return self.byte(low);
            }
            self.byte(low | 0x80)?;
        }
    }

    fn header(&mut self, h: &DeviceHeader) -> Result<(), Error> {
        self.varint(u64::from(h.group_id))?;
        self.varint(u64::from(h.device_id.0))?;
        self.bytes(&h.nonce)?;
        self.varint(h.counter)
    }
}

/// The index of a rekey reason (its postcard variant index).
fn reason_index(r: RekeyReport) -> u8 {
    match r {
        RekeyReport::SenderBudget => 0,
        RekeyReport::GroupUsage => 1,
        RekeyReport::SequenceExhausted => 2,
        RekeyReport::IntegrityLimit => 3,
        RekeyReport::Expired => 4,
        RekeyReport::Requested => 5,
    }
}

/// Writes the body of `message` (`postcard(Message)`, its kind first) into `out`; returns its
/// length. The same bytes as postcard's encoder for every message (checked by
/// `keydist_prop`'s `hand_written_device_bodies_equal_postcard`), so the key server decodes it
/// as before. A body that does not fit `out` is [`Error::BufferTooSmall`].
pub fn write_device_body(message: DeviceMessage<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let mut w = Writer { out, at: 0 };
    w.byte(message.kind())?;
    w.header(message.header())?;
    match message {
        DeviceMessage::JoinRequest(m) => {
            w.byte(match m.role {
                Role::Listener => 0,
                Role::Sender => 1,
            })?;
            // At most 65 bytes: the length is one varint byte.
            w.varint(m.public_key.len() as u64)?;
            w.bytes(&m.public_key)?;
            w.byte(u8::from(m.sequence_state_lost))?;
            match &m.challenge {
                None => w.byte(0)?,
                Some(c) => {
                    w.byte(1)?;
                    w.bytes(c)?;
                }
            }
        }
        DeviceMessage::Ack(m) => w.varint(u64::from(m.epoch))?,
        DeviceMessage::Leave(_) => {}
        DeviceMessage::RekeyNeeded(m) => {
            w.varint(u64::from(m.epoch))?;
            w.byte(reason_index(m.reason))?;
        }
    }
    Ok(w.at)
}
