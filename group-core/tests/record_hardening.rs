//! Regression tests for the record-layer findings of the issue-10 hardening review (findings 5,
//! 6 and 8 of `docs/threat-model.md`, "Hardening review of 5b5fb1a"). One test per finding,
//! named after the property it checks; each failed on 5b5fb1a.

use group_core::counters::Event;
use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const GID: u32 = 0x0a0b_0c0d;

fn keys_for(suite: Suite, epoch: u16) -> RecordKeys {
    native_keys(GID, Epoch(epoch), suite, &EpochSecret([epoch as u8; 32])).unwrap()
}

fn keys(epoch: u16) -> RecordKeys {
    keys_for(Suite::AES_128_CCM, epoch)
}

/// A sender with its own store, sending in epoch 1.
struct Sender {
    g: Group,
    store: MemorySequenceStore,
}

impl Sender {
    fn new(sid: u8) -> Self {
        let mut g: Group = Group::new(GroupConfig::new(GID).with_sender_id(SenderId(sid)));
        g.install_and_activate(Epoch(1), &keys(1), Instant(0))
            .unwrap();
        Self {
            g,
            store: MemorySequenceStore::commissioned(),
        }
    }

    fn move_to(&mut self, epoch: u16) {
        self.g
            .install_and_activate(Epoch(epoch), &keys(epoch), Instant(0))
            .unwrap();
    }

    fn seal(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = self
            .g
            .seal(Instant(0), &mut self.store, msg, &mut buf)
            .unwrap();
        buf[..n].to_vec()
    }
}

fn open<const N: usize, const W: usize>(
    g: &mut Group<N, W>,
    rec: &[u8],
) -> Result<(u8, u64), OpenError> {
    let mut b = rec.to_vec();
    g.open(Instant(0), &mut b).map(|d| (d.sender_id.0, d.seq))
}

fn events<const N: usize, const W: usize>(g: &mut Group<N, W>) -> Vec<Event> {
    core::iter::from_fn(|| g.poll_event()).collect()
}

/// Finding 5: a sender evicted from a full table in epoch E stays refused in E (and in every
/// epoch held when it was evicted) even when the key server lists it again, through
/// `add_sender` or `set_sender_key`: re-listing made a fresh state whose empty window took a
/// record accepted before the eviction as new, so it was delivered twice. It is admitted again
/// in a newer epoch, and the block outlives the epoch change while the old epoch is in grace.
#[test]
fn evicted_sender_stays_refused_in_its_epochs_whoever_relists_it() {
    for relist_with_key in [false, true] {
        let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
        l.install_and_activate(Epoch(1), &keys(1), Instant(0))
            .unwrap();
        let (mut a, mut b, mut c) = (Sender::new(1), Sender::new(2), Sender::new(3));
        let a1 = a.seal(b"a1");
        assert_eq!(open(&mut l, &a1), Ok((1, 0)));
        assert_eq!(open(&mut l, &b.seal(b"b1")), Ok((2, 0)));
        // Sender 3 fills the table: sender 1 (least recently active) is evicted.
        assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
        assert_eq!(
            events(&mut l),
            [Event::SenderEvicted {
                sender_id: SenderId(1)
            }]
        );
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1)))
        );

        // The next bundle (epoch 2, staged) lists sender 1 again and not sender 2, as
        // `keydist::Member` applies it: unlisted senders removed, listed ones added.
        l.install_epoch(Epoch(2), &keys(2)).unwrap();
        l.remove_sender(SenderId(2));
        if relist_with_key {
            let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
            l.set_sender_key(SenderId(1), *key.verifying_key()).unwrap();
        } else {
            l.add_sender(SenderId(1)).unwrap();
        }
        // Its epoch-1 record, accepted before the eviction, is not delivered again; nor is
        // anything else of sender 1 in epoch 1.
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1))),
            "relisted with key: {relist_with_key}"
        );
        assert_eq!(
            open(&mut l, &a.seal(b"a2")),
            Err(OpenError::UnknownSender(SenderId(1)))
        );
        // Epoch 2 active: epoch 1 is in its grace period and still refused for sender 1.
        l.activate_epoch(Epoch(2), Instant(0)).unwrap();
        assert_eq!(l.epochs().previous(), Some(Epoch(1)));
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1)))
        );
        // In the newer epoch sender 1 is admitted (its records there are all new here).
        a.move_to(2);
        assert_eq!(open(&mut l, &a.seal(b"a3")), Ok((1, 0)));
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1)))
        );
        assert_eq!(l.counters().accepted, 4);
    }
}

