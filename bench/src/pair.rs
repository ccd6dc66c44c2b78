//! A sender and a receiver of one group in epoch 1, as the record benchmarks measure them.

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

/// The group of the record benchmarks.
pub const GROUP_ID: u32 = 7;
/// The one moment the record benchmarks run at (no key lifetime, no grace expiry).
pub const NOW: Instant = Instant(0);

/// Epoch 1's record keys for `suite` (native schedule, a fixed epoch secret).
///
/// # Panics
/// If `suite` is not one this build supports.
pub fn keys(suite: Suite) -> RecordKeys {
    native_keys(GROUP_ID, Epoch(1), suite, &EpochSecret([0x42; 32])).unwrap()
}

/// A sender (`switch`, sender ID 1) and a receiver (`light`) in epoch 1, and a plaintext of
/// `n` bytes.
pub struct Pair {
    /// The sender.
    pub switch: Group,
    /// The receiver.
    pub light: Group,
    /// The sender's sequence store.
    pub store: MemorySequenceStore,
    /// The plaintext: bytes 0, 1, 2, ...
    pub plaintext: Vec<u8>,
    /// The length of a record carrying it.
    pub rec_len: usize,
}

impl Pair {
    /// Both groups with epoch 1 of `suite` installed and active.
    ///
    /// # Panics
    /// If `suite` is not supported or `n` is over the record size limit.
    pub fn new(suite: Suite, n: usize) -> Self {
        let k = keys(suite);
        let mut switch: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(1)));
        let mut light: Group = Group::new(GroupConfig::new(GROUP_ID));
        switch.install_and_activate(Epoch(1), &k, NOW).unwrap();
        light.install_and_activate(Epoch(1), &k, NOW).unwrap();
        let rec_len = switch.record_len(n).unwrap();
        Self {
            switch,
            light,
            store: MemorySequenceStore::commissioned(),
            plaintext: (0..n).map(|i| i as u8).collect(),
            rec_len,
        }
    }

    /// Seals the plaintext as the sender's next record into `out`.
    ///
    /// # Panics
    /// If sealing fails (the benchmarks never exhaust a sequence space).
    pub fn next_record(&mut self, out: &mut Vec<u8>) {
        out.resize(self.rec_len, 0);
        self.switch
            .seal(NOW, &mut self.store, &self.plaintext, out)
            .unwrap();
    }
}
