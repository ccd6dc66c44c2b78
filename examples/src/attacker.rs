//! The attacker: a plain UDP socket on the same link, without any key. It listens to the group
//! (every record is visible on the network) and sends what it likes to the group address.
//!
//! Each forgery below uses only bytes the attacker captured and the public record layout
//! (docs/wire-format.md §1): 13-byte header (`type`, `version`, `epoch`, `sid`, 40-bit `seq`,
//! `length`), then an 8-byte explicit nonce, the ciphertext and the tag.

use std::io;
use std::time::{Duration, Instant};

use group_core::wire::{HEADER_LEN, RecordHeader};
use group_std::net::{MulticastConfig, MulticastSocket};

use crate::node::RecordId;

/// Offset of the ciphertext in an AES-suite record (header and explicit nonce before it).
pub const CIPHERTEXT_OFFSET: usize = HEADER_LEN + 8;

/// The attacker's socket and what it captured.
pub struct Attacker {
    socket: MulticastSocket,
    captured: Vec<Vec<u8>>,
    /// Cheap deterministic "random" bytes for forgeries (the attacker needs no real RNG).
    noise: u64,
}

impl Attacker {
    /// Joins the group as a passive listener.
    pub fn open(cfg: &MulticastConfig) -> io::Result<Self> {
        let mut cfg = cfg.clone();
        cfg.read_timeout = Some(Duration::from_millis(10));
        Ok(Self {
            socket: MulticastSocket::open(&cfg)?,
            captured: Vec::new(),
            noise: 0x9e37_79b9_7f4a_7c15,
        })
    }

    /// Reads everything that arrived since the last call (waiting `quiet` for stragglers) and
    /// returns how many datagrams were captured in total.
    pub fn capture(&mut self, quiet: Duration) -> io::Result<usize> {
        let mut buf = vec![0u8; 2048];
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline {
            if let Some((n, _)) = self.socket.recv(&mut buf)? {
                self.captured.push(buf.get(..n).unwrap_or(&[]).to_vec());
            }
        }
        Ok(self.captured.len())
    }

    /// A captured record with this identity.
    pub fn captured(&self, id: RecordId) -> Option<Vec<u8>> {
        self.captured
            .iter()
            .find(|r| RecordId::of(r) == Some(id))
            .cloned()
    }

    /// Sends a datagram to the group.
    pub fn inject(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send(datagram)
    }

    /// Random-looking bytes.
    pub fn noise(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                // xorshift64*
                self.noise ^= self.noise >> 12;
                self.noise ^= self.noise << 25;
                self.noise ^= self.noise >> 27;
                (self.noise.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }
}

/// Rewrites a record's header fields (and, if `nonce`, the explicit nonce to match them, as an
/// honest sender would write it).
pub fn rewrite(
    record: &[u8],
    epoch: Option<u16>,
    sid: Option<u8>,
    seq: Option<u64>,
    nonce: bool,
) -> Vec<u8> {
    let mut out = record.to_vec();
    let Ok(mut h) = RecordHeader::parse(record) else {
        return out;
    };
    if let Some(e) = epoch {
        h.epoch.0 = e;
    }
    if let Some(s) = sid {
        h.sender_id.0 = s;
    }
    if let Some(q) = seq {
        h.seq = q;
    }
    if h.emit(&mut out).is_ok()
        && nonce
        && let Some(n) = out.get_mut(HEADER_LEN..CIPHERTEXT_OFFSET)
    {
        n.copy_from_slice(&h.sequence_bytes());
    }
    out
}

/// XORs `mask` into the ciphertext byte at `index` (0 = first plaintext byte: AES-CCM and GCM
/// encrypt in counter mode, so a flipped ciphertext bit flips the same plaintext bit).
pub fn flip(record: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut out = record.to_vec();
    if let Some(b) = out.get_mut(CIPHERTEXT_OFFSET.saturating_add(index)) {
        *b ^= mask;
    }
    out
}

/// A record with a well-formed header for `(epoch, sid, seq)`, the matching explicit nonce,
/// and `body` as ciphertext and tag: what an outsider can build without the key.
pub fn forge(epoch: u16, sid: u8, seq: u64, body: &[u8]) -> Vec<u8> {
    let len = 8usize.saturating_add(body.len());
    let h = RecordHeader {
        content_type: group_core::wire::ContentType::APPLICATION_DATA,
        version: group_core::wire::ProtocolVersion::DTLS_1_2,
        epoch: group_core::wire::Epoch(epoch),
        sender_id: group_core::wire::SenderId(sid),
        seq,
        length: u16::try_from(len).unwrap_or(u16::MAX),
    };
    let mut out = vec![0u8; HEADER_LEN];
    let _ = h.emit(&mut out);
    out.extend_from_slice(&h.sequence_bytes());
    out.extend_from_slice(body);
    out
}
