//! Server → device messages decoded by borrowing (issue 12): what a member receives, read field
//! by field from the datagram with no copy of the sender list, the stale list or the sealed
//! secret. A [`BundleView`] is a few dozen bytes on the stack whatever the bundle lists (up to
//! [`MAX_SENDERS`] senders); [`parse`](super::parse) decodes the same bytes into an owned
//! [`Message`](super::Message) of over a kilobyte.
//!
//! The encoding is the postcard one of docs/key-distribution.md §2 (see `message.rs`), read
//! strictly: varints minimal and within their type, `bool` and `Option` tags `00`/`01`, enum
//! tags known, lengths within their capacity (at most [`MAX_SENDERS`] sender entries, of which
//! at most [`MAX_SIGNING_SENDERS`] keyed), nothing left over. So exactly the byte strings
//! [`parse`](super::parse) accepts as server messages are accepted here.
//! Every refusal is a typed [`Error`]; nothing here panics or verifies anything.

use super::error::Error;
use super::message::{
    BundlePolicy, COMPRESSED_KEY_LEN, CompressedKey, JoinChallenge, KeyBundle, MAX_SEALED_LEN,
    Removed, RemovedReason, SealedSecret, SenderEntry, SenderKeys, ServerHeader, WireAdmission,
    WireNonceProfile,
};
use super::sender_list::SenderEntries;
use super::vocabulary::{
    DeviceId, MAX_PART_KEYS, MAX_SENDERS, MAX_SIGNING_SENDERS, MAX_STALE, Mode, NONCE_LEN, VERSION,
};

/// A cursor over postcard bytes that refuses every non-canonical encoding.
#[derive(Clone, Copy)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Error> {
        let (&b, rest) = self.rest.split_first().ok_or(Error::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(Error::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A LEB128 varint of at most `max_bytes` bytes and at most `max`; minimal.
    fn varint(&mut self, max_bytes: u32, max: u64) -> Result<u64, Error> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            let shift = i.saturating_mul(7);
            if shift >= 64 || (shift == 63 && part > 1) {
                return Err(Error::Malformed);
            }
            value |= part << shift;
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    // A trailing zero group: a non-minimal encoding of a shorter value.
                    return Err(Error::NonCanonical);
                }
                return if value > max {
                    Err(Error::Malformed)
                } else {
                    Ok(value)
                };
            }
        }
        Err(Error::Malformed)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        u16::try_from(self.varint(3, u64::from(u16::MAX))?).map_err(|_| Error::Malformed)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        u32::try_from(self.varint(5, u64::from(u32::MAX))?).map_err(|_| Error::Malformed)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        self.varint(10, u64::MAX)
    }

    /// A sequence length or an enum tag, at most `max`.
    fn small(&mut self, max: usize) -> Result<usize, Error> {
        let max = u64::try_from(max).map_err(|_| Error::Malformed)?;
        usize::try_from(self.varint(5, max)?).map_err(|_| Error::Malformed)
    }

    fn flag(&mut self) -> Result<bool, Error> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Malformed),
        }
    }

    fn key_option(&mut self) -> Result<Option<CompressedKey>, Error> {
        Ok(if self.flag()? {
            Some(CompressedKey::from(self.array::<COMPRESSED_KEY_LEN>()?))
        } else {
            None
        })
    }

    fn server_header(&mut self) -> Result<ServerHeader, Error> {
        Ok(ServerHeader {
            group_id: self.u32()?,
            device_id: DeviceId(self.u32()?),
            counter: self.u64()?,
        })
    }

    fn policy(&mut self) -> Result<BundlePolicy, Error> {
        Ok(BundlePolicy {
            replay_window: self.u16()?,
            admission: match self.small(1)? {
                0 => WireAdmission::TrustFirst,
                _ => WireAdmission::Strict,
            },
            nonce_profile: match self.small(1)? {
                0 => WireNonceProfile::Strict,
                _ => WireNonceProfile::Compatibility,
            },
            signatures_required: self.flag()?,
            grace_ms: self.u32()?,
            max_fragment_len: self.u16()?,
        })
    }
}

/// A bundle's sender list, still encoded: each entry is decoded when iterated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderList<'a> {
    len: usize,
    /// The entries' bytes (checked when the bundle was parsed).
    bytes: &'a [u8],
}

impl<'a> SenderList<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries, in the order listed.
    pub fn iter(&self) -> impl Iterator<Item = SenderEntry> + Clone + 'a {
        let mut r = Reader { rest: self.bytes };
        (0..self.len).map_while(move |_| read_sender(&mut r).ok())
    }

    /// Whether `sid` is listed.
    pub fn contains(&self, sid: u8) -> bool {
        self.iter().any(|s| s.sender_id == sid)
    }
}

fn read_sender(r: &mut Reader<'_>) -> Result<SenderEntry, Error> {
    Ok(SenderEntry {
        sender_id: r.byte()?,
        public_key: r.key_option()?,
    })
}

