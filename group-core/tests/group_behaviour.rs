//! Behaviour of the group context: order of checks, epochs and grace, admission, eviction,
//! own sender ID, sequence persistence through `Group::seal`, and limits/events.

use group_core::counters::{Event, RekeyReason};
use group_core::group::{Admission, Group, GroupConfig};
use group_core::record::{NonceProfile, OpenError, SealError};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::{MemorySequenceStore, SequenceStore, StoreError, StoredSequence};
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const GID: u32 = 0x0102_0304;

fn keys(epoch: u16) -> RecordKeys {
    native_keys(
        GID,
        Epoch(epoch),
        Suite::AES_128_CCM,
        &EpochSecret([epoch as u8; 32]),
    )
    .unwrap()
}

fn sender(sid: u8) -> Group {
    let mut g: Group = Group::new(GroupConfig::new(GID).with_sender_id(SenderId(sid)));
    g.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    g
}

fn listener(config: GroupConfig) -> Group {
    let mut g: Group = Group::new(config);
    g.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    g
}

fn seal(g: &mut Group, store: &mut MemorySequenceStore, msg: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = g.seal(Instant(0), store, msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn open(g: &mut Group, now: u64, rec: &[u8]) -> Result<(u8, u64, Vec<u8>), OpenError> {
    let mut b = rec.to_vec();
    g.open(Instant(now), &mut b)
        .map(|d| (d.sender_id.0, d.seq, d.plaintext.to_vec()))
}

#[test]
fn delivers_once_and_counts_every_drop_reason() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let mut l = listener(GroupConfig::new(GID));
    let r0 = seal(&mut s, &mut store, b"on");
    let r1 = seal(&mut s, &mut store, b"off");
    assert_eq!(open(&mut l, 0, &r1).unwrap(), (1, 1, b"off".to_vec()));
    // Trust-first: r0 is below the first accepted record.
    assert_eq!(open(&mut l, 0, &r0), Err(OpenError::Replay));
    assert_eq!(open(&mut l, 0, &r1), Err(OpenError::Replay));
    // A tampered copy of an already-accepted record is caught by the cheap replay pre-check.
    let mut bad = r1.clone();
    bad[22] ^= 1;
    assert_eq!(open(&mut l, 0, &bad), Err(OpenError::Replay));
    // Tampered copies of a fresh record: bit flip in the ciphertext.
    let r2 = seal(&mut s, &mut store, b"dim");
    let r1 = r2.clone();
    let mut bad = r1.clone();
    bad[22] ^= 1;
    assert_eq!(open(&mut l, 0, &bad), Err(OpenError::AuthenticationFailed));
    // Explicit nonce differs from epoch||sid||seq: strict profile refuses before decrypting.
    let mut bad = r1.clone();
    bad[20] ^= 1;
    assert_eq!(open(&mut l, 0, &bad), Err(OpenError::NonceMismatch));
    // Unknown epoch.
    let mut bad = r1.clone();
    bad[4] = 9;
    assert_eq!(
        open(&mut l, 0, &bad),
        Err(OpenError::UnknownEpoch(Epoch(9)))
    );
    // Truncated, trailing bytes, other content type.
    assert!(matches!(
        open(&mut l, 0, &r1[..20]),
        Err(OpenError::Malformed(_))
    ));
    let mut long = r1.clone();
    long.push(0);
    assert!(matches!(
        open(&mut l, 0, &long),
        Err(OpenError::Malformed(_))
    ));
    let mut bad = r1.clone();
    bad[0] = 22;
    assert!(matches!(
        open(&mut l, 0, &bad),
        Err(OpenError::UnsupportedContentType(_))
    ));
    let c = *l.counters();
    assert_eq!(c.accepted, 1);
    assert_eq!(c.replay, 3);
    assert_eq!(c.authentication_failed, 1);
    assert_eq!(c.nonce_mismatch, 1);
    assert_eq!(c.unknown_epoch, 1);
    assert_eq!(c.malformed, 2);
    assert_eq!(c.unsupported_content_type, 1);
    assert_eq!(c.dropped(), 9);
    // Nothing above changed the window: the fresh record is still accepted, once.
    assert_eq!(open(&mut l, 0, &r2).unwrap(), (1, 2, b"dim".to_vec()));
    assert_eq!(open(&mut l, 0, &r2), Err(OpenError::Replay));
}

#[test]
fn compatibility_profile_takes_the_carried_nonce() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let r = seal(&mut s, &mut store, b"x");
    // A record whose explicit nonce differs: strict refuses, compatibility opens it only if it
    // was sealed with that nonce (here it wasn't, so it fails authentication).
    let mut l = listener(GroupConfig::new(GID).with_nonce_profile(NonceProfile::Compatibility));
    let mut bad = r.clone();
    bad[20] ^= 1;
    assert_eq!(open(&mut l, 0, &bad), Err(OpenError::AuthenticationFailed));
    assert!(open(&mut l, 0, &r).is_ok());
}

