//! Raw record keys: a device provisioned by a commissioning tool with each epoch's write key and
//! IV, installed with `RecordKeys::new` and `Group::install_and_activate`, with no key schedule
//! (group-core without `native-schedule`: the `record` image of `.ci/footprint.sh`). Nothing
//! here uses a schedule, so these tests also run in that build:
//! `cargo test -p group-core --no-default-features --features aes-ccm --test raw_keys`.
//!
//! The records such keys produce and open are checked against GnuTLS in `kat_gnutls.rs` (the
//! fixtures' raw write keys and IVs, installed the same way). Here: sending under raw keys goes
//! through the sequence-persistence contract (reserve before use, resume after a restart,
//! refuse after a loss), and the keys are checked and never printed.

use group_core::group::{Group, GroupConfig};
use group_core::record::{OpenError, SealError};
use group_core::sequence::{MemorySequenceStore, SequenceStore, StoreError, StoredSequence};
use group_core::suite::{KeyError, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const GID: u32 = 0x0a0b_0c0d;
const NOW: Instant = Instant(0);

/// The write key and IV the commissioning tool wrote for `epoch` (fixed per epoch here; a
/// real tool draws them at random).
fn raw(epoch: u16) -> RecordKeys {
    let [a, b] = epoch.to_be_bytes();
    let key = [
        a ^ 0x5a,
        b ^ 0xa5,
        0x11,
        0x22,
        0x33,
        0x44,
        0x55,
        0x66,
        0x77,
        0x88,
        0x99,
        0xaa,
        0xbb,
        0xcc,
        0xdd,
        0xee,
    ];
    RecordKeys::new(Suite::AES_128_CCM_8, &key, &[a, b, 0xc3, 0x3c]).unwrap()
}

fn device(sid: Option<u8>, epoch: u16, step: u64) -> Group<32, 2> {
    let mut cfg = GroupConfig::new(GID);
    if let Some(sid) = sid {
        cfg = cfg.with_sender_id(SenderId(sid));
    }
    cfg.sequence_reserve_step = step;
    let mut g: Group<32, 2> = Group::new(cfg);
    g.install_and_activate(Epoch(epoch), &raw(epoch), NOW)
        .unwrap();
    g
}

/// Records every save, to check that a number is reserved before it is used.
struct Recording {
    inner: MemorySequenceStore,
    log: Vec<StoredSequence>,
}

impl SequenceStore for Recording {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        self.inner.load()
    }
    fn save(&mut self, s: &StoredSequence) -> Result<(), StoreError> {
        self.log.push(*s);
        self.inner.save(s)
    }
}

fn seq_of(record: &[u8]) -> u64 {
    u64::from_be_bytes([
        0, 0, 0, record[6], record[7], record[8], record[9], record[10],
    ])
}

#[test]
fn a_raw_key_sender_reserves_before_use_and_resumes_after_restarts() {
    let mut store = Recording {
        inner: MemorySequenceStore::commissioned(),
        log: Vec::new(),
    };
    let mut light = device(None, 1, 10);
    let mut used = std::collections::HashSet::new();
    for boot in 0..3 {
        // Each boot installs the same provisioned keys into a fresh context: only the store
        // remembers what was sent.
        let mut switch = device(Some(7), 1, 10);
        for i in 0..7u8 {
            let mut buf = [0u8; 64];
            let n = switch.seal(NOW, &mut store, &[boot, i], &mut buf).unwrap();
            let seq = seq_of(&buf);
            let reserved = store.log.last().unwrap().reserved_until;
            assert!(
                seq < reserved,
                "seq {seq} used before its reservation {reserved}"
            );
            assert!(
                used.insert(seq),
                "seq {seq} used twice under one raw key (boot {boot})"
            );
            let captured = buf;
            let d = light.open(NOW, &mut buf[..n]).unwrap();
            assert_eq!(
                (d.sender_id, d.seq, &*d.plaintext),
                (SenderId(7), seq, &[boot, i][..])
            );
            let mut replay = captured;
            assert_eq!(light.open(NOW, &mut replay[..n]), Err(OpenError::Replay));
        }
        // Crash: the context is dropped without any shutdown step.
    }
    assert_eq!(used.len(), 21);
    assert_eq!(light.counters().accepted, 21);
}

