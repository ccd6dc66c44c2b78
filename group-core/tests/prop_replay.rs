//! Property tests: [`ReplayWindow`] against a reference model (wire-format.md §6).
//!
//! The model is a set of the sequence numbers accepted so far plus the window rule:
//! - `s > MAX_SEQ` is refused (`TooOld`);
//! - with no accepted number yet, everything else is accepted;
//! - `s <= top - SIZE` is refused as `TooOld`;
//! - otherwise `s` is refused as `Replay` iff it was accepted before, or, under
//!   [`WindowStart::TrustFirst`], iff it is below the first accepted number.
//!
//! As in the record layer, a number is committed only after `check` passed (and, here, only if
//! the simulated authentication succeeded). Committing a refused number must change nothing.
//! Runs for windows of 1, 2 and 32 words (32, 64, 1024 records) and both start modes.

use std::collections::BTreeSet;

use group_core::replay::{ReplayError, ReplayWindow, WindowStart};
use group_core::wire::MAX_SEQ;
use proptest::prelude::*;

/// The reference model.
#[derive(Clone, Debug)]
struct Model {
    size: u64,
    trust_first: bool,
    seen: BTreeSet<u64>,
    top: Option<u64>,
    first: Option<u64>,
}

impl Model {
    fn new(size: u64, start: WindowStart) -> Self {
        Self {
            size,
            trust_first: start == WindowStart::TrustFirst,
            seen: BTreeSet::new(),
            top: None,
            first: None,
        }
    }

    fn check(&self, s: u64) -> Result<(), ReplayError> {
        if s > MAX_SEQ {
            return Err(ReplayError::TooOld);
        }
        let Some(top) = self.top else {
            return Ok(());
        };
        // s <= top - SIZE, written without underflow.
        if s.checked_add(self.size).is_some_and(|v| v <= top) {
            return Err(ReplayError::TooOld);
        }
        if self.seen.contains(&s) {
            return Err(ReplayError::Replay);
        }
        if self.trust_first && self.first.is_some_and(|f| s < f) {
            return Err(ReplayError::Replay);
        }
        Ok(())
    }

    fn accept(&mut self, s: u64) {
        assert_eq!(self.check(s), Ok(()), "model: accept of a refused number");
        self.seen.insert(s);
        self.top = Some(self.top.map_or(s, |t| t.max(s)));
        self.first.get_or_insert(s);
    }
}

/// How the next sequence number is chosen, resolved against the model's state when it runs
/// (so that edges of the *current* window can be hit).
#[derive(Clone, Debug)]
enum Pick {
    /// top + d (a small step either way, or into the window).
    NearTop(i64),
    /// top - SIZE + 1: the oldest number still inside the window.
    EdgeIn,
    /// top - SIZE: the newest number already outside it.
    EdgeOut,
    /// top + a jump of any size (possibly past MAX_SEQ).
    Jump(u64),
    /// A fixed number: 0, 1, MAX_SEQ - 1, MAX_SEQ, MAX_SEQ + 1, u64::MAX, or any value.
    Abs(u64),
    /// A number tried before (a duplicate).
    Repeat(prop::sample::Index),
    /// Just below the first accepted number (trust-first's boundary).
    BelowFirst(u64),
}

#[derive(Clone, Debug)]
struct Op {
    pick: Pick,
    /// Whether the (simulated) AEAD check succeeds; only then is a passing number committed.
    authentic: bool,
    /// Also call `commit` on a number `check` refused (it must change nothing).
    commit_refused: bool,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (-70i64..=70).prop_map(Pick::NearTop),
        2 => (-1100i64..=1100).prop_map(Pick::NearTop),
        2 => Just(Pick::EdgeIn),
        2 => Just(Pick::EdgeOut),
        1 => (0u64..=1 << 41).prop_map(Pick::Jump),
        1 => (1u64..=2048).prop_map(Pick::Jump),
        1 => prop_oneof![
            Just(0u64),
            Just(1),
            Just(MAX_SEQ - 1),
            Just(MAX_SEQ),
            Just(MAX_SEQ + 1),
            Just(u64::MAX),
            any::<u64>(),
            0..=MAX_SEQ,
        ]
        .prop_map(Pick::Abs),
        3 => any::<prop::sample::Index>().prop_map(Pick::Repeat),
        1 => (1u64..=3).prop_map(Pick::BelowFirst),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    (pick(), prop::bool::weighted(0.9), any::<bool>()).prop_map(
        |(pick, authentic, commit_refused)| Op {
            pick,
            authentic,
            commit_refused,
        },
    )
}

fn resolve(p: &Pick, model: &Model, size: u64, tried: &[u64]) -> u64 {
    let top = model.top.unwrap_or(0);
    match p {
        Pick::NearTop(d) => top.saturating_add_signed(*d),
        Pick::EdgeIn => top.saturating_sub(size - 1),
        Pick::EdgeOut => top.saturating_sub(size),
        Pick::Jump(j) => top.saturating_add(*j),
        Pick::Abs(v) => *v,
        Pick::Repeat(i) if !tried.is_empty() => *i.get(tried),
        Pick::Repeat(_) => 0,
        Pick::BelowFirst(d) => model.first.unwrap_or(0).saturating_sub(*d),
    }
}