#[test]
fn strict_admission_accepts_only_provided_senders_from_zero() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let r0 = seal(&mut s, &mut store, b"a");
    let r1 = seal(&mut s, &mut store, b"b");
    let mut l = listener(GroupConfig::new(GID).with_admission(Admission::Strict));
    assert_eq!(
        open(&mut l, 0, &r1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );
    l.add_sender(SenderId(1)).unwrap();
    // Key-server-provided state: the window starts empty, so reordered r0 is still fresh.
    assert!(open(&mut l, 0, &r1).is_ok());
    assert!(open(&mut l, 0, &r0).is_ok());
    assert_eq!(open(&mut l, 0, &r0), Err(OpenError::Replay));
}

#[test]
fn own_sender_id_is_reported_as_possible_clash() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let r = seal(&mut s, &mut store, b"a");
    let mut twin = listener(GroupConfig::new(GID).with_sender_id(SenderId(1)));
    assert_eq!(open(&mut twin, 0, &r), Err(OpenError::OwnSenderId));
    assert_eq!(
        twin.poll_event(),
        Some(Event::PossibleSenderIdClash {
            epoch: Epoch(1),
            seq: 0
        })
    );
    // Our own record looped back (multicast loop on) is dropped without a clash event.
    let own = seal(&mut s, &mut store, b"b");
    assert_eq!(open(&mut s, 0, &own), Err(OpenError::OwnSenderId));
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.counters().own_sender_id, 1);
    // A forged record under our sid raises no event: it fails authentication.
    let mut bad = r.clone();
    bad[25] ^= 0x80;
    assert_eq!(
        open(&mut twin, 0, &bad),
        Err(OpenError::AuthenticationFailed)
    );
    assert_eq!(twin.poll_event(), None);
}

#[test]
fn epoch_change_with_grace_period() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let mut l = listener(GroupConfig::new(GID).with_grace_ms(1000));
    let old = seal(&mut s, &mut store, b"e1-0");
    let old_late = seal(&mut s, &mut store, b"e1-1");
    assert!(open(&mut l, 0, &old).is_ok());
    // Epoch 2 is staged at both; the receiver accepts it as soon as it is staged.
    s.install_epoch(Epoch(2), &keys(2)).unwrap();
    l.install_epoch(Epoch(2), &keys(2)).unwrap();
    s.activate_epoch(Epoch(2), Instant(10)).unwrap();
    let new = seal(&mut s, &mut store, b"e2-0");
    assert_eq!(&new[3..5], &[0, 2]);
    assert_eq!(&new[6..11], &[0, 0, 0, 0, 0], "each epoch starts at seq 0");
    assert_eq!(open(&mut l, 10, &new).unwrap().2, b"e2-0");
    // The sender moved to epoch 2; its epoch-1 window is now its previous window.
    l.activate_epoch(Epoch(2), Instant(100)).unwrap();
    assert_eq!(open(&mut l, 500, &old_late).unwrap().2, b"e1-1");
    assert_eq!(open(&mut l, 600, &old_late), Err(OpenError::Replay));
    // After the grace period the old epoch is gone.
    let mut l2 = listener(GroupConfig::new(GID).with_grace_ms(1000));
    l2.install_epoch(Epoch(2), &keys(2)).unwrap();
    l2.activate_epoch(Epoch(2), Instant(100)).unwrap();
    assert_eq!(
        open(&mut l2, 1100, &old),
        Err(OpenError::UnknownEpoch(Epoch(1)))
    );
    assert_eq!(
        l2.poll_event(),
        Some(Event::EpochRetired { epoch: Epoch(1) })
    );
}

#[test]
fn sender_records_of_an_older_epoch_than_its_previous_are_too_old() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let mut l = listener(GroupConfig::new(GID));
    let e1 = seal(&mut s, &mut store, b"1");
    for e in 2..=3u16 {
        s.install_and_activate(Epoch(e), &keys(e), Instant(0))
            .unwrap();
        l.install_epoch(Epoch(e), &keys(e)).unwrap();
    }
    // The receiver holds epoch 1 (current) and 3 (staged; 3 replaced the never-activated 2).
    let e3 = seal(&mut s, &mut store, b"3");
    assert!(open(&mut l, 0, &e3).is_ok());
    assert_eq!(open(&mut l, 0, &e1), Err(OpenError::TooOld));
}

/// Store that records every save, to check reservations happen before use.
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