#[test]
fn a_raw_key_sender_without_its_sequence_state_does_not_send() {
    let mut buf = [0u8; 64];
    // The store lost its state (erased flash): no record in the provisioned epoch.
    let mut switch = device(Some(7), 1, 10);
    let mut store = MemorySequenceStore::lost();
    assert_eq!(
        switch.seal(NOW, &mut store, b"x", &mut buf),
        Err(SealError::SequenceStateLost(StoreError::Missing))
    );
    // Keys of an older epoch than the store's (a stale provisioning) are not sent in either.
    let mut store = MemorySequenceStore::commissioned();
    store
        .save(&StoredSequence {
            epoch: Epoch(2),
            sender_id: SenderId(7),
            reserved_until: 40,
        })
        .unwrap();
    assert_eq!(
        switch.seal(NOW, &mut store, b"x", &mut buf),
        Err(SealError::SequenceStale)
    );
    // The tool provisions a new epoch after the loss: sending starts there at 0, reserved first.
    let mut store = MemorySequenceStore::lost();
    switch.install_and_activate(Epoch(3), &raw(3), NOW).unwrap();
    switch.recover_sending(&mut store).unwrap();
    let n = switch.seal(NOW, &mut store, b"x", &mut buf).unwrap();
    assert_eq!(seq_of(&buf), 0);
    assert_eq!(store.stored().unwrap().unwrap().epoch, Epoch(3));
    let mut light = device(None, 3, 10);
    assert_eq!(light.open(NOW, &mut buf[..n]).unwrap().plaintext, b"x");
}

#[test]
fn raw_keys_are_checked_bound_to_their_epoch_and_never_printed() {
    let key = [0x42u8; 16];
    assert_eq!(
        RecordKeys::new(Suite::AES_128_CCM_8, &key[..15], &[0; 4]).err(),
        Some(KeyError::BadKeyLength)
    );
    assert_eq!(
        RecordKeys::new(Suite::AES_128_CCM_8, &key, &[0; 12]).err(),
        Some(KeyError::BadIvLength)
    );
    assert_eq!(
        RecordKeys::new(Suite(0x1234), &key, &[0; 4]).err(),
        Some(KeyError::UnknownSuite(Suite(0x1234)))
    );
    let keys = RecordKeys::new(Suite::AES_128_CCM_8, &key, &[0x24; 4]).unwrap();
    let printed = format!("{keys:?}");
    assert!(
        !printed.contains("42") && !printed.contains("66"),
        "{printed}"
    );

    // Epochs only move forward, whoever derived the keys: the same epoch with other keys, an
    // older epoch and epoch 0 are refused; the same keys again change nothing.
    let mut g = device(None, 2, 10);
    assert_eq!(g.install_epoch(Epoch(2), &raw(2)), Ok(()));
    assert_eq!(
        g.install_epoch(Epoch(2), &raw(5)),
        Err(KeyError::EpochNotNewer)
    );
    assert_eq!(
        g.install_epoch(Epoch(1), &raw(1)),
        Err(KeyError::EpochNotNewer)
    );
    assert_eq!(g.install_epoch(Epoch(0), &raw(0)), Err(KeyError::EpochZero));

    // A record sealed under one epoch's raw keys does not open under another's.
    let mut switch = device(Some(1), 2, 10);
    let mut store = MemorySequenceStore::commissioned();
    let mut buf = [0u8; 64];
    let n = switch.seal(NOW, &mut store, b"on", &mut buf).unwrap();
    let mut other: Group<32, 2> = Group::new(GroupConfig::new(GID));
    other.install_and_activate(Epoch(2), &raw(4), NOW).unwrap();
    assert_eq!(
        other.open(NOW, &mut buf[..n]),
        Err(OpenError::AuthenticationFailed)
    );
}
