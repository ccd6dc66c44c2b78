//! Property tests of the receive path, [`Group::open`] (wire-format.md §4): hostile input is dropped,
//! counted once, and changes nothing.
//!
//! A receiver (own sender ID 9) holds three epochs: previous (1, in its grace period), current
//! (2) and staged (3). A pool of valid records is sealed with the real keys:
//!
//! | sender | epoch | seqs | story                                                      |
//! |--------|-------|------|------------------------------------------------------------|
//! | 1      | 1     | 0..4 | a switch, before it moved to the current epoch             |
//! | 1      | 2     | 0..7 | the same switch in the current epoch                       |
//! | 2      | 1     | 0..5 | a sensor still sending in the previous epoch               |
//! | 3      | 3     | 0..4 | a sensor that already moved to the staged epoch            |
//! | 3      | 1     | 0..3 | that sensor's old records (older than its epoch: too old)  |
//! | 4      | 2     | 0..4 | a sender the receiver has not heard from yet               |
//! | 9      | 2     | 0    | someone using the receiver's own sender ID                 |
//! | 1      | 2     | 7    | a valid alert record (not application data)                |
//!
//! The receiver first accepts some of them. Then each case feeds it arbitrary bytes, bytes with
//! a plausible header, and valid records mutated (bit flips, truncations, trailing bytes, length
//! edits, header field edits, a header edit with a matching explicit nonce, a splice of two
//! records). For every input:
//! - no panic;
//! - it is delivered only if it is byte for byte a pool record that a reference model says is
//!   fresh, and then with that record's sender, epoch, seq and plaintext;
//!   The model keeps, per sender, a current and a previous window (epoch, first accepted seq,
//!   seqs seen); all seqs of the pool lie well inside a 64-record window;
//! - after every input, the receiver's view of the senders equals the model's;
//! - when refused: the error is the model's (for untouched pool records), exactly one drop
//!   counter moves (the one named by the error), and nothing else changes: senders, epochs,
//!   deadlines, sending state, events (except the sender-ID clash report), and the
//!   current epoch's authentication-failure count (except +1 on an authentication failure).
//!
//! At the end of every case, every pool record is offered again: each previously accepted one
//! is still refused as a replay and every fresh one is still accepted.

use std::collections::{BTreeMap, BTreeSet};