/// Numbers probed after every step: the window edges, the ends of the number space, and the
/// trust-first boundary.
fn probes(model: &Model, size: u64) -> Vec<u64> {
    let top = model.top.unwrap_or(0);
    let first = model.first.unwrap_or(0);
    vec![
        0,
        1,
        MAX_SEQ,
        MAX_SEQ + 1,
        u64::MAX,
        top,
        top.saturating_add(1),
        top.saturating_sub(1),
        top.saturating_sub(size - 1),
        top.saturating_sub(size),
        top.saturating_sub(size + 1),
        first,
        first.saturating_sub(1),
        first.saturating_add(1),
    ]
}

fn run<const WORDS: usize>(start: WindowStart, ops: &[Op]) -> Result<(), TestCaseError> {
    let size = ReplayWindow::<WORDS>::SIZE;
    prop_assert_eq!(size, 32 * WORDS as u64);
    let mut w = ReplayWindow::<WORDS>::new(start);
    let mut model = Model::new(size, start);
    let mut tried = Vec::new();

    for op in ops {
        let s = resolve(&op.pick, &model, size, &tried);
        tried.push(s);
        let expected = model.check(s);
        prop_assert_eq!(w.check(s), expected, "check({}) with model {:?}", s, &model);
        match expected {
            Ok(()) if op.authentic => {
                w.commit(s);
                model.accept(s);
                prop_assert_eq!(w.check(s), Err(ReplayError::Replay), "{} just committed", s);
            }
            Ok(()) => {} // authentication failed: nothing is committed
            Err(_) => {
                if op.commit_refused {
                    let before = w.clone();
                    w.commit(s);
                    prop_assert_eq!(&w, &before, "commit of refused {} changed the window", s);
                }
            }
        }
        prop_assert_eq!(w.highest(), model.top);
        for p in probes(&model, size) {
            prop_assert_eq!(
                w.check(p),
                model.check(p),
                "probe {} with model {:?}",
                p,
                &model
            );
        }
    }

    // Finally the whole window and a margin on either side.
    if let Some(top) = model.top {
        let lo = top.saturating_sub(size + 2);
        let hi = top.saturating_add(2);
        for p in lo..=hi {
            prop_assert_eq!(
                w.check(p),
                model.check(p),
                "scan {} with model {:?}",
                p,
                &model
            );
        }
    }
    Ok(())
}

fn start() -> impl Strategy<Value = WindowStart> {
    prop_oneof![Just(WindowStart::Empty), Just(WindowStart::TrustFirst)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn window_of_32_matches_model(start in start(), ops in prop::collection::vec(op(), 1..120)) {
        run::<1>(start, &ops)?;
    }

    #[test]
    fn window_of_64_matches_model(start in start(), ops in prop::collection::vec(op(), 1..120)) {
        run::<2>(start, &ops)?;
    }

    #[test]
    fn window_of_1024_matches_model(start in start(), ops in prop::collection::vec(op(), 1..120)) {
        run::<32>(start, &ops)?;
    }
}

/// The model itself, on the hand-worked example of `replay.rs`'s unit test, so a wrong model
/// can't make the properties pass vacuously.
#[test]
fn model_agrees_with_hand_worked_trust_first_example() {
    let mut m = Model::new(64, WindowStart::TrustFirst);
    assert_eq!(m.check(100), Ok(()));
    m.accept(100);
    assert_eq!(m.check(100), Err(ReplayError::Replay));
    assert_eq!(m.check(99), Err(ReplayError::Replay));
    assert_eq!(m.check(37), Err(ReplayError::Replay));
    assert_eq!(m.check(36), Err(ReplayError::TooOld));
    m.accept(102);
    assert_eq!(m.check(101), Ok(()));
    assert_eq!(m.check(38), Err(ReplayError::TooOld));
    assert_eq!(m.check(39), Err(ReplayError::Replay));
    assert_eq!(m.check(MAX_SEQ + 1), Err(ReplayError::TooOld));
}

/// Deterministic edge walk for each size: the numbers exactly at the window edge, 0 and MAX_SEQ.
#[test]
fn edges_and_ends_of_the_number_space() {
    fn walk<const W: usize>(start: WindowStart) {
        let size = ReplayWindow::<W>::SIZE;
        let mut w = ReplayWindow::<W>::new(start);
        let mut m = Model::new(size, start);
        for s in [0, size, 2 * size - 1, 2 * size, MAX_SEQ - size, MAX_SEQ] {
            for p in [s.saturating_sub(size), s.saturating_sub(size - 1), s, s + 1] {
                assert_eq!(w.check(p), m.check(p), "W={W} {start:?} probe {p}");
            }
            if m.check(s).is_ok() {
                w.commit(s);
                m.accept(s);
            }
        }
        assert_eq!(w.highest(), Some(MAX_SEQ));
        assert_eq!(w.check(MAX_SEQ), Err(ReplayError::Replay));
        assert_eq!(w.check(MAX_SEQ - size + 1), m.check(MAX_SEQ - size + 1));
        assert_eq!(w.check(MAX_SEQ - size), Err(ReplayError::TooOld));
        assert_eq!(w.check(MAX_SEQ + 1), Err(ReplayError::TooOld));
    }
    for start in [WindowStart::Empty, WindowStart::TrustFirst] {
        walk::<1>(start);
        walk::<2>(start);
        walk::<32>(start);
    }
}
