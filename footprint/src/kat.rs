//! The GnuTLS 3.7.9 DTLS 1.2 `TLS_PSK_WITH_AES_128_CCM_8` known answers (captured from a real
//! gnutls-cli / gnutls-serv session; `firmware/src/vectors.rs`), through a [`Group`] installed
//! from the raw key and IV: every record opens to its plaintext, a replay and every tampered
//! copy are refused.

use group_core::group::{Group, GroupConfig};
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

use crate::Failure;
use crate::vectors::{APP_RECORDS, TAMPERED};

const BUF: usize = 640;

/// The known answers' receiver: the same `Group` type as the images' own (`record::Light`, the
/// members' `Member<_, 32, 2>`), so that they don't link a second instantiation of the generic
/// record layer (a `Group<1, 2>` cost the `record` image ~750 bytes of flash that a light with
/// one group type does not have).
type Receiver = Group<32, 2>;

fn copy(src: &[u8], buf: &mut [u8; BUF]) -> Result<usize, Failure> {
    buf.get_mut(..src.len())
        .ok_or(Failure::KatOpen)?
        .copy_from_slice(src);
    Ok(src.len())
}

fn receiver(key: &[u8], iv: &[u8], epoch: u16) -> Result<Receiver, Failure> {
    let keys = RecordKeys::new(Suite::AES_128_CCM_8, key, iv).map_err(|_| Failure::Keys)?;
    let mut g: Receiver = Group::new(GroupConfig::new(0));
    g.install_and_activate(Epoch(epoch), &keys, Instant(0))
        .map_err(|_| Failure::Keys)?;
    Ok(g)
}

/// Runs the known answers; returns how many records were checked.
#[inline(never)]
pub fn run() -> Result<usize, Failure> {
    let mut n = 0usize;
    let mut buf = [0u8; BUF];
    for direction in [0u8, 1] {
        let mut records = APP_RECORDS.iter().filter(|r| r.direction == direction);
        let Some(first) = records.clone().next() else {
            return Err(Failure::KatOpen);
        };
        let mut rx = receiver(first.key, first.iv, first.epoch)?;
        for r in records.by_ref() {
            let len = copy(r.record, &mut buf)?;
            let rec = buf.get_mut(..len).ok_or(Failure::KatOpen)?;
            let d = rx.open(Instant(0), rec).map_err(|_| Failure::KatOpen)?;
            if d.plaintext != r.plaintext || d.seq != r.seq || d.sender_id != SenderId(0) {
                return Err(Failure::KatOpen);
            }
            let len = copy(r.record, &mut buf)?;
            let rec = buf.get_mut(..len).ok_or(Failure::KatOpen)?;
            if rx.open(Instant(0), rec).is_ok() {
                return Err(Failure::KatTamperedAccepted);
            }
            n = n.saturating_add(1);
        }
    }
    for t in TAMPERED {
        let mut rx = receiver(t.key, t.iv, 1)?;
        let len = copy(t.record, &mut buf)?;
        let rec = buf.get_mut(..len).ok_or(Failure::KatOpen)?;
        if rx.open(Instant(0), rec).is_ok() {
            return Err(Failure::KatTamperedAccepted);
        }
        n = n.saturating_add(1);
    }
    Ok(n)
}
