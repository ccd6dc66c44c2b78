//! Record-layer behaviour that a mutation run (cargo-mutants) showed no test pinned down
//! (issue 10, "Tests that a mutation run showed missing"): each test names the mutant class it
//! kills. See docs/threat-model.md, "Mutation testing", for the command and the scores.

use group_core::counters::{Event, RekeyReason};
use group_core::group::{
    Group, GroupConfig, SIGNATURE_LEN, default_confidentiality_limit, default_integrity_limit,
};
use group_core::record::{OpenError, RecordId, SealError};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::{MemorySequenceStore, SequenceStore};
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{self, Epoch, SenderId};
use p256::ecdsa::SigningKey;

const GID: u32 = 0x0A0B_0C0D;
const T0: Instant = Instant(0);

/// The suites this build can protect records with.
fn suites() -> Vec<Suite> {
    [
        Suite::AES_128_CCM_8,
        Suite::AES_128_CCM,
        Suite::AES_128_GCM,
        Suite::CHACHA20_POLY1305,
    ]
    .into_iter()
    .filter(|s| s.is_enabled())
    .collect()
}

fn keys_for(suite: Suite, epoch: u16) -> RecordKeys {
    native_keys(GID, Epoch(epoch), suite, &EpochSecret([epoch as u8; 32])).unwrap()
}

fn keys(epoch: u16) -> RecordKeys {
    keys_for(Suite::AES_128_CCM, epoch)
}

fn member_with(cfg: GroupConfig, suite: Suite) -> Group {
    let mut g: Group = Group::new(cfg);
    g.install_and_activate(Epoch(1), &keys_for(suite, 1), T0)
        .unwrap();
    g
}

fn sender(sid: u8) -> Group {
    member_with(
        GroupConfig::new(GID).with_sender_id(SenderId(sid)),
        Suite::AES_128_CCM,
    )
}

fn listener() -> Group {
    member_with(GroupConfig::new(GID), Suite::AES_128_CCM)
}