use group_core::counters::{Counters, Event};
use group_core::group::{Admission, Group, GroupConfig, SenderInfo};
use group_core::record::{self, OpenError};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::suite::{EpochCipher, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{ContentType, Epoch, HEADER_LEN, MAX_SEQ, RecordHeader, SenderId};
use proptest::prelude::*;
use proptest::sample::Index;

const GROUP_ID: u32 = 0x0001_0203;
const OWN_SID: SenderId = SenderId(9);
const NOW: Instant = Instant(5_000);

fn keys(suite: Suite, epoch: u16) -> RecordKeys {
    let secret = EpochSecret([epoch as u8 ^ 0x5A; 32]);
    native_keys(GROUP_ID, Epoch(epoch), suite, &secret).unwrap()
}

/// A record sealed with the group's real keys.
#[derive(Clone, Debug)]
struct Valid {
    bytes: Vec<u8>,
    epoch: Epoch,
    sid: SenderId,
    seq: u64,
    content_type: ContentType,
    plaintext: Vec<u8>,
}

fn seal(suite: Suite, ct: ContentType, epoch: u16, sid: u8, seq: u64) -> Valid {
    let cipher = EpochCipher::new(&keys(suite, epoch)).unwrap();
    let plaintext = format!("e{epoch} s{sid} #{seq}").into_bytes();
    let mut out = vec![0u8; plaintext.len() + 64];
    let n = record::seal(
        &cipher,
        ct,
        Epoch(epoch),
        SenderId(sid),
        seq,
        &plaintext,
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    Valid {
        bytes: out,
        epoch: Epoch(epoch),
        sid: SenderId(sid),
        seq,
        content_type: ct,
        plaintext,
    }
}

fn pool(suite: Suite) -> Vec<Valid> {
    let app = ContentType::APPLICATION_DATA;
    let mut p = Vec::new();
    p.extend((0..4).map(|s| seal(suite, app, 1, 1, s)));
    p.extend((0..7).map(|s| seal(suite, app, 2, 1, s)));
    p.extend((0..5).map(|s| seal(suite, app, 1, 2, s)));
    p.extend((0..4).map(|s| seal(suite, app, 3, 3, s)));
    p.extend((0..3).map(|s| seal(suite, app, 1, 3, s)));
    p.extend((0..4).map(|s| seal(suite, app, 2, 4, s)));
    p.push(seal(suite, app, 2, OWN_SID.0, 0));
    p.push(seal(suite, ContentType::ALERT, 2, 1, 7));
    p
}

/// The pool records `(sid, epoch, seq)` the receiver accepts before the attack starts, in this
/// order: the switch moves from epoch 1 to 2 (out of order in both), the sensors start.
const WARM_UP: [(u8, u16, u64); 8] = [
    (1, 1, 0),
    (1, 1, 2),
    (1, 2, 0),
    (1, 2, 2),
    (1, 2, 1),
    (2, 1, 0),
    (2, 1, 1),
    (3, 3, 0),
];

/// One replay window in the model: its epoch, the first accepted seq, and every seq accepted.
#[derive(Clone, Debug)]
struct WindowModel {
    epoch: Epoch,
    first: u64,
    seen: BTreeSet<u64>,
}

#[derive(Clone, Debug, Default)]
struct SenderModel {
    current: Option<WindowModel>,
    previous: Option<WindowModel>,
}

/// What the receiver should do with an untouched pool record (wire-format.md §4–§6).
#[derive(Debug)]
struct Model {
    strict: bool,
    senders: BTreeMap<SenderId, SenderModel>,
}

impl Model {
    fn new(strict: bool) -> Self {
        let mut senders = BTreeMap::new();
        if strict {
            // The key server provided senders 1 to 3; their windows open on first use.
            for sid in 1..=3 {
                senders.insert(SenderId(sid), SenderModel::default());
            }
        }
        Self { strict, senders }
    }

    fn window_verdict(&self, w: &WindowModel, seq: u64) -> Result<(), OpenError> {
        // Trust-first: numbers below the first accepted one count as seen.
        if w.seen.contains(&seq) || (!self.strict && seq < w.first) {
            Err(OpenError::Replay)
        } else {
            Ok(())
        }
    }

    fn verdict(&self, v: &Valid) -> Result<(), OpenError> {
        if v.content_type != ContentType::APPLICATION_DATA {
            return Err(OpenError::UnsupportedContentType(v.content_type));
        }
        if v.sid == OWN_SID {
            return Err(OpenError::OwnSenderId);
        }
        let Some(s) = self.senders.get(&v.sid) else {
            return if self.strict {
                Err(OpenError::UnknownSender(v.sid))
            } else {
                Ok(())
            };
        };
        match (&s.current, &s.previous) {
            (None, _) => Ok(()),
            (Some(c), _) if c.epoch == v.epoch => self.window_verdict(c, v.seq),
            (Some(c), _) if v.epoch > c.epoch => Ok(()),
            (_, Some(p)) if p.epoch == v.epoch => self.window_verdict(p, v.seq),
            _ => Err(OpenError::TooOld),
        }
    }

    fn accept(&mut self, v: &Valid) {
        assert_eq!(self.verdict(v), Ok(()), "model: accepting a refused record");
        let fresh = || WindowModel {
            epoch: v.epoch,
            first: v.seq,
            seen: BTreeSet::from([v.seq]),
        };
        let s = self.senders.entry(v.sid).or_default();
        match &mut s.current {
            Some(c) if c.epoch == v.epoch => {
                c.seen.insert(v.seq);
            }
            Some(c) if v.epoch > c.epoch => s.previous = s.current.replace(fresh()),
            Some(_) => {
                s.previous.as_mut().unwrap().seen.insert(v.seq);
            }
            None => s.current = Some(fresh()),
        }
    }

    fn accepted(&self, v: &Valid) -> bool {
        self.senders.get(&v.sid).is_some_and(|s| {
            [&s.current, &s.previous]
                .into_iter()
                .flatten()
                .any(|w| w.epoch == v.epoch && w.seen.contains(&v.seq))
        })
    }

    fn infos(&self) -> Vec<SenderInfo> {
        let view = |w: &Option<WindowModel>| {
            w.as_ref()
                .map(|w| (w.epoch, w.seen.iter().next_back().copied()))
        };
        self.senders
            .iter()
            .map(|(sid, s)| SenderInfo {
                sender_id: *sid,
                current: view(&s.current),
                previous: view(&s.previous),
            })
            .collect()
    }
}

fn sorted(mut v: Vec<SenderInfo>) -> Vec<SenderInfo> {
    v.sort_by_key(|s| s.sender_id);
    v
}

/// Everything observable about a receiver except its counters.
#[derive(Debug, PartialEq)]
struct Snapshot {
    senders: Vec<SenderInfo>,
    current: Option<Epoch>,
    staged: Option<Epoch>,
    previous: Option<Epoch>,
    auth_failures_current: u64,
    timeout: Option<Instant>,
    next_send: Option<(Epoch, u64)>,
}

fn snapshot(g: &Group) -> Snapshot {
    Snapshot {
        senders: g.senders().collect(),
        current: g.current_epoch(),
        staged: g.epochs().staged(),
        previous: g.epochs().previous(),
        auth_failures_current: g.epochs().current().map_or(0, |c| c.auth_failures()),
        timeout: g.poll_timeout(),
        next_send: g.next_send_seq(),
    }
}

struct Fixture {
    rx: Group,
    pool: Vec<Valid>,
    model: Model,
}

fn fixture(suite: Suite, strict: bool) -> Fixture {
    let admission = if strict {
        Admission::Strict
    } else {
        Admission::TrustFirst
    };
    let mut rx: Group = Group::new(
        GroupConfig::new(GROUP_ID)
            .with_sender_id(OWN_SID)
            .with_admission(admission),
    );
    rx.install_and_activate(Epoch(1), &keys(suite, 1), Instant(0))
        .unwrap();
    rx.install_and_activate(Epoch(2), &keys(suite, 2), Instant(1_000))
        .unwrap();
    rx.install_epoch(Epoch(3), &keys(suite, 3)).unwrap();
    if strict {
        for sid in 1..=3 {
            rx.add_sender(SenderId(sid)).unwrap();
        }
    }
    let pool = pool(suite);
    let mut model = Model::new(strict);
    for (sid, epoch, seq) in WARM_UP {
        let v = pool
            .iter()
            .find(|v| (v.sid.0, v.epoch.0, v.seq) == (sid, epoch, seq))
            .unwrap();
        let mut b = v.bytes.clone();
        let d = rx.open(NOW, &mut b).unwrap();
        assert_eq!(d.plaintext, &v.plaintext[..]);
        model.accept(v);
    }
    assert_eq!(sorted(rx.senders().collect()), model.infos());
    assert_eq!(rx.poll_event(), None);
    assert_eq!(snapshot(&rx).previous, Some(Epoch(1)));
    assert_eq!(snapshot(&rx).staged, Some(Epoch(3)));
    Fixture { rx, pool, model }
}

/// Offers `bytes` to the receiver and checks every property listed in the file header.
fn offer(f: &mut Fixture, bytes: &[u8]) -> Result<(), TestCaseError> {
    let valid = f.pool.iter().find(|v| v.bytes == bytes).cloned();
    let expected = valid.as_ref().map(|v| f.model.verdict(v));
    let before = snapshot(&f.rx);
    let counters_before: Counters = *f.rx.counters();
    let mut buf = bytes.to_vec();
    let outcome = f.rx.open(NOW, &mut buf).map(|d| {
        (
            d.epoch,
            d.sender_id,
            d.seq,
            d.content_type,
            d.plaintext.to_vec(),
        )
    });
    let after = snapshot(&f.rx);
    let counters = *f.rx.counters();
    let event = f.rx.poll_event();
    prop_assert_eq!(f.rx.poll_event(), None);

    match outcome {
        Ok((epoch, sid, seq, ct, plaintext)) => {
            let Some(v) = valid else {
                return Err(TestCaseError::fail(format!(
                    "delivered bytes that are no valid record: {}",
                    hex::encode(bytes)
                )));
            };
            prop_assert_eq!(expected, Some(Ok(())), "delivered {:?}", (v.sid, v.seq));
            prop_assert_eq!(
                (epoch, sid, seq, ct),
                (v.epoch, v.sid, v.seq, v.content_type)
            );
            prop_assert_eq!(&plaintext, &v.plaintext);
            prop_assert_eq!(counters.accepted, counters_before.accepted + 1);
            prop_assert_eq!(counters.dropped(), counters_before.dropped());
            prop_assert_eq!(event, None);
            f.model.accept(&v);
            prop_assert_eq!(sorted(after.senders), f.model.infos());
        }
        Err(e) => {
            if let Some(exp) = expected {
                prop_assert_eq!(Err(e), exp, "untouched pool record");
            }
            prop_assert_eq!(counters.accepted, counters_before.accepted);
            prop_assert_eq!(counters.dropped(), counters_before.dropped() + 1);
            let moved: Vec<_> = counters
                .drop_reasons()
                .into_iter()
                .zip(counters_before.drop_reasons())
                .filter(|(a, b)| a != b)
                .map(|((name, now), (_, was))| (name, now - was))
                .collect();
            prop_assert_eq!(moved, vec![(e.reason(), 1)]);

            // Nothing else changed, except the documented side effects of two reasons.
            let mut expected_after = before;
            if e == OpenError::AuthenticationFailed {
                let epoch = RecordHeader::parse(bytes).unwrap().epoch;
                if Some(epoch) == expected_after.current {
                    expected_after.auth_failures_current += 1;
                }
            }
            prop_assert_eq!(sorted(after.senders.clone()), f.model.infos());
            prop_assert_eq!(after, expected_after, "refused with {:?}", e);
            if e == OpenError::OwnSenderId {
                let h = RecordHeader::parse(bytes).unwrap();
                prop_assert_eq!(
                    event,
                    Some(Event::PossibleSenderIdClash {
                        epoch: h.epoch,
                        seq: h.seq
                    })
                );
            } else {
                prop_assert_eq!(event, None);
            }
            // The would-be plaintext is not handed out: the caller's buffer holds no part of
            // a valid record's plaintext where it would have been decrypted.
            if let Some(v) = &valid {
                let at = HEADER_LEN + 8;
                if buf.len() >= at + v.plaintext.len() && !v.plaintext.is_empty() {
                    prop_assert_ne!(&buf[at..at + v.plaintext.len()], &v.plaintext[..]);
                }
            }
        }
    }
    Ok(())
}

/// Every pool record, again: accepted ones are replays, fresh ones are delivered.
fn final_check(f: &mut Fixture) -> Result<(), TestCaseError> {
    for v in f.pool.clone() {
        if f.model.accepted(&v) {
            prop_assert_eq!(f.model.verdict(&v), Err(OpenError::Replay));
            offer(f, &v.bytes)?;
        }
    }
    for v in f.pool.clone() {
        offer(f, &v.bytes)?;
    }
    // The switch's epoch-2 seqs 3..6 were fresh at the start: delivered now or before.
    for v in &f.pool {
        if v.sid == SenderId(1) && v.epoch == Epoch(2) && v.content_type.0 == 23 {
            prop_assert!(f.model.accepted(v), "{:?}", (v.sid, v.epoch, v.seq));
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Mutation {
    Untouched,
    FlipBits(Vec<Index>),
    /// Bit flips in the ciphertext and tag only (past header and explicit nonce): these reach
    /// the AEAD.
    FlipSealedBits(Vec<Index>),
    Truncate(Index),
    Append(Vec<u8>),
    SetLength(u16),
    NudgeLength(i8),
    SetType(u8),
    SetVersion(u16),
    SetEpoch(u16),
    SetSid(u8),
    SetSeq(u64),
    /// Edit the header's seq *and* the explicit nonce to match, so the strict nonce check
    /// passes and the record reaches the AEAD.
    SetSeqAndNonce(u64),
    SetSidAndNonce(u8),
    /// Header of one record, fragment of another.
    Splice(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let field_seq = prop_oneof![0u64..10, Just(MAX_SEQ), 0..=MAX_SEQ];
    prop_oneof![
        2 => Just(Mutation::Untouched),
        10 => prop::collection::vec(any::<Index>(), 1..4).prop_map(Mutation::FlipBits),
        6 => prop::collection::vec(any::<Index>(), 1..3).prop_map(Mutation::FlipSealedBits),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..20).prop_map(Mutation::Append),
        1 => any::<u16>().prop_map(Mutation::SetLength),
        2 => (-3i8..=3).prop_map(Mutation::NudgeLength),
        1 => prop_oneof![Just(20u8), Just(21), Just(22), Just(24), any::<u8>()]
            .prop_map(Mutation::SetType),
        1 => prop_oneof![Just(0xFEFFu16), Just(0xFEFC), any::<u16>()].prop_map(Mutation::SetVersion),
        2 => prop_oneof![0u16..5, any::<u16>()].prop_map(Mutation::SetEpoch),
        2 => prop_oneof![0u8..10, any::<u8>()].prop_map(Mutation::SetSid),
        2 => field_seq.clone().prop_map(Mutation::SetSeq),
        4 => field_seq.prop_map(Mutation::SetSeqAndNonce),
        2 => prop_oneof![0u8..10, any::<u8>()].prop_map(Mutation::SetSidAndNonce),
        1 => any::<Index>().prop_map(Mutation::Splice),
    ]
}

fn apply(m: &Mutation, bytes: &mut Vec<u8>, pool: &[Valid]) {
    fn set_nonce(b: &mut [u8]) {
        if b.len() >= HEADER_LEN + 8 {
            let h = RecordHeader::from_bytes(b[..HEADER_LEN].try_into().unwrap());
            b[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&h.sequence_bytes());
        }
    }
    let n = bytes.len();
    match m {
        Mutation::Untouched => {}
        Mutation::FlipBits(bits) => {
            for b in bits {
                if n > 0 {
                    let i = b.index(n * 8);
                    bytes[i / 8] ^= 1 << (i % 8);
                }
            }
        }
        Mutation::FlipSealedBits(bits) => {
            const SEALED: usize = HEADER_LEN + 8;
            for b in bits {
                if n > SEALED {
                    let i = b.index((n - SEALED) * 8);
                    bytes[SEALED + i / 8] ^= 1 << (i % 8);
                }
            }
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(n.max(1))),
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        _ if n < HEADER_LEN => {}
        Mutation::SetLength(l) => bytes[11..13].copy_from_slice(&l.to_be_bytes()),
        Mutation::NudgeLength(d) => {
            let l = u16::from_be_bytes([bytes[11], bytes[12]]).wrapping_add_signed(i16::from(*d));
            bytes[11..13].copy_from_slice(&l.to_be_bytes());
        }
        Mutation::SetType(t) => bytes[0] = *t,
        Mutation::SetVersion(v) => bytes[1..3].copy_from_slice(&v.to_be_bytes()),
        Mutation::SetEpoch(e) => bytes[3..5].copy_from_slice(&e.to_be_bytes()),
        Mutation::SetSid(s) => bytes[5] = *s,
        Mutation::SetSeq(s) => bytes[6..11].copy_from_slice(&s.to_be_bytes()[3..]),
        Mutation::SetSeqAndNonce(s) => {
            bytes[6..11].copy_from_slice(&s.to_be_bytes()[3..]);
            set_nonce(bytes);
        }
        Mutation::SetSidAndNonce(s) => {
            bytes[5] = *s;
            set_nonce(bytes);
        }
        Mutation::Splice(i) => {
            let other = &pool[i.index(pool.len())].bytes;
            let mut spliced = bytes[..HEADER_LEN].to_vec();
            spliced.extend_from_slice(&other[HEADER_LEN..]);
            *bytes = spliced;
        }
    }
}

#[derive(Clone, Debug)]
enum Input {
    /// Any bytes at all.
    Arbitrary(Vec<u8>),
    /// A well-formed DTLS 1.2 header for a plausible epoch and sender, then random bytes.
    HeaderLike {
        ct: u8,
        epoch: u16,
        sid: u8,
        seq: u64,
        body: Vec<u8>,
        nonce_matches: bool,
    },
    /// A pool record, changed by one to three mutations.
    Mutated(Index, Vec<Mutation>),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Input::Arbitrary),
        2 => (
            prop_oneof![3 => Just(23u8), 1 => any::<u8>()],
            prop_oneof![0u16..5, any::<u16>()],
            prop_oneof![0u8..10, any::<u8>()],
            prop_oneof![0u64..10, 0..=MAX_SEQ],
            prop::collection::vec(any::<u8>(), 0..60),
            any::<bool>(),
        )
            .prop_map(|(ct, epoch, sid, seq, body, nonce_matches)| Input::HeaderLike {
                ct,
                epoch,
                sid,
                seq,
                body,
                nonce_matches,
            }),
        6 => (any::<Index>(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(i, m)| Input::Mutated(i, m)),
    ]
}

fn bytes_of(input: &Input, pool: &[Valid]) -> Vec<u8> {
    match input {
        Input::Arbitrary(b) => b.clone(),
        Input::HeaderLike {
            ct,
            epoch,
            sid,
            seq,
            body,
            nonce_matches,
        } => {
            let h = RecordHeader {
                content_type: ContentType(*ct),
                version: group_core::wire::ProtocolVersion::DTLS_1_2,
                epoch: Epoch(*epoch),
                sender_id: SenderId(*sid),
                seq: *seq,
                length: body.len() as u16,
            };
            let mut b = h.to_bytes().unwrap().to_vec();
            b.extend_from_slice(body);
            if *nonce_matches && body.len() >= 8 {
                b[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&h.sequence_bytes());
            }
            b
        }
        Input::Mutated(i, ms) => {
            let mut b = pool[i.index(pool.len())].bytes.clone();
            for m in ms {
                apply(m, &mut b, pool);
            }
            b
        }
    }
}

fn suite() -> impl Strategy<Value = Suite> {
    prop_oneof![
        Just(Suite::AES_128_CCM_8),
        Just(Suite::AES_128_CCM),
        Just(Suite::AES_128_GCM),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_input_is_dropped_counted_and_changes_nothing(
        suite in suite(),
        strict in any::<bool>(),
        inputs in prop::collection::vec(input(), 1..12),
    ) {
        let mut f = fixture(suite, strict);
        for input in &inputs {
            let bytes = bytes_of(input, &f.pool);
            offer(&mut f, &bytes)?;
        }
        final_check(&mut f)?;
    }
}

/// The model is not vacuous: untouched records do get delivered, replays, old epochs and the
/// clash are refused with the expected reasons, whatever the suite and admission policy. The
/// figures are counted by hand from the pool table.
#[test]
fn untouched_pool_records_follow_the_model() {
    for suite in [Suite::AES_128_CCM_8, Suite::AES_128_CCM, Suite::AES_128_GCM] {
        for strict in [false, true] {
            let mut f = fixture(suite, strict);
            let warm = WARM_UP.len() as u64;
            let before = *f.rx.counters();
            assert_eq!(before.accepted, warm);
            final_check(&mut f).unwrap();
            // Fresh: switch e1 {1, 3}, e2 {3..6}; sensor 2 {2, 3, 4}; sensor 3 e3 {1, 2, 3};
            // sender 4 {0..3} only under trust-first.
            let fresh = 2 + 4 + 3 + 3 + if strict { 0 } else { 4 };
            let c = *f.rx.counters();
            assert_eq!(
                c.accepted - before.accepted,
                fresh,
                "{suite:?} strict={strict}"
            );
            // The warm-up records, twice (once in each pass of `final_check`).
            assert_eq!(c.replay, 2 * warm, "{suite:?} strict={strict}");
            // Sensor 3's epoch-1 records: it is in epoch 3 and has no epoch-1 window.
            assert_eq!(c.too_old, 3);
            assert_eq!(c.own_sender_id, 1);
            assert_eq!(c.unsupported_content_type, 1);
            assert_eq!(c.unknown_sender, if strict { 4 } else { 0 }, "{suite:?}");
            assert_eq!(c.dropped(), c.replay + 3 + 1 + 1 + c.unknown_sender);

            // A second pass refuses everything that was delivered, as a replay.
            final_check(&mut f).unwrap();
            let c2 = *f.rx.counters();
            assert_eq!(c2.accepted, c.accepted);
            assert_eq!(c2.replay - c.replay, 2 * (warm + fresh));
            assert_eq!(c2.too_old - c.too_old, 3);
        }
    }
}