/// A sealed secret, borrowed from the datagram (or from a [`SealedSecret`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedView<'a> {
    /// Signed mode: the server's ephemeral P-256 key (compressed). PSK mode: absent.
    pub ephemeral: Option<CompressedKey>,
    /// AES-128-CCM ciphertext followed by the 16-byte tag.
    pub ciphertext: &'a [u8],
}

impl SealedSecret {
    /// This secret, borrowed.
    pub fn view(&self) -> SealedView<'_> {
        SealedView {
            ephemeral: self.ephemeral,
            ciphertext: &self.ciphertext,
        }
    }
}

/// A [`KeyBundle`] decoded by borrowing: the same fields, with the sender list, the stale list
/// and the sealed secret left in the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleView<'a> {
    /// Common fields.
    pub header: ServerHeader,
    /// The nonce of the join request this answers, if any.
    pub echo: Option<[u8; NONCE_LEN]>,
    /// The epoch the keys are for.
    pub epoch: u16,
    /// The cipher suite (TLS code point).
    pub suite: u16,
    /// The recipient's sender ID (senders only).
    pub sender_id: Option<u8>,
    /// The record-layer policy.
    pub policy: BundlePolicy,
    /// Milliseconds from reception until the epoch becomes the one to send in.
    pub activate_in_ms: u32,
    /// Milliseconds from activation after which the keys expire (0: no expiry).
    pub lifetime_ms: u32,
    /// Every sender of the group in this epoch.
    pub senders: SenderList<'a>,
    /// Sender IDs revoked or released since the previous epoch.
    pub stale: &'a [u8],
    /// The key material, encrypted to the recipient.
    pub sealed: SealedView<'a>,
}

impl BundleView<'_> {
    /// The owned [`KeyBundle`] with the same fields: for tests and diagnostics.
    pub fn to_bundle(&self) -> Result<KeyBundle, Error> {
        let mut senders = SenderEntries::new();
        for s in self.senders.iter() {
            senders.push(s).map_err(|_| Error::CapacityExceeded)?;
        }
        Ok(KeyBundle {
            header: self.header,
            echo: self.echo,
            epoch: self.epoch,
            suite: self.suite,
            sender_id: self.sender_id,
            policy: self.policy,
            activate_in_ms: self.activate_in_ms,
            lifetime_ms: self.lifetime_ms,
            senders,
            stale: heapless::Vec::from_slice(self.stale).map_err(|_| Error::CapacityExceeded)?,
            sealed: SealedSecret {
                ephemeral: self.sealed.ephemeral,
                ciphertext: heapless::Vec::from_slice(self.sealed.ciphertext)
                    .map_err(|_| Error::CapacityExceeded)?,
            },
        })
    }
}

/// A [`SenderKeys`] part decoded by borrowing: the keys stay in the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderKeysView<'a> {
    /// Common fields.
    pub header: ServerHeader,
    /// The bundle's epoch.
    pub epoch: u16,
    /// The bundle's counter.
    pub bundle: u64,
    /// Index in the bundle's sender list of the entry the first key belongs to.
    pub first: u8,
    /// The keys, 33 bytes each (at most [`MAX_PART_KEYS`]).
    keys: &'a [u8],
}

impl<'a> SenderKeysView<'a> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len() / COMPRESSED_KEY_LEN
    }

    /// Whether the part carries no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in list order (entry `first`, then `first + 1`, …).
    pub fn keys(&self) -> impl Iterator<Item = CompressedKey> + 'a {
        self.keys.chunks_exact(COMPRESSED_KEY_LEN).map(|c| {
            let mut k = [0u8; COMPRESSED_KEY_LEN];
            k.copy_from_slice(c);
            CompressedKey::from(k)
        })
    }

    /// The owned [`SenderKeys`] with the same fields: for tests and diagnostics.
    pub fn to_owned_part(&self) -> Result<SenderKeys, Error> {
        let mut keys = heapless::Vec::new();
        for k in self.keys() {
            keys.push(k).map_err(|_| Error::CapacityExceeded)?;
        }
        Ok(SenderKeys {
            header: self.header,
            epoch: self.epoch,
            bundle: self.bundle,
            first: self.first,
            keys,
        })
    }
}

/// A server → device message, decoded by borrowing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// Kind 1: a join response or rekey.
    KeyBundle(BundleView<'a>),
    /// Kind 5: removal.
    Removed(Removed),
    /// Kind 6: a join challenge.
    JoinChallenge(JoinChallenge),
    /// Kind 7: keys of a bundle's sender list that the bundle does not carry.
    SenderKeys(SenderKeysView<'a>),
}

impl ServerMessage<'_> {
    /// The group named.
    pub fn group_id(&self) -> u32 {
        match self {
            Self::KeyBundle(b) => b.header.group_id,
            Self::Removed(r) => r.header.group_id,
            Self::JoinChallenge(c) => c.group_id,
            Self::SenderKeys(p) => p.header.group_id,
        }
    }

    /// The recipient device.
    pub fn device_id(&self) -> DeviceId {
        match self {
            Self::KeyBundle(b) => b.header.device_id,
            Self::Removed(r) => r.header.device_id,
            Self::JoinChallenge(c) => c.device_id,
            Self::SenderKeys(p) => p.header.device_id,
        }
    }

    /// The server header (none in a challenge).
    pub fn server_header(&self) -> Option<&ServerHeader> {
        match self {
            Self::KeyBundle(b) => Some(&b.header),
            Self::Removed(r) => Some(&r.header),
            Self::SenderKeys(p) => Some(&p.header),
            Self::JoinChallenge(_) => None,
        }
    }
}