#[test]
fn seal_reserves_before_use_and_resumes_after_crash() {
    let mut cfg = GroupConfig::new(GID).with_sender_id(SenderId(4));
    cfg.sequence_reserve_step = 10;
    let mut store = Recording {
        inner: MemorySequenceStore::commissioned(),
        log: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for _boot in 0..3 {
        let mut g: Group = Group::new(cfg);
        g.install_and_activate(Epoch(1), &keys(1), Instant(0))
            .unwrap();
        for _ in 0..7 {
            let mut buf = [0u8; 64];
            let n = g.seal(Instant(0), &mut store, b"x", &mut buf).unwrap();
            let seq = u64::from_be_bytes([0, 0, 0, buf[6], buf[7], buf[8], buf[9], buf[10]]);
            let reserved = store.log.last().unwrap().reserved_until;
            assert!(
                seq < reserved,
                "seq {seq} used before reservation {reserved}"
            );
            assert!(seen.insert(seq), "seq {seq} reused after restart");
            assert!(n > 0);
        }
        // crash: g dropped without any shutdown hook
    }
    assert_eq!(seen.len(), 21);
}

#[test]
fn sender_refuses_when_sequence_state_lost_until_recovered() {
    let mut g = sender(2);
    let mut store = MemorySequenceStore::lost();
    let mut buf = [0u8; 64];
    assert_eq!(
        g.seal(Instant(0), &mut store, b"x", &mut buf),
        Err(SealError::SequenceStateLost(StoreError::Missing))
    );
    // The key server issued a fresh epoch after the loss was reported.
    g.install_and_activate(Epoch(2), &keys(2), Instant(0))
        .unwrap();
    g.recover_sending(&mut store).unwrap();
    assert!(g.seal(Instant(0), &mut store, b"x", &mut buf).is_ok());
    // A failing store stops sending at the next reservation instead of risking reuse.
    let mut cfg = GroupConfig::new(GID).with_sender_id(SenderId(3));
    cfg.sequence_reserve_step = 2;
    let mut g: Group = Group::new(cfg);
    g.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let mut store = MemorySequenceStore::commissioned();
    g.seal(Instant(0), &mut store, b"x", &mut buf).unwrap();
    store.set_fail_saves(true);
    g.seal(Instant(0), &mut store, b"x", &mut buf).unwrap();
    assert_eq!(
        g.seal(Instant(0), &mut store, b"x", &mut buf),
        Err(SealError::SequenceStore(StoreError::Io))
    );
}

#[test]
fn sender_budget_raises_rekey_needed_once() {
    let mut cfg = GroupConfig::new(GID).with_sender_id(SenderId(1));
    cfg.sender_rekey_budget = 3;
    let mut g: Group = Group::new(cfg);
    g.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let mut store = MemorySequenceStore::commissioned();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        g.seal(Instant(0), &mut store, b"x", &mut buf).unwrap();
    }
    assert_eq!(g.poll_event(), None);
    for _ in 0..3 {
        g.seal(Instant(0), &mut store, b"x", &mut buf).unwrap();
    }
    assert_eq!(
        g.poll_event(),
        Some(Event::RekeyNeeded {
            epoch: Epoch(1),
            reason: RekeyReason::SenderBudget
        })
    );
    assert_eq!(g.poll_event(), None);
}

#[test]
fn integrity_limit_event() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let mut cfg = GroupConfig::new(GID);
    cfg.integrity_limit = Some(3);
    let mut l = listener(cfg);
    let r = seal(&mut s, &mut store, b"x");
    for i in 0..3 {
        let mut bad = r.clone();
        bad[21 + i] ^= 1;
        assert_eq!(open(&mut l, 0, &bad), Err(OpenError::AuthenticationFailed));
    }
    assert_eq!(
        l.poll_event(),
        Some(Event::IntegrityLimitReached {
            epoch: Epoch(1),
            failures: 3
        })
    );
}

