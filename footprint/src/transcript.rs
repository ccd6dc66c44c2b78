//! What the key server and a second member said to the image's member, recorded on the host
//! by `tests/transcripts.rs` (the real [`KeyServer`](group_core::keydist::KeyServer) with
//! deterministic generators) and replayed by the image.
//!
//! Format: `"FPT1"`, then entries `tag[1] || now_ms[4, LE] || len[2, LE] || bytes[len]`, with
//! tag [`MESSAGE`] (a key-server message for the member to handle) or [`RECORD`] (a record
//! sealed by the second member, which opens to [`RECORD_PLAINTEXT`]).

/// The transcript's first bytes.
pub const MAGIC: &[u8; 4] = b"FPT1";
/// Tag of a key-server message.
pub const MESSAGE: u8 = 1;
/// Tag of a record from the second member.
pub const RECORD: u8 = 2;
/// What every recorded record carries.
pub const RECORD_PLAINTEXT: &[u8] = b"on";

/// One entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry<'a> {
    /// [`MESSAGE`] or [`RECORD`].
    pub tag: u8,
    /// When it arrives, in milliseconds.
    pub now_ms: u32,
    /// The datagram.
    pub bytes: &'a [u8],
}

/// The entries of a transcript; `None` where it is malformed (the iterator then stops).
pub struct Entries<'a> {
    rest: Option<&'a [u8]>,
}

/// Reads a transcript; `None` if it does not start with [`MAGIC`].
pub fn entries(t: &[u8]) -> Option<Entries<'_>> {
    let rest = t.strip_prefix(MAGIC.as_slice())?;
    Some(Entries { rest: Some(rest) })
}

impl<'a> Iterator for Entries<'a> {
    type Item = Option<Entry<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.take()?;
        if rest.is_empty() {
            return None;
        }
        let Some((&[tag, t0, t1, t2, t3, l0, l1], body)) = rest.split_first_chunk::<7>() else {
            return Some(None);
        };
        let len = usize::from(u16::from_le_bytes([l0, l1]));
        let (Some(bytes), Some(next)) = (body.get(..len), body.get(len..)) else {
            return Some(None);
        };
        self.rest = Some(next);
        Some(Some(Entry {
            tag,
            now_ms: u32::from_le_bytes([t0, t1, t2, t3]),
            bytes,
        }))
    }
}

/// Appends one entry to `out` (host side, used by the transcript generator).
pub fn push(out: &mut [u8], at: usize, tag: u8, now_ms: u32, bytes: &[u8]) -> Option<usize> {
    let len = u16::try_from(bytes.len()).ok()?;
    let end = at.checked_add(7)?.checked_add(bytes.len())?;
    let dst = out.get_mut(at..end)?;
    let (head, body) = dst.split_at_mut(7);
    head[0] = tag;
    head[1..5].copy_from_slice(&now_ms.to_le_bytes());
    head[5..7].copy_from_slice(&len.to_le_bytes());
    body.copy_from_slice(bytes);
    Some(end)
}