/// A server message split into its parts; nothing verified yet.
#[derive(Clone, Copy, Debug)]
pub struct ServerProtected<'a> {
    /// The protection mode.
    pub mode: Mode,
    /// The decoded body.
    pub message: ServerMessage<'a>,
    /// `version || mode || body`: what the trailer protects.
    pub protected: &'a [u8],
    /// The signature or tag.
    pub trailer: &'a [u8],
}

/// Splits and decodes a server → device message by borrowing, without verifying it. The
/// device → server kinds are [`Error::UnexpectedKind`]; unknown versions, modes and kinds,
/// truncation, undecodable or non-canonical bodies and trailing bytes are typed errors.
pub fn parse_server(bytes: &[u8]) -> Result<ServerProtected<'_>, Error> {
    let (&version, rest) = bytes.split_first().ok_or(Error::Truncated)?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let (&mode_byte, _) = rest.split_first().ok_or(Error::Truncated)?;
    let mode = Mode::from_byte(mode_byte).ok_or(Error::UnsupportedMode(mode_byte))?;
    let split = bytes
        .len()
        .checked_sub(mode.trailer_len())
        .filter(|s| *s > 2)
        .ok_or(Error::Truncated)?;
    let (protected, trailer) = bytes.split_at_checked(split).ok_or(Error::Truncated)?;
    let body = protected.get(2..).ok_or(Error::Truncated)?;
    let mut r = Reader { rest: body };
    let message = match r.small(7)? {
        1 => ServerMessage::KeyBundle(read_bundle(&mut r)?),
        5 => ServerMessage::Removed(Removed {
            header: r.server_header()?,
            reason: match r.small(1)? {
                0 => RemovedReason::Left,
                _ => RemovedReason::Revoked,
            },
        }),
        6 => ServerMessage::JoinChallenge(JoinChallenge {
            group_id: r.u32()?,
            device_id: DeviceId(r.u32()?),
            echo: r.array()?,
            challenge: r.array()?,
        }),
        7 => ServerMessage::SenderKeys(read_sender_keys(&mut r)?),
        _ => return Err(Error::UnexpectedKind),
    };
    if !r.rest.is_empty() {
        return Err(Error::TrailingBytes);
    }
    Ok(ServerProtected {
        mode,
        message,
        protected,
        trailer,
    })
}

fn read_sender_keys<'a>(r: &mut Reader<'a>) -> Result<SenderKeysView<'a>, Error> {
    let header = r.server_header()?;
    let epoch = r.u16()?;
    let bundle = r.u64()?;
    let first = r.byte()?;
    let n = r.small(MAX_PART_KEYS)?;
    let keys = r.take(n.saturating_mul(COMPRESSED_KEY_LEN))?;
    Ok(SenderKeysView {
        header,
        epoch,
        bundle,
        first,
        keys,
    })
}

fn read_bundle<'a>(r: &mut Reader<'a>) -> Result<BundleView<'a>, Error> {
    let header = r.server_header()?;
    let echo = if r.flag()? { Some(r.array()?) } else { None };
    let epoch = r.u16()?;
    let suite = r.u16()?;
    let sender_id = if r.flag()? { Some(r.byte()?) } else { None };
    let policy = r.policy()?;
    let activate_in_ms = r.u32()?;
    let lifetime_ms = r.u32()?;
    let len = r.small(MAX_SENDERS)?;
    let start = *r;
    let mut keyed = 0usize;
    for _ in 0..len {
        if read_sender(r)?.public_key.is_some() {
            keyed = keyed.saturating_add(1);
        }
    }
    if keyed > MAX_SIGNING_SENDERS {
        return Err(Error::Malformed);
    }
    let used = start.rest.len().saturating_sub(r.rest.len());
    let senders = SenderList {
        len,
        bytes: start.rest.get(..used).ok_or(Error::Truncated)?,
    };
    let n = r.small(MAX_STALE)?;
    let stale = r.take(n)?;
    let ephemeral = r.key_option()?;
    let n = r.small(MAX_SEALED_LEN)?;
    let ciphertext = r.take(n)?;
    Ok(BundleView {
        header,
        echo,
        epoch,
        suite,
        sender_id,
        policy,
        activate_in_ms,
        lifetime_ms,
        senders,
        stale,
        sealed: SealedView {
            ephemeral,
            ciphertext,
        },
    })
}
