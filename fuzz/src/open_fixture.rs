//! `group_open`: a receiver holding epochs 1 (previous), 2 (current) and 3 (staged) of known
//! keys, and the records two senders genuinely sealed under them (the only deliverable ones).

use std::sync::OnceLock;

use group_core::group::{Admission, Group, GroupConfig};
use group_core::record::NonceProfile;
use group_core::sequence::MemorySequenceStore;
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};
use p256::ecdsa::SigningKey;

use crate::{SUITES, epoch_keys};

/// The receiver's configuration, from the first input byte.
#[derive(Clone, Copy, Debug)]
pub struct OpenConfig {
    /// Index into [`SUITES`].
    pub suite: usize,
    /// Records carry ECDSA signatures.
    pub signatures: bool,
    /// Strict admission (senders listed) instead of trust-first.
    pub strict: bool,
    /// Compatibility nonce profile.
    pub compat: bool,
    /// A 128-byte fragment limit instead of the protocol maximum.
    pub small_fragments: bool,
}

impl OpenConfig {
    /// Decodes the configuration byte (bits 0-1 suite, 2 and 6 both set: signatures, 3 strict,
    /// 4 compat, 5 small fragments; bit 7 ignored). Signed configurations cost an ECDSA
    /// verification per record (about 1.5 ms), so only a quarter of the bytes select them.
    pub fn from_byte(b: u8) -> Self {
        Self {
            suite: usize::from(b & 3),
            signatures: b & 0x44 == 0x44,
            strict: b & 8 != 0,
            compat: b & 16 != 0,
            small_fragments: b & 32 != 0,
        }
    }

    /// The byte [`from_byte`](Self::from_byte) decodes to this configuration.
    pub fn to_byte(self) -> u8 {
        self.suite as u8
            | u8::from(self.signatures) * 0x44
            | u8::from(self.strict) << 3
            | u8::from(self.compat) << 4
            | u8::from(self.small_fragments) << 5
    }

    fn index(self) -> usize {
        usize::from(self.to_byte() & 0x3f)
    }

    fn group_config(self, sid: Option<SenderId>) -> GroupConfig {
        let mut c = GroupConfig::new(crate::GROUP_ID)
            .with_admission(if self.strict {
                Admission::Strict
            } else {
                Admission::TrustFirst
            })
            .with_nonce_profile(if self.compat {
                NonceProfile::Compatibility
            } else {
                NonceProfile::Strict
            })
            .with_grace_ms(60_000);
        if self.signatures {
            c = c.with_signatures();
        }
        if self.small_fragments {
            c.max_fragment_len = 128;
        }
        if let Some(s) = sid {
            c = c.with_sender_id(s);
        }
        c
    }
}

/// One genuinely sealed record.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The record bytes.
    pub bytes: Vec<u8>,
    /// Its epoch.
    pub epoch: Epoch,
    /// Its sender.
    pub sid: SenderId,
    /// Its sequence number.
    pub seq: u64,
    /// What it carries.
    pub plaintext: Vec<u8>,
}

/// The senders: sid 1 and 2, each with its own signing key.
pub const SENDERS: [u8; 2] = [1, 2];

/// The now of every open (inside epoch 1's grace period).
pub const NOW: Instant = Instant(1_000);

fn signing_key(sid: u8) -> SigningKey {
    SigningKey::from_slice(&[sid.wrapping_add(0x30); 32]).expect("valid scalar")
}

/// The records sealed for a configuration (computed once per configuration).
pub fn sealed(cfg: OpenConfig) -> &'static [Sealed] {
    static CACHE: [OnceLock<Vec<Sealed>>; 64] = [const { OnceLock::new() }; 64];
    CACHE[cfg.index()].get_or_init(|| seal_all(cfg))
}

fn seal_all(cfg: OpenConfig) -> Vec<Sealed> {
    let suite = SUITES[cfg.suite];
    let mut out = Vec::new();
    for sid in SENDERS {
        let mut g: Group = Group::new(cfg.group_config(Some(SenderId(sid))));
        if cfg.signatures {
            g.set_signing_key(signing_key(sid));
        }
        let mut store = MemorySequenceStore::commissioned();
        for epoch in 1..=3u16 {
            g.install_and_activate(Epoch(epoch), &epoch_keys(suite, epoch), NOW)
                .expect("fresh epoch");
            for n in 0..2u8 {
                let plaintext: Vec<u8> = (0..(n * 7 + sid))
                    .map(|i| i ^ sid ^ (epoch as u8))
                    .collect();
                let mut buf = [0u8; 512];
                let len = g.seal(NOW, &mut store, &plaintext, &mut buf).expect("seal");
                let h = group_core::wire::RecordHeader::parse(&buf[..len]).expect("own record");
                out.push(Sealed {
                    bytes: buf[..len].to_vec(),
                    epoch: h.epoch,
                    sid: h.sender_id,
                    seq: h.seq,
                    plaintext,
                });
            }
        }
    }
    out
}

/// The receiver: epochs 1 (previous, in grace), 2 (current), 3 (staged); under strict
/// admission or signatures, both senders listed (with their keys).
pub fn receiver(cfg: OpenConfig) -> Group {
    let suite = SUITES[cfg.suite];
    let mut g: Group = Group::new(cfg.group_config(None));
    let t0 = Instant(0);
    g.install_and_activate(Epoch(1), &epoch_keys(suite, 1), t0)
        .expect("epoch 1");
    g.install_and_activate(Epoch(2), &epoch_keys(suite, 2), t0)
        .expect("epoch 2");
    g.install_epoch(Epoch(3), &epoch_keys(suite, 3))
        .expect("epoch 3");
    for sid in SENDERS {
        if cfg.signatures {
            g.set_sender_key(SenderId(sid), *signing_key(sid).verifying_key())
                .expect("room");
        } else if cfg.strict {
            g.add_sender(SenderId(sid)).expect("room");
        }
    }
    while g.poll_event().is_some() {}
    g
}
