//! The `record` image's work: a light's group context tracking 32 senders, keyed with raw
//! record keys (the epoch's write key and IV as a commissioning tool provisions them, installed
//! with `RecordKeys::new`: group-core is built without its `native-schedule` feature, so no
//! HKDF or SHA-256 is linked), seals one record as sender 1 and opens one from sender 2 (sealed
//! in the image by a second context, keyed the same way, that is not measured).

use core::mem::size_of;

use group_core::group::{Group, GroupConfig};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

use crate::stack::measure;
use crate::{Failure, Figures, GROUP_ID};

/// The group context the record image keeps.
pub type Light = Group<32, 2>;

/// The epoch's write key and IV, as the commissioning tool wrote them (fixed here; a real tool
/// draws them at random for every epoch it provisions).
const WRITE_KEY: [u8; 16] = [0x42; 16];
const WRITE_IV: [u8; 4] = [0x24; 4];

fn group(sid: u8) -> Result<Light, Failure> {
    let keys =
        RecordKeys::new(Suite::AES_128_CCM_8, &WRITE_KEY, &WRITE_IV).map_err(|_| Failure::Keys)?;
    let mut g: Light = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(sid)));
    g.install_and_activate(Epoch(1), &keys, Instant(0))
        .map_err(|_| Failure::Keys)?;
    Ok(g)
}

/// Runs the record image's work.
#[inline(never)]
pub fn run() -> Result<Figures, Failure> {
    let now = Instant(0);
    let mut light = group(1)?;
    let mut store = MemorySequenceStore::commissioned();
    let mut out = [0u8; 64];
    let (sealed, seal) = measure(|| light.seal(now, &mut store, b"on", &mut out));
    let len = sealed.map_err(|_| Failure::Seal)?;
    if len == 0 || store.saves() == 0 {
        return Err(Failure::Seal);
    }

    let mut switch = group(2)?;
    let mut switch_store = MemorySequenceStore::commissioned();
    let mut rec = [0u8; 64];
    let len = switch
        .seal(now, &mut switch_store, b"dim 40", &mut rec)
        .map_err(|_| Failure::Seal)?;
    let record = rec.get_mut(..len).ok_or(Failure::Open)?;
    let (opened, open) = measure(|| {
        light
            .open(now, record)
            .map(|d| d.sender_id == SenderId(2) && d.plaintext == b"dim 40")
    });
    if opened != Ok(true) || light.counters().accepted != 1 {
        return Err(Failure::Open);
    }
    Ok(Figures {
        ram_group32: size_of::<Light>(),
        seal,
        open,
        ..Figures::default()
    }
    .finish())
}