#[test]
fn full_table_evicts_and_blocks_the_evicted_sender_until_a_newer_epoch() {
    let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let mut senders: Vec<(Group, MemorySequenceStore)> = (1..=3)
        .map(|sid| (sender(sid), MemorySequenceStore::commissioned()))
        .collect();
    let mut recs = Vec::new();
    for (g, st) in senders.iter_mut() {
        recs.push(seal(g, st, b"first"));
    }
    let o = |l: &mut Group<2, 2>, r: &[u8]| {
        let mut b = r.to_vec();
        l.open(Instant(0), &mut b).map(|d| d.sender_id.0)
    };
    assert_eq!(o(&mut l, &recs[0]), Ok(1));
    assert_eq!(o(&mut l, &recs[1]), Ok(2));
    // A forged record of a third sender evicts nothing: authentication comes first.
    let mut forged = recs[2].clone();
    forged[30] ^= 1;
    assert_eq!(o(&mut l, &forged), Err(OpenError::AuthenticationFailed));
    assert_eq!(l.senders().count(), 2);
    // Sender 3 is authentic: the least recently active state (sender 1) is evicted.
    assert_eq!(o(&mut l, &recs[2]), Ok(3));
    assert_eq!(
        l.poll_event(),
        Some(Event::SenderEvicted {
            sender_id: SenderId(1)
        })
    );
    // Sender 1's window is gone: its old record must not come back, and nor may new ones in
    // this epoch (a fresh trust-first state could accept replays).
    assert_eq!(
        o(&mut l, &recs[0]),
        Err(OpenError::UnknownSender(SenderId(1)))
    );
    let (g, st) = &mut senders[0];
    let r = seal(g, st, b"again");
    assert_eq!(o(&mut l, &r), Err(OpenError::UnknownSender(SenderId(1))));
    // In a newer epoch sender 1 is admitted again.
    l.install_epoch(Epoch(2), &keys(2)).unwrap();
    let (g, st) = &mut senders[0];
    g.install_and_activate(Epoch(2), &keys(2), Instant(0))
        .unwrap();
    let r = seal(g, st, b"new epoch");
    assert_eq!(o(&mut l, &r), Ok(1));
}

#[test]
fn removed_sender_is_refused_in_held_epochs() {
    let mut s = sender(5);
    let mut store = MemorySequenceStore::commissioned();
    let mut l = listener(GroupConfig::new(GID));
    assert!(open(&mut l, 0, &seal(&mut s, &mut store, b"a")).is_ok());
    l.remove_sender(SenderId(5));
    let r = seal(&mut s, &mut store, b"b");
    assert_eq!(
        open(&mut l, 0, &r),
        Err(OpenError::UnknownSender(SenderId(5)))
    );
}

#[test]
fn listener_cannot_seal_and_no_keys_means_no_epoch() {
    let mut l = listener(GroupConfig::new(GID));
    let mut store = MemorySequenceStore::commissioned();
    let mut buf = [0u8; 64];
    assert_eq!(
        l.seal(Instant(0), &mut store, b"x", &mut buf),
        Err(SealError::NotASender)
    );
    let mut g: Group = Group::new(GroupConfig::new(GID).with_sender_id(SenderId(1)));
    assert_eq!(
        g.seal(Instant(0), &mut store, b"x", &mut buf),
        Err(SealError::NoCurrentEpoch)
    );
    let mut s = sender(1);
    let mut small = [0u8; 20];
    assert_eq!(
        s.seal(Instant(0), &mut store, b"x", &mut small),
        Err(SealError::BufferTooSmall)
    );
}

#[test]
fn exhausted_sequence_space_stops_sending_and_raises_its_own_event() {
    use group_core::sequence::LAST_SEQ;
    let mut g = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    store
        .save(&StoredSequence {
            epoch: Epoch(1),
            sender_id: SenderId(1),
            reserved_until: LAST_SEQ,
        })
        .unwrap();
    let mut buf = [0u8; 64];
    let n = g.seal(Instant(0), &mut store, b"x", &mut buf).unwrap();
    assert_eq!(&buf[6..11], &LAST_SEQ.to_be_bytes()[3..]);
    assert!(n > 0);
    assert_eq!(
        g.poll_event(),
        Some(Event::RekeyNeeded {
            epoch: Epoch(1),
            reason: RekeyReason::SenderBudget
        })
    );
    assert_eq!(
        g.seal(Instant(0), &mut store, b"x", &mut buf),
        Err(SealError::SequenceExhausted)
    );
    assert_eq!(
        g.poll_event(),
        Some(Event::RekeyNeeded {
            epoch: Epoch(1),
            reason: RekeyReason::SequenceExhausted
        })
    );
    assert_eq!(
        g.seal(Instant(0), &mut store, b"x", &mut buf),
        Err(SealError::SequenceExhausted)
    );
    assert_eq!(g.poll_event(), None);
}

#[test]
fn provided_sender_without_traffic_is_not_reused_as_dead() {
    let mut l: Group<1, 2> = Group::new(GroupConfig::new(GID));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    l.add_sender(SenderId(1)).unwrap();
    let mut s2 = sender(2);
    let mut st = MemorySequenceStore::commissioned();
    let mut r = seal(&mut s2, &mut st, b"x");
    // The only slot holds a provided sender: taking it is an eviction, reported as such.
    assert!(l.open(Instant(0), &mut r).is_ok());
    assert_eq!(
        l.poll_event(),
        Some(Event::SenderEvicted {
            sender_id: SenderId(1)
        })
    );
}
