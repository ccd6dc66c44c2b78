//! The slot format: one record of [`RECORD_LEN`] bytes at the start of a slot (magic, version,
//! kind, epoch, sender ID, generation, reserved-until or the factory mark, CRC-32), its
//! encoding and its checked decoding. The layout is in the [module docs](super).

use group_core::sequence::StoredSequence;
use group_core::wire::{Epoch, SenderId};

/// Magic at the start of every record.
pub const MAGIC: [u8; 4] = *b"DGSF";
/// Format version.
pub const VERSION: u8 = 1;
/// Bytes of a record that carry data (the rest of a slot stays blank).
pub const RECORD_LEN: usize = 28;
/// Smallest slot size.
pub const MIN_SLOT: usize = 32;
/// Largest slot size the store supports (flash whose write unit is larger is refused).
pub const MAX_SLOT: usize = 256;
/// What the factory record carries in place of a reservation mark.
pub const FACTORY_MARK: [u8; 8] = *b"FACTORY1";

const KIND_RESERVATION: u8 = 1;
const KIND_FACTORY: u8 = 2;
const CRC_AT: usize = 24;

/// A valid record's content.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Content {
    Factory,
    Reservation(StoredSequence),
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Encodes a record into the first [`RECORD_LEN`] bytes of `out` (the rest is left as is).
/// Returns `None` when its CRC would read as a blank word (pick another generation).
pub(super) fn encode(content: Content, generation: u32, out: &mut [u8; MAX_SLOT]) -> Option<()> {
    let mut r = [0u8; RECORD_LEN];
    let [m0, m1, m2, m3] = MAGIC;
    let [g0, g1, g2, g3] = generation.to_be_bytes();
    let (kind, [e0, e1], sid, ru) = match content {
        Content::Factory => (KIND_FACTORY, [0, 0], 0, FACTORY_MARK),
        Content::Reservation(s) => (
            KIND_RESERVATION,
            s.epoch.0.to_be_bytes(),
            s.sender_id.0,
            s.reserved_until.to_be_bytes(),
        ),
    };
    let [r0, r1, r2, r3, r4, r5, r6, r7] = ru;
    let head = [
        m0, m1, m2, m3, VERSION, kind, e0, e1, sid, 0, 0, 0, g0, g1, g2, g3, r0, r1, r2, r3, r4,
        r5, r6, r7,
    ];
    let crc = crc32(&head);
    if crc == u32::MAX {
        return None;
    }
    let [c0, c1, c2, c3] = crc.to_be_bytes();
    for (o, i) in r.iter_mut().zip(head.iter().chain([c0, c1, c2, c3].iter())) {
        *o = *i;
    }
    for (o, i) in out.iter_mut().zip(r.iter()) {
        *o = *i;
    }
    Some(())
}

/// Decodes a slot: `Err(())` if it is not a valid record.
pub(super) fn decode(slot: &[u8]) -> Result<(u32, Content), ()> {
    let r: &[u8; RECORD_LEN] = slot
        .get(..RECORD_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(())?;
    let [
        m0,
        m1,
        m2,
        m3,
        version,
        kind,
        e0,
        e1,
        sid,
        p0,
        p1,
        p2,
        g0,
        g1,
        g2,
        g3,
        r0,
        r1,
        r2,
        r3,
        r4,
        r5,
        r6,
        r7,
        c0,
        c1,
        c2,
        c3,
    ] = *r;
    let stored_crc = u32::from_be_bytes([c0, c1, c2, c3]);
    let body = r.get(..CRC_AT).ok_or(())?;
    if [m0, m1, m2, m3] != MAGIC
        || version != VERSION
        || [p0, p1, p2] != [0, 0, 0]
        || stored_crc == u32::MAX
        || crc32(body) != stored_crc
    {
        return Err(());
    }
    let generation = u32::from_be_bytes([g0, g1, g2, g3]);
    let ru = [r0, r1, r2, r3, r4, r5, r6, r7];
    match kind {
        KIND_FACTORY if [e0, e1, sid] == [0, 0, 0] && ru == FACTORY_MARK => {
            Ok((generation, Content::Factory))
        }
        KIND_RESERVATION => Ok((
            generation,
            Content::Reservation(StoredSequence {
                epoch: Epoch(u16::from_be_bytes([e0, e1])),
                sender_id: SenderId(sid),
                reserved_until: u64::from_be_bytes(ru),
            }),
        )),
        _ => Err(()),
    }
}