/// Finding 8: the exact sequence of the review. Sender A is evicted and blocked in E1; its first
/// record in a staged E2 makes a new state (which cleared the block); E2 is replaced by E3
/// before activation, so A's state covers only an epoch no longer held; the dead-slot rule gave
/// A's slot to a new sender D without blocking A; a replay of A's E1 record (E1 still current)
/// then made a trust-first state and was delivered a second time. A dead state's sender must
/// stay refused in every epoch in which it may have records.
#[test]
fn dead_slot_reuse_keeps_the_dead_sender_refused_in_every_epoch_it_may_have_records_in() {
    let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let (mut a, mut b, mut c, mut d) = (
        Sender::new(1),
        Sender::new(2),
        Sender::new(3),
        Sender::new(4),
    );
    // E1: A and B fill the table; C evicts A (blocked in E1).
    let a1 = a.seal(b"a1");
    assert_eq!(open(&mut l, &a1), Ok((1, 0)));
    assert_eq!(open(&mut l, &b.seal(b"b1")), Ok((2, 0)));
    assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
    assert_eq!(
        events(&mut l),
        [Event::SenderEvicted {
            sender_id: SenderId(1)
        }]
    );
    assert_eq!(
        open(&mut l, &a1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );

    // E2 staged; A's first record in E2 is accepted (E2 is newer than its block) and makes a
    // state for it (evicting B, the least recently active).
    l.install_epoch(Epoch(2), &keys(2)).unwrap();
    a.move_to(2);
    assert_eq!(open(&mut l, &a.seal(b"a2")), Ok((1, 0)));
    assert_eq!(
        events(&mut l),
        [Event::SenderEvicted {
            sender_id: SenderId(2)
        }]
    );
    // E2 is replaced by E3 before activation: A's state now covers no epoch held.
    l.install_epoch(Epoch(3), &keys(3)).unwrap();
    assert_eq!(l.epochs().staged(), Some(Epoch(3)));
    assert_eq!(l.current_epoch(), Some(Epoch(1)));

    // D's first record (E1) takes A's dead slot: no eviction event, nothing reopened.
    assert_eq!(open(&mut l, &d.seal(b"d1")), Ok((4, 0)));
    assert_eq!(events(&mut l), []);
    let table: Vec<u8> = l.senders().map(|s| s.sender_id.0).collect();
    assert!(!table.contains(&1), "{table:?}");

    // The replay of A's E1 record is refused.
    assert_eq!(
        open(&mut l, &a1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );
    // A record of A in the replaced E2 is in no epoch held.
    assert_eq!(
        open(&mut l, &a.seal(b"a2 again")),
        Err(OpenError::UnknownEpoch(Epoch(2)))
    );
    assert_eq!(l.counters().accepted, 5);
    // In E3 (newer than every epoch A may have records in) A is admitted again.
    a.move_to(3);
    assert_eq!(open(&mut l, &a.seal(b"a3")), Ok((1, 0)));

    // The same hole without any eviction: A's windows moved through two staged epochs (E2, E3)
    // that were replaced in turn, so its E1 window was dropped (its E1 records refused
    // `too_old` while the state lived); once E4 replaces E3 the state is dead and its slot is
    // reused. A must stay refused in E1, the epoch older than its windows that is still held.
    let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let (mut a, mut b, mut c) = (Sender::new(1), Sender::new(2), Sender::new(3));
    let a1 = a.seal(b"a1");
    assert_eq!(open(&mut l, &a1), Ok((1, 0)));
    for e in [2, 3] {
        l.install_epoch(Epoch(e), &keys(e)).unwrap();
        a.move_to(e);
        assert_eq!(open(&mut l, &a.seal(b"a")), Ok((1, 0)));
    }
    assert_eq!(open(&mut l, &a1), Err(OpenError::TooOld));
    l.install_epoch(Epoch(4), &keys(4)).unwrap();
    assert_eq!(l.current_epoch(), Some(Epoch(1)));
    assert_eq!(open(&mut l, &b.seal(b"b1")), Ok((2, 0)));
    assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
    assert_eq!(events(&mut l), []);
    assert_eq!(
        open(&mut l, &a1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );
    assert_eq!(l.counters().accepted, 5);
}