fn seal(g: &mut Group, store: &mut MemorySequenceStore, msg: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let n = g.seal(T0, store, msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn open(g: &mut Group, rec: &[u8]) -> Result<(u8, u16, u64, Vec<u8>), OpenError> {
    let mut b = rec.to_vec();
    g.open(T0, &mut b)
        .map(|d| (d.sender_id.0, d.epoch.0, d.seq, d.plaintext.to_vec()))
}

fn head(r: Result<(u8, u16, u64, Vec<u8>), OpenError>) -> Result<(u8, u16, u64), OpenError> {
    r.map(|(sid, epoch, seq, _)| (sid, epoch, seq))
}

fn events(g: &mut Group) -> Vec<Event> {
    core::iter::from_fn(|| g.poll_event()).collect()
}

fn usage(epoch: u16) -> Event {
    Event::RekeyNeeded {
        epoch: Epoch(epoch),
        reason: RekeyReason::GroupUsage,
    }
}

// ---------------------------------------------------------------------------------------------
// Replay across epochs.

/// A sender moves from epoch 1 to 2 to 3 while the receiver holds 1 (previous, in grace),
/// 2 (current) and 3 (staged). The receiver keeps the sender's windows for 3 and 2 only, so a
/// record of epoch 1, replayed or not, is `TooOld`, whatever its seq is in the epoch-2 window.
/// Kills the `*pe == epoch` guard mutants in `Group::plan` (replaced by `true` or `!=`), which
/// check an epoch-1 record against the epoch-2 window and deliver it again.
#[test]
fn replay_across_previous_current_and_staged_epochs_is_too_old() {
    let mut s = sender(1);
    let mut store = MemorySequenceStore::commissioned();
    let mut l = member_with(
        GroupConfig::new(GID).with_grace_ms(10_000),
        Suite::AES_128_CCM,
    );
    let e1: Vec<_> = (0..6).map(|_| seal(&mut s, &mut store, b"e1")).collect();
    assert_eq!(open(&mut l, &e1[0]).unwrap().2, 0);
    assert_eq!(open(&mut l, &e1[5]).unwrap().2, 5);

    s.install_and_activate(Epoch(2), &keys(2), T0).unwrap();
    l.install_and_activate(Epoch(2), &keys(2), T0).unwrap();
    let e2: Vec<_> = (0..3).map(|_| seal(&mut s, &mut store, b"e2")).collect();
    assert_eq!(head(open(&mut l, &e2[0])), Ok((1, 2, 0)));

    s.install_and_activate(Epoch(3), &keys(3), T0).unwrap();
    l.install_epoch(Epoch(3), &keys(3)).unwrap();
    let e3: Vec<_> = (0..2).map(|_| seal(&mut s, &mut store, b"e3")).collect();
    assert_eq!(head(open(&mut l, &e3[0])), Ok((1, 3, 0)));
    assert_eq!(l.epochs().previous(), Some(Epoch(1)));
    assert_eq!(l.current_epoch(), Some(Epoch(2)));
    assert_eq!(l.epochs().staged(), Some(Epoch(3)));

    let before = *l.counters();
    // Epoch 1 (the receiver's previous): the accepted record 5 and the never-seen record 3.
    assert_eq!(open(&mut l, &e1[5]), Err(OpenError::TooOld));
    assert_eq!(open(&mut l, &e1[3]), Err(OpenError::TooOld));
    // Epoch 2 (current; the sender's previous window): replay refused, fresh record delivered.
    assert_eq!(open(&mut l, &e2[0]), Err(OpenError::Replay));
    assert_eq!(head(open(&mut l, &e2[2])), Ok((1, 2, 2)));
    assert_eq!(open(&mut l, &e2[2]), Err(OpenError::Replay));
    // Epoch 3 (staged; the sender's current window).
    assert_eq!(open(&mut l, &e3[0]), Err(OpenError::Replay));
    assert_eq!(head(open(&mut l, &e3[1])), Ok((1, 3, 1)));
    let c = *l.counters();
    assert_eq!(c.too_old - before.too_old, 2);
    assert_eq!(c.replay - before.replay, 3);
    assert_eq!(c.accepted - before.accepted, 2);
    let info = l.senders().next().unwrap();
    assert_eq!(info.current, Some((Epoch(3), Some(1))));
    assert_eq!(info.previous, Some((Epoch(2), Some(2))));
}

// ---------------------------------------------------------------------------------------------
// Blocking per sender.

/// Senders 33, 34 and 200 are removed; 1, 2, 32 and 65 are admitted. The sids lie in words 0, 1,
/// 2 and 6 of the 256-bit block set. Kills word/bit mix-ups in `SidSet` (`/` and `%` swapped or
/// replaced): admitting 65 with a swapped `remove` clears the bit of 34 (word 65 % 32 = 1, bit
/// 65 / 32 = 2), a swapped `insert`/`contains` puts 200 in a word that does not exist and 34 on
/// 65's bit; a `remove` that sets (`|=`) instead of clearing blocks the rest of sid 1's word
/// (sid 2).
#[test]
fn blocking_is_per_sender_across_the_words_of_the_sid_set() {
    let mut l = listener();
    let sids = [1u8, 2, 32, 65, 33, 34, 200];
    let recs: Vec<Vec<Vec<u8>>> = sids
        .iter()
        .map(|&sid| {
            let mut s = sender(sid);
            let mut st = MemorySequenceStore::commissioned();
            (0..2).map(|_| seal(&mut s, &mut st, &[sid])).collect()
        })
        .collect();
    for sid in [33, 34, 200] {
        l.remove_sender(SenderId(sid));
    }
    for (i, &sid) in sids.iter().enumerate().take(4) {
        assert_eq!(open(&mut l, &recs[i][0]).unwrap().0, sid, "sid {sid}");
    }
    for (i, &sid) in sids.iter().enumerate().skip(4) {
        for r in &recs[i] {
            assert_eq!(
                open(&mut l, r),
                Err(OpenError::UnknownSender(SenderId(sid))),
                "sid {sid} was removed"
            );
        }
    }
    for (i, &sid) in sids.iter().enumerate().take(4) {
        assert_eq!(head(open(&mut l, &recs[i][1])), Ok((sid, 1, 1)));
    }
    assert_eq!(l.counters().unknown_sender, 6);
    assert_eq!(l.counters().accepted, 8);
    let known: Vec<u8> = l.senders().map(|s| s.sender_id.0).collect();
    assert_eq!(known, [1, 2, 32, 65]);
}

// ---------------------------------------------------------------------------------------------
// Usage and integrity limits.

/// RFC 9147 §4.5.3 figures and the project's choices, per suite.
#[test]
fn default_limits_per_suite() {
    assert_eq!(default_confidentiality_limit(Suite::AES_128_CCM_8), 1 << 23);
    assert_eq!(default_confidentiality_limit(Suite::AES_128_CCM), 1 << 23);
    assert_eq!(default_confidentiality_limit(Suite::AES_128_GCM), 1 << 24);
    assert_eq!(
        default_confidentiality_limit(Suite::CHACHA20_POLY1305),
        u64::MAX
    );
    assert_eq!(default_integrity_limit(Suite::AES_128_CCM_8), 1 << 16);
    assert_eq!(default_integrity_limit(Suite::AES_128_CCM), 1 << 23);
    assert_eq!(default_integrity_limit(Suite::AES_128_GCM), 1 << 36);
    assert_eq!(default_integrity_limit(Suite::CHACHA20_POLY1305), 1 << 36);
    // A fresh config leaves both limits to the suite.
    let cfg = GroupConfig::new(GID);
    assert_eq!(cfg.confidentiality_limit, None);
    assert_eq!(cfg.integrity_limit, None);
}

/// `RekeyNeeded{GroupUsage}` fires once, when records under one key (sealed here plus accepted
/// from others) reach the configured limit, in every suite; our own looped-back records do not
/// count.
#[test]
fn group_usage_fires_at_the_configured_limit_in_every_suite() {
    for suite in suites() {
        let mut cfg = GroupConfig::new(GID).with_sender_id(SenderId(1));
        cfg.confidentiality_limit = Some(4);
        let mut a = member_with(cfg, suite);
        let mut cfg = GroupConfig::new(GID);
        cfg.confidentiality_limit = Some(4);
        let mut l = member_with(cfg, suite);
        let mut st = MemorySequenceStore::commissioned();

        let recs: Vec<_> = (0..3).map(|_| seal(&mut a, &mut st, b"u")).collect();
        for r in &recs {
            // Looped back to the sender: dropped, and not a record protected "again".
            assert_eq!(open(&mut a, r), Err(OpenError::OwnSenderId));
            assert!(open(&mut l, r).is_ok());
        }
        assert_eq!(events(&mut a), [], "{suite:?}: 3 of 4 sealed");
        assert_eq!(events(&mut l), [], "{suite:?}: 3 of 4 accepted");
        let r4 = seal(&mut a, &mut st, b"u");
        assert_eq!(events(&mut a), [usage(1)], "{suite:?}: 4th sealed");
        assert!(open(&mut l, &r4).is_ok());
        assert_eq!(events(&mut l), [usage(1)], "{suite:?}: 4th accepted");
        // Once per key.
        let r5 = seal(&mut a, &mut st, b"u");
        assert!(open(&mut l, &r5).is_ok());
        assert_eq!(events(&mut a), []);
        assert_eq!(events(&mut l), []);

        // A member that both sends and receives counts both.
        let mut cfg = GroupConfig::new(GID).with_sender_id(SenderId(2));
        cfg.confidentiality_limit = Some(3);
        let mut b = member_with(cfg, suite);
        let mut st_b = MemorySequenceStore::commissioned();
        seal(&mut b, &mut st_b, b"b");
        assert!(open(&mut b, &recs[0]).is_ok());
        assert_eq!(events(&mut b), []);
        assert!(open(&mut b, &recs[1]).is_ok());
        assert_eq!(events(&mut b), [usage(1)], "{suite:?}: mixed");
    }
}

/// With no configured limit the suite's figure applies: far above a few hundred records.
#[test]
fn group_usage_defaults_to_the_suite_limit() {
    for suite in suites() {
        let mut a = member_with(GroupConfig::new(GID).with_sender_id(SenderId(1)), suite);
        let mut l = member_with(GroupConfig::new(GID), suite);
        let mut st = MemorySequenceStore::commissioned();
        for _ in 0..300 {
            let r = seal(&mut a, &mut st, b"x");
            assert!(open(&mut l, &r).is_ok());
        }
        assert_eq!(events(&mut a), [], "{suite:?}");
        assert_eq!(events(&mut l), [], "{suite:?}");
    }
}

/// `IntegrityLimitReached` fires once, at exactly the configured number of failures under one
/// key, in every suite; failures under another epoch's key count separately.
#[test]
fn integrity_limit_fires_at_the_configured_limit_in_every_suite() {
    for suite in suites() {
        let mut a = member_with(GroupConfig::new(GID).with_sender_id(SenderId(1)), suite);
        let mut st = MemorySequenceStore::commissioned();
        let good = seal(&mut a, &mut st, b"integrity");
        a.install_and_activate(Epoch(2), &keys_for(suite, 2), T0)
            .unwrap();
        let good2 = seal(&mut a, &mut st, b"integrity");
        let mut cfg = GroupConfig::new(GID);
        cfg.integrity_limit = Some(3);
        let mut l = member_with(cfg, suite);
        l.install_epoch(Epoch(2), &keys_for(suite, 2)).unwrap();
        let forge = |r: &[u8], i: usize| {
            let mut r = r.to_vec();
            let at = r.len() - 1 - i;
            r[at] ^= 0x40;
            r
        };
        for i in 0..2 {
            assert_eq!(
                open(&mut l, &forge(&good, i)),
                Err(OpenError::AuthenticationFailed)
            );
            assert_eq!(
                open(&mut l, &forge(&good2, i)),
                Err(OpenError::AuthenticationFailed)
            );
        }
        assert_eq!(events(&mut l), [], "{suite:?}: 2 of 3 under each key");
        assert_eq!(l.epochs().current().unwrap().auth_failures(), 2);
        assert_eq!(
            open(&mut l, &forge(&good, 2)),
            Err(OpenError::AuthenticationFailed)
        );
        assert_eq!(
            events(&mut l),
            [Event::IntegrityLimitReached {
                epoch: Epoch(1),
                failures: 3
            }],
            "{suite:?}"
        );
        assert_eq!(
            open(&mut l, &forge(&good, 3)),
            Err(OpenError::AuthenticationFailed)
        );
        assert_eq!(events(&mut l), [], "{suite:?}: once per key");
        assert_eq!(l.counters().authentication_failed, 6);
        // The genuine records still open: failures change no replay state.
        assert!(open(&mut l, &good).is_ok());
        assert!(open(&mut l, &good2).is_ok());
    }
}

/// The default integrity limit of AES-128-CCM_8 (2^16 failures) is reached for real; the other
/// suites' defaults (2^23, 2^36) are far above it and their figures are checked in
/// `default_limits_per_suite` (2^16 failures take seconds; 2^23 would take hours).
#[test]
fn integrity_limit_defaults_to_the_suite_limit() {
    for suite in suites() {
        let n = if suite == Suite::AES_128_CCM_8 {
            1u64 << 16
        } else {
            1000
        };
        let mut a = member_with(GroupConfig::new(GID).with_sender_id(SenderId(1)), suite);
        let mut st = MemorySequenceStore::commissioned();
        let mut bad = seal(&mut a, &mut st, b"");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut l = member_with(GroupConfig::new(GID), suite);
        let mut buf = bad.clone();
        for i in 1..=n {
            buf.copy_from_slice(&bad);
            assert_eq!(
                l.open(T0, &mut buf).err(),
                Some(OpenError::AuthenticationFailed)
            );
            if i == n - 1 {
                assert_eq!(events(&mut l), [], "{suite:?}");
            }
        }
        let expected = if suite == Suite::AES_128_CCM_8 {
            vec![Event::IntegrityLimitReached {
                epoch: Epoch(1),
                failures: n,
            }]
        } else {
            vec![]
        };
        assert_eq!(events(&mut l), expected, "{suite:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sequence persistence through `&mut S`.

/// `Group::seal` through the blanket `SequenceStore for &mut S` adapter: reservations reach
/// the underlying store, and a restarted sender resumes at the stored mark. Kills mutants that
/// make the adapter's `load` return `Ok(None)` or its `save` do nothing.
#[test]
fn sequence_persists_through_the_mut_ref_adapter_across_a_restart() {
    let mut cfg = GroupConfig::new(GID).with_sender_id(SenderId(7));
    cfg.sequence_reserve_step = 5;
    let mut store = MemorySequenceStore::commissioned();
    let mut seqs = Vec::new();
    for _boot in 0..2 {
        let mut g = member_with(cfg, Suite::AES_128_CCM);
        let mut adapter: &mut MemorySequenceStore = &mut store;
        for _ in 0..3 {
            let mut buf = [0u8; 64];
            g.seal(T0, &mut adapter, b"x", &mut buf).unwrap();
            seqs.push(u64::from_be_bytes([
                0, 0, 0, buf[6], buf[7], buf[8], buf[9], buf[10],
            ]));
        }
        let loaded = SequenceStore::load(&mut adapter).unwrap().unwrap();
        assert_eq!(loaded, store.stored().unwrap().unwrap());
        // Crash: the group is dropped, the store keeps its reservation.
    }
    assert_eq!(seqs, [0, 1, 2, 5, 6, 7]);
    let stored = store.stored().unwrap().unwrap();
    assert_eq!(stored.epoch, Epoch(1));
    assert_eq!(stored.sender_id, SenderId(7));
    assert_eq!(stored.reserved_until, 10);
    assert_eq!(store.saves(), 2);
}

// ---------------------------------------------------------------------------------------------
// Our own sender ID on a genuine record.

/// A genuine record under our sid with a number we have not sent yet (at or above our next
/// seq, or in an epoch we do not send in) can only come from another member holding our sid:
/// `PossibleSenderIdClash`. Below our next seq in our epoch it may be our own loopback: no event.
#[test]
fn possible_sender_id_clash_at_or_above_our_next_seq() {
    let mut me = sender(9);
    let mut my_store = MemorySequenceStore::commissioned();
    let mut twin = sender(9);
    let mut twin_store = MemorySequenceStore::commissioned();
    for _ in 0..3 {
        seal(&mut me, &mut my_store, b"mine");
    }
    assert_eq!(me.next_send_seq(), Some((Epoch(1), 3)));
    let theirs: Vec<_> = (0..6)
        .map(|_| seal(&mut twin, &mut twin_store, b"theirs"))
        .collect();
    for r in &theirs[..3] {
        assert_eq!(open(&mut me, r), Err(OpenError::OwnSenderId));
    }
    assert_eq!(events(&mut me), [], "seq 0..3 may be our own loopback");
    assert_eq!(open(&mut me, &theirs[3]), Err(OpenError::OwnSenderId));
    assert_eq!(
        events(&mut me),
        [Event::PossibleSenderIdClash {
            epoch: Epoch(1),
            seq: 3
        }]
    );
    assert_eq!(open(&mut me, &theirs[5]), Err(OpenError::OwnSenderId));
    assert_eq!(
        events(&mut me),
        [Event::PossibleSenderIdClash {
            epoch: Epoch(1),
            seq: 5
        }]
    );
    // The twin already sends in the staged epoch 2; we still send in 1. Seq 0 of epoch 2 is
    // below our next seq, but not a number we sent.
    me.install_epoch(Epoch(2), &keys(2)).unwrap();
    twin.install_and_activate(Epoch(2), &keys(2), T0).unwrap();
    let e2 = seal(&mut twin, &mut twin_store, b"theirs");
    assert_eq!(open(&mut me, &e2), Err(OpenError::OwnSenderId));
    assert_eq!(
        events(&mut me),
        [Event::PossibleSenderIdClash {
            epoch: Epoch(2),
            seq: 0
        }]
    );
    // A node that has not sent anything yet: every genuine record under its sid is a clash.
    let mut quiet = sender(9);
    assert_eq!(open(&mut quiet, &theirs[0]), Err(OpenError::OwnSenderId));
    assert_eq!(
        events(&mut quiet),
        [Event::PossibleSenderIdClash {
            epoch: Epoch(1),
            seq: 0
        }]
    );
    assert_eq!(me.counters().own_sender_id, 6);
    assert_eq!(me.counters().accepted, 0);
}

// ---------------------------------------------------------------------------------------------
// Fragment bounds at the configured maximum.

fn signing_key(b: u8) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[0] = 0x22;
    bytes[31] = b;
    SigningKey::from_slice(&bytes).unwrap()
}

/// With `max_fragment_len = M`, a record whose fragment (explicit nonce, ciphertext, tag and
/// signature) is exactly M bytes is sealed and opened; one byte more is refused on both sides:
/// `PlaintextTooLarge` when sealing, `Malformed(LengthTooLarge)` when opening.
#[test]
fn fragment_bounds_at_the_configured_maximum_on_seal_and_open() {
    const M: usize = 100;
    for signed in [false, true] {
        for suite in suites() {
            let overhead = {
                let p = suite.params().unwrap();
                p.explicit_nonce_len + p.tag_len + if signed { SIGNATURE_LEN } else { 0 }
            };
            let fits = M + if signed { SIGNATURE_LEN } else { 0 } - overhead;
            let config = |max: usize, sid: Option<u8>| {
                let mut cfg = GroupConfig::new(GID);
                cfg.max_fragment_len = max + if signed { SIGNATURE_LEN } else { 0 };
                cfg.own_sender_id = sid.map(SenderId);
                if signed {
                    cfg = cfg.with_signatures();
                }
                cfg
            };
            let member = |max: usize, sid: Option<u8>| {
                let mut g = member_with(config(max, sid), suite);
                if signed {
                    g.set_sender_key(SenderId(1), *signing_key(1).verifying_key())
                        .unwrap();
                    g.set_signing_key(signing_key(1));
                }
                g
            };
            let label = format!("{suite:?}, signed: {signed}");
            let mut s = member(M, Some(1));
            let mut st = MemorySequenceStore::commissioned();
            let mut buf = [0u8; 512];
            let n = s.seal(T0, &mut st, &vec![7; fits], &mut buf).unwrap();
            let limit = M + if signed { SIGNATURE_LEN } else { 0 };
            assert_eq!(n, wire::HEADER_LEN + limit, "{label}");
            assert_eq!(s.record_len(fits).unwrap(), n, "{label}");
            let at_max = buf[..n].to_vec();
            assert_eq!(
                s.seal(T0, &mut st, &vec![7; fits + 1], &mut buf),
                Err(SealError::PlaintextTooLarge),
                "{label}"
            );
            // A sender allowed one byte more produces a record one byte over M.
            let mut big = member(M + 1, Some(1));
            let mut st_big = MemorySequenceStore::commissioned();
            let n = big
                .seal(T0, &mut st_big, &vec![8; fits + 1], &mut buf)
                .unwrap();
            let over = buf[..n].to_vec();

            let mut l = member(M, None);
            assert_eq!(open(&mut l, &at_max).unwrap().3, vec![7; fits], "{label}");
            assert_eq!(
                open(&mut l, &over),
                Err(OpenError::Malformed(wire::Error::LengthTooLarge)),
                "{label}"
            );
            assert_eq!(l.counters().malformed, 1, "{label}");
            let mut l = member(M + 1, None);
            assert_eq!(open(&mut l, &over).unwrap().3, vec![8; fits + 1], "{label}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Survivors of the first mutation pass (see docs/threat-model.md, "Mutation testing").

/// Sealing into a buffer of exactly the record's length works; one byte less is
/// `BufferTooSmall`. Kills `buf.len() < total` replaced by `<=` or `==` in `seal_in_place`.
#[test]
fn seal_fits_a_buffer_of_exactly_the_record_length() {
    for suite in suites() {
        let mut s = member_with(GroupConfig::new(GID).with_sender_id(SenderId(1)), suite);
        let mut st = MemorySequenceStore::commissioned();
        let len = s.record_len(5).unwrap();
        let off = s.payload_offset().unwrap();
        let mut exact = vec![0u8; len];
        exact[off..off + 5].copy_from_slice(b"exact");
        assert_eq!(s.seal_in_place(T0, &mut st, &mut exact, 5), Ok(len));
        let mut short = vec![0u8; len - 1];
        assert_eq!(
            s.seal_in_place(T0, &mut st, &mut short, 5),
            Err(SealError::BufferTooSmall)
        );
        let mut l = member_with(GroupConfig::new(GID), suite);
        assert_eq!(open(&mut l, &exact).unwrap().3, b"exact");
    }
}

/// A signing key set in a group that does not require signatures adds no trailer: the record
/// is the plain length and opens. Kills `trailer > 0` replaced by `>=` in `seal_in_place`.
#[test]
fn signing_key_in_an_unsigned_group_adds_no_signature() {
    let mut s = sender(1);
    s.set_signing_key(signing_key(1));
    let mut st = MemorySequenceStore::commissioned();
    let mut buf = [0u8; 512];
    let n = s.seal(T0, &mut st, b"plain", &mut buf).unwrap();
    assert_eq!(n, s.record_len(5).unwrap());
    assert_eq!(n, wire::HEADER_LEN + 8 + 5 + 16);
    assert_eq!(open(&mut listener(), &buf[..n]).unwrap().3, b"plain");
}

/// The protocol maximum of a fragment (2^14 + 2048): a header announcing exactly that parses, one
/// more is `LengthTooLarge`; `record::seal_in_place_with_trailer` seals a fragment of exactly
/// that (a 2^14-byte plaintext plus a trailer) and refuses one byte more. Kills the mutants of
/// the `MAX_FRAGMENT_LEN` constant and of `fragment_len > MAX_FRAGMENT_LEN` (`>=`, `==`).
#[test]
fn protocol_fragment_maximum_on_parse_and_seal() {
    use group_core::record;
    use group_core::suite::EpochCipher;
    use group_core::wire::{ContentType, MAX_FRAGMENT_LEN, RecordHeader};
    assert_eq!(MAX_FRAGMENT_LEN, 18432);
    let mut bytes = vec![0u8; wire::HEADER_LEN + 18433];
    for (len, ok) in [(18432u16, true), (18433, false)] {
        bytes[..wire::HEADER_LEN].copy_from_slice(&[23, 0xfe, 0xfd, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        bytes[11..13].copy_from_slice(&len.to_be_bytes());
        let parsed = RecordHeader::parse(&bytes);
        if ok {
            assert_eq!(parsed.unwrap().length, len);
        } else {
            assert_eq!(parsed, Err(wire::Error::LengthTooLarge));
        }
    }
    let cipher = EpochCipher::new(&keys(1)).unwrap();
    let pt = 1 << 14;
    let trailer = MAX_FRAGMENT_LEN - (8 + pt + 16);
    let mut buf = vec![0u8; wire::HEADER_LEN + MAX_FRAGMENT_LEN + 1];
    let seal = |buf: &mut [u8], trailer: usize| {
        record::seal_in_place_with_trailer(
            &cipher,
            ContentType::APPLICATION_DATA,
            RecordId {
                epoch: Epoch(1),
                sender_id: SenderId(1),
                seq: 0,
            },
            buf,
            pt,
            trailer,
        )
    };
    assert_eq!(seal(&mut buf, trailer), Ok(wire::HEADER_LEN + 8 + pt + 16));
    assert_eq!(
        RecordHeader::parse(&buf).unwrap().length as usize,
        MAX_FRAGMENT_LEN
    );
    assert_eq!(
        seal(&mut buf, trailer + 1),
        Err(SealError::PlaintextTooLarge)
    );
}

/// The grace deadline is what `poll_timeout` reports, and the previous epoch is held strictly
/// before it, gone at it. Kills `poll_timeout`/`next_deadline` replaced by `None` or
/// `Some(default)`, and `now < deadline` replaced by `<=` in `EpochSet::get_mut`.
#[test]
fn grace_deadline_is_reported_and_exclusive() {
    use group_core::epochs::{EpochRole, EpochSet};
    let mut l = member_with(GroupConfig::new(GID).with_grace_ms(500), Suite::AES_128_CCM);
    assert_eq!(l.poll_timeout(), None);
    l.install_epoch(Epoch(2), &keys(2)).unwrap();
    l.activate_epoch(Epoch(2), Instant(1000)).unwrap();
    assert_eq!(l.poll_timeout(), Some(Instant(1500)));
    l.handle_timeout(Instant(1499));
    assert_eq!(l.epochs().previous(), Some(Epoch(1)));
    l.handle_timeout(Instant(1500));
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(
        l.poll_event(),
        Some(Event::EpochRetired { epoch: Epoch(1) })
    );

    let mut set = EpochSet::new();
    for e in 1..=3u16 {
        set.install(Epoch(e), &keys(e)).unwrap();
        if e < 3 {
            set.activate(Epoch(e), Instant(100), 50).unwrap();
        }
    }
    assert_eq!(set.next_deadline(), Some(Instant(150)));
    let role = |set: &mut EpochSet, e: u16, t: u64| set.get_mut(Epoch(e), Instant(t)).map(|r| r.0);
    assert_eq!(role(&mut set, 1, 149), Some(EpochRole::Previous));
    assert_eq!(role(&mut set, 1, 150), None);
    assert_eq!(role(&mut set, 2, 150), Some(EpochRole::Current));
    assert_eq!(role(&mut set, 3, 150), Some(EpochRole::Next));
    assert_eq!(role(&mut set, 4, 0), None);
    // `holds`: exactly the three held epochs, the previous one only before its deadline.
    for e in 0..=5u16 {
        assert_eq!(
            set.holds(Epoch(e), Instant(149)),
            (1..=3).contains(&e),
            "{e}"
        );
    }
    assert!(!set.holds(Epoch(1), Instant(150)));
}

/// Losing a memory store's state makes it report `Missing`, and a sender then refuses to seal.
#[test]
fn memory_store_loses_its_state_on_request() {
    let mut s = sender(1);
    let mut st = MemorySequenceStore::commissioned();
    seal(&mut s, &mut st, b"x");
    st.lose();
    assert_eq!(st.stored(), Err(group_core::sequence::StoreError::Missing));
    let mut restarted = sender(1);
    let mut buf = [0u8; 64];
    assert_eq!(
        restarted.seal(T0, &mut st, b"x", &mut buf),
        Err(SealError::SequenceStateLost(
            group_core::sequence::StoreError::Missing
        ))
    );
}

/// Error and debug texts the tools print (and that never carry key material).
#[test]
fn error_and_debug_texts() {
    use group_core::sequence::StoreError;
    use group_core::wire::ContentType;
    assert_eq!(OpenError::Replay.to_string(), "replay");
    assert_eq!(
        OpenError::UnknownEpoch(Epoch(7)).to_string(),
        "unknown epoch 7"
    );
    assert_eq!(
        OpenError::Malformed(wire::Error::LengthTooLarge).to_string(),
        "malformed: record length too large"
    );
    assert_eq!(
        SealError::PlaintextTooLarge.to_string(),
        "plaintext too large"
    );
    assert_eq!(
        SealError::SequenceStateLost(StoreError::Corrupt).to_string(),
        "sequence state lost: sequence state corrupt"
    );
    assert_eq!(StoreError::Missing.to_string(), "sequence state missing");
    assert_eq!(
        wire::Error::TrailingBytes.to_string(),
        "bytes after the record"
    );
    assert_eq!(
        format!("{:?}", ContentType::APPLICATION_DATA),
        "ApplicationData"
    );
    assert_eq!(format!("{:?}", ContentType(99)), "ContentType(99)");
    let g = sender(1);
    let dbg = format!("{g:?}");
    assert!(dbg.starts_with("Group {"), "{dbg}");
    assert!(dbg.contains("counters"), "{dbg}");
    assert!(dbg.contains("AES_128_CCM") || dbg.contains("ccm"), "{dbg}");
}

/// Secrets of the key schedules print as placeholders, never as bytes.
#[test]
fn schedule_secrets_debug_without_bytes() {
    use group_core::schedule::wolfssl_keys;
    let secret = EpochSecret([0xAB; 32]);
    assert_eq!(format!("{secret:?}"), "EpochSecret(..)");
    let d = wolfssl_keys(Suite::AES_128_CCM, &[0xCD; 48], &[1; 32], &[2; 32]).unwrap();
    let dbg = format!("{d:?}");
    assert_eq!(dbg, "WolfSslDerivation { .. }");
    let keys = format!("{:?}", d.keys);
    assert!(keys.starts_with("RecordKeys"), "{keys}");
    assert!(!keys.to_lowercase().contains("cd"), "{keys}");
}
