//! What a receiver keeps per sender: replay windows per epoch, the verifying key, admission
//! and eviction, and the refusal bounds of dropped senders (wire-format.md §6).

#[cfg(feature = "record-signatures")]
use p256::ecdsa::VerifyingKey;

use super::{Admission, Group, OpenError};
use crate::counters::Event;
use crate::epochs::EpochRole;
use crate::replay::{ReplayWindow, WindowStart, pack, unpack};
use crate::time::Instant;
use crate::wire::{Epoch, MAX_SEQ, SenderId};

/// What a receiver knows of one sender, for status displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    /// Sender ID.
    pub sender_id: SenderId,
    /// The sender's current epoch and highest accepted seq in it, if any.
    pub current: Option<(Epoch, Option<u64>)>,
    /// The sender's previous epoch and highest accepted seq in it, if any.
    pub previous: Option<(Epoch, Option<u64>)>,
}

#[derive(Clone, Debug)]
pub(super) struct SenderState<const WORDS: usize> {
    sender_id: SenderId,
    #[cfg(feature = "record-signatures")]
    pub(super) key: Option<VerifyingKey>,
    current: Option<(Epoch, ReplayWindow<WORDS>)>,
    /// The epoch the sender sent in before its current one and the highest sequence number
    /// accepted there (no window: see [`PreviousEpoch`]).
    previous: PreviousEpoch,
    /// When the sender was last active, in the group's tick (an eviction order, not a clock:
    /// 16 bits, halved for every sender when the tick runs out, which keeps the order).
    last_active: u16,
}

/// A sender's previous epoch once it moved to a newer one: the epoch, the highest sequence
/// number accepted in it and a window of the 16 numbers up to it, 9 bytes (issue 12: it was a
/// whole `ReplayWindow`, 16 bytes with the default 64 records, and the sender state 36 bytes
/// where it is 28 now). A record of that epoch is fresh above the highest, or within the 16
/// below it and not seen; further below it is `too_old`. When the sender moves on, every number
/// its window would have refused stays refused (the 16 bits are read from the window's own
/// check), so the narrower window only refuses more: late records of the old epoch are
/// accepted if they were overtaken by at most 15 later numbers. `Epoch(0)` (never held) means
/// none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PreviousEpoch {
    /// The epoch, little-endian (bytes, so the state has alignment 1 and no padding).
    epoch: [u8; 2],
    /// The highest accepted sequence number, little-endian (sequence numbers are 40 bits).
    top: [u8; 5],
    /// Bit `d` (of the little-endian u16): `top - d` is refused (seen, or never fresh).
    seen: [u8; 2],
}

/// Numbers at and below the top that [`PreviousEpoch`] remembers.
const PREVIOUS_WINDOW: u64 = 16;

impl PreviousEpoch {
    const NONE: Self = Self {
        epoch: [0; 2],
        top: [0; 5],
        seen: [0; 2],
    };

    /// What is kept of `window` (in `epoch`) when the sender moves on: its highest and, for
    /// each of the 16 numbers up to it, whether the window refuses it. A window that accepted
    /// nothing keeps nothing (its epoch is then refused `too_old`, as an epoch with no window).
    fn of<const WORDS: usize>(epoch: Epoch, window: &ReplayWindow<WORDS>) -> Self {
        let Some(top) = window.highest() else {
            return Self::NONE;
        };
        let mut seen = 0u16;
        for d in 0..PREVIOUS_WINDOW {
            let refused = top.checked_sub(d).is_none_or(|s| window.check(s).is_err());
            if refused {
                seen |= 1u16.checked_shl(d as u32).unwrap_or(0);
            }
        }
        Self {
            epoch: epoch.0.to_le_bytes(),
            top: pack(top),
            seen: seen.to_le_bytes(),
        }
    }

    fn get(&self) -> Option<(Epoch, u64)> {
        let epoch = Epoch(u16::from_le_bytes(self.epoch));
        (epoch.0 != 0).then(|| (epoch, unpack(self.top)))
    }

    /// Pre-check of `seq` in the previous epoch.
    fn check(&self, seq: u64) -> Result<(), OpenError> {
        if seq > MAX_SEQ {
            return Err(OpenError::TooOld);
        }
        let top = unpack(self.top);
        let Some(d) = top.checked_sub(seq) else {
            return Ok(());
        };
        if d >= PREVIOUS_WINDOW {
            return Err(OpenError::TooOld);
        }
        let bit = 1u16.checked_shl(d as u32).unwrap_or(0);
        if u16::from_le_bytes(self.seen) & bit != 0 {
            Err(OpenError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records an authenticated `seq` (fresh, by [`check`](Self::check)).
    fn commit(&mut self, seq: u64) {
        if self.check(seq).is_err() {
            return;
        }
        let top = unpack(self.top);
        let mut seen = u16::from_le_bytes(self.seen);
        match top.checked_sub(seq) {
            // Above the top: the window slides up.
            None => {
                let shift = seq.saturating_sub(top);
                seen = if shift >= PREVIOUS_WINDOW {
                    0
                } else {
                    seen.checked_shl(shift as u32).unwrap_or(0)
                };
                seen |= 1;
                self.top = pack(seq);
            }
            Some(d) if d < PREVIOUS_WINDOW => seen |= 1u16.checked_shl(d as u32).unwrap_or(0),
            Some(_) => {}
        }
        self.seen = seen.to_le_bytes();
    }
}

/// Where a record's replay state is, decided before decryption and applied after.
#[derive(Clone, Copy, Debug)]
pub(super) enum Plan {
    Current(usize),
    Previous(usize),
    NewEpoch(usize),
    Create {
        replace: Option<usize>,
        evicts: bool,
    },
}

/// Per sender ID, through which of the held epoch slots its records are refused: 2 bits
/// (0: none; 1: the previous slot; 2: previous and current; 3: previous, current and the staged
/// next), 64 bytes for the 256 sender IDs (issue 12; it was one `Epoch` per ID, 512 bytes).
///
/// The bound is an epoch (the newest epoch in which the dropped state may have accepted
/// records), kept relative to the slots: "refuse every held epoch up to the bound" is "refuse
/// the slots up to the newest one whose epoch is at most the bound", since the slots hold
/// previous < current < next. Epochs not in a slot are refused anyway (`UnknownEpoch`, checked
/// before the sender), and every epoch installed later is newer than every bound (epochs only
/// move forward, and a bound is at most the highest epoch installed), so a new staged epoch is
/// never covered. The codes follow the slots: [`shift`](Self::shift) when an activation moves
/// next → current → previous (and drops the previous), [`staged_replaced`](Self::staged_replaced)
/// when a newer staged epoch replaces one never activated. A previous slot emptied by its
/// grace period keeps its code until the next activation shifts it out: nothing can fill that
/// slot but an activation.
///
/// A bound is only ever raised, never cleared: it stops mattering by itself once the epochs it
/// covers are no longer held, whoever lists the sender again in the meantime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BlockedThrough([u8; 64]);

impl Default for BlockedThrough {
    fn default() -> Self {
        Self([0; 64])
    }
}

/// A slot's rank in [`BlockedThrough`]'s codes.
fn rank(role: EpochRole) -> u8 {
    match role {
        EpochRole::Previous => 1,
        EpochRole::Current => 2,
        EpochRole::Next => 3,
    }
}

impl BlockedThrough {
    /// Refuses nothing any more (a new group's list).
    #[cfg(feature = "keydist-member")]
    pub(super) fn clear(&mut self) {
        self.0.fill(0);
    }

    /// Byte index and bit shift of `sid`'s code.
    fn at(sid: SenderId) -> (usize, u32) {
        (usize::from(sid.0 / 4), u32::from(sid.0 % 4) * 2)
    }

    /// `sid`'s code (0..=3).
    fn code(&self, sid: SenderId) -> u8 {
        let (i, shift) = Self::at(sid);
        self.0
            .get(i)
            .map_or(0, |b| b.checked_shr(shift).unwrap_or(0) & 3)
    }

    fn set_code(&mut self, sid: SenderId, code: u8) {
        let (i, shift) = Self::at(sid);
        if let Some(b) = self.0.get_mut(i) {
            let mask = 3u8.checked_shl(shift).unwrap_or(0);
            *b = (*b & !mask) | ((code & 3).checked_shl(shift).unwrap_or(0));
        }
    }

    /// Whether `sid`'s records in the epoch of `slot` are refused.
    pub(super) fn refuses(&self, sid: SenderId, slot: Option<EpochRole>) -> bool {
        slot.is_some_and(|r| rank(r) <= self.code(sid))
    }

    /// Refuses `sid` in every slot up to `through` (keeping a higher bound it already has).
    pub(super) fn raise(&mut self, sid: SenderId, through: Option<EpochRole>) {
        if let Some(r) = through {
            let code = self.code(sid).max(rank(r));
            self.set_code(sid, code);
        }
    }

    /// An activation moved every epoch one slot down (next → current → previous) and dropped
    /// the previous one: every bound moves with its epochs.
    pub(super) fn shift(&mut self) {
        // Each code `hl` (high, low bit) becomes `hl - 1`, 0 staying 0: 3 → 2, 2 → 1, 1 → 0.
        for b in self.0.iter_mut() {
            let (hi, lo) = ((*b >> 1) & 0x55, *b & 0x55);
            *b = ((hi & lo) << 1) | (hi & !lo);
        }
    }

    /// A newer staged epoch replaced one never activated: a bound through the old staged epoch
    /// is a bound through the current one (the new epoch is newer than every bound).
    pub(super) fn staged_replaced(&mut self) {
        // Each code 3 becomes 2: the low bit is cleared where the high one is set.
        for b in self.0.iter_mut() {
            *b &= !((*b >> 1) & 0x55);
        }
    }
}

impl<const SENDERS: usize, const WORDS: usize> Group<SENDERS, WORDS> {
    /// Adds a sender the key server provided (required under [`Admission::Strict`]). Its windows
    /// start empty: it begins each epoch at seq 0. A full table hands the sid back.
    ///
    /// A sender whose state was dropped here before (evicted from a full table, or removed) stays
    /// refused in every epoch in which the dropped state may have accepted records: adding it
    /// again only admits it in newer epochs (wire-format.md §6).
    pub fn add_sender(&mut self, sid: SenderId) -> Result<(), SenderId> {
        self.add_sender_state(sid).map(|_| ())
    }

    fn add_sender_state(&mut self, sid: SenderId) -> Result<usize, SenderId> {
        let at = match self.find(sid) {
            Ok(i) => return Ok(i),
            Err(at) => at,
        };
        let state = SenderState {
            sender_id: sid,
            #[cfg(feature = "record-signatures")]
            key: None,
            current: None,
            previous: PreviousEpoch::NONE,
            last_active: self.tick,
        };
        self.insert_sorted(at, state).map_err(|s| s.sender_id)?;
        Ok(at)
    }

    /// Inserts `state` at `at`, the place [`find`](Self::find) gave for its sender ID (keeps the
    /// table sorted). A full table hands the state back.
    fn insert_sorted(
        &mut self,
        at: usize,
        state: SenderState<WORDS>,
    ) -> Result<(), SenderState<WORDS>> {
        if at > self.senders.len() {
            return Err(state);
        }
        self.senders.push(state)?;
        // Into place by adjacent swaps (rare: a new sender), not `insert`, whose `memmove`
        // would be 1.5 KB of a firmware's flash.
        for j in (at..self.senders.len()).rev().skip(1) {
            self.swap_with_next(j);
        }
        Ok(())
    }

    /// Takes the state at `i` out of the table, keeping the others in order (by adjacent swaps,
    /// as [`insert_sorted`](Self::insert_sorted)).
    fn remove_at(&mut self, i: usize) -> Option<SenderState<WORDS>> {
        if i >= self.senders.len() {
            return None;
        }
        for j in i..self.senders.len().saturating_sub(1) {
            self.swap_with_next(j);
        }
        self.senders.pop()
    }

    /// Swaps the states at `j` and `j + 1` field by field (`slice::swap` of a whole state calls
    /// `memmove` on thumbv7em).
    fn swap_with_next(&mut self, j: usize) {
        if let Some([a, b, ..]) = self.senders.get_mut(j..) {
            core::mem::swap(&mut a.sender_id, &mut b.sender_id);
            #[cfg(feature = "record-signatures")]
            core::mem::swap(&mut a.key, &mut b.key);
            core::mem::swap(&mut a.current, &mut b.current);
            core::mem::swap(&mut a.previous, &mut b.previous);
            core::mem::swap(&mut a.last_active, &mut b.last_active);
        }
    }

    /// Sets the public key that verifies `sid`'s record signatures (adding the sender if
    /// needed, as [`add_sender`](Self::add_sender)). A full table hands the sid back.
    #[cfg(feature = "record-signatures")]
    #[cfg_attr(docsrs, doc(cfg(feature = "record-signatures")))]
    pub fn set_sender_key(&mut self, sid: SenderId, key: VerifyingKey) -> Result<(), SenderId> {
        let i = self.add_sender_state(sid)?;
        if let Some(s) = self.senders.get_mut(i) {
            s.key = Some(key);
        }
        Ok(())
    }

    /// Removes a sender (revoked or stale): its records are refused in every epoch installed
    /// now (the staged one too), also if it is added again later; only in a later epoch can it
    /// be admitted again.
    pub fn remove_sender(&mut self, sid: SenderId) {
        if let Some(i) = self.position(sid) {
            self.remove_at(i);
        }
        self.block(sid);
    }

    /// Refuses `sid` in every epoch installed so far (the staged one too).
    fn block(&mut self, sid: SenderId) {
        if let Some(h) = self.epochs.highest() {
            self.blocked.raise(sid, self.epochs.newest_slot_through(h));
        }
    }

    /// What this node knows of each sender.
    pub fn senders(&self) -> impl Iterator<Item = SenderInfo> + '_ {
        self.senders.iter().map(|s| SenderInfo {
            sender_id: s.sender_id,
            current: s.current.as_ref().map(|(e, w)| (*e, w.highest())),
            previous: s.previous.get().map(|(e, top)| (e, Some(top))),
        })
    }

    /// The slot of `sid`'s state.
    fn position(&self, sid: SenderId) -> Option<usize> {
        self.find(sid).ok()
    }

    /// The slot of `sid`'s state, or where it would be inserted. The table is kept sorted by
    /// sender ID, so a lookup is a binary search: the cost of opening a record is flat in the
    /// number of senders tracked (issue 14), with no index besides the table itself (no RAM).
    fn find(&self, sid: SenderId) -> Result<usize, usize> {
        self.senders.binary_search_by_key(&sid.0, |s| s.sender_id.0)
    }

    fn window_start(&self) -> WindowStart {
        match self.config.admission {
            Admission::TrustFirst => WindowStart::TrustFirst,
            Admission::Strict => WindowStart::Empty,
        }
    }

    /// Decides where the replay state of `(sid, epoch, seq)` lives and pre-checks it.
    pub(super) fn plan(
        &self,
        sid: SenderId,
        epoch: Epoch,
        seq: u64,
        now: Instant,
    ) -> Result<Plan, OpenError> {
        // A sender whose state was dropped is refused in the epochs that state covered, also
        // when it was listed (and a state made for it) again since.
        if self.blocked.refuses(sid, self.epochs.slot_of(epoch)) {
            return Err(OpenError::UnknownSender(sid));
        }
        if let Some(i) = self.position(sid) {
            let s = self.senders.get(i).ok_or(OpenError::UnknownSender(sid))?;
            return match (&s.current, s.previous.get()) {
                (Some((ce, w)), _) if *ce == epoch => {
                    w.check(seq)?;
                    Ok(Plan::Current(i))
                }
                (Some((ce, _)), _) if epoch > *ce => Ok(Plan::NewEpoch(i)),
                (Some(_), Some((pe, _))) if pe == epoch => {
                    s.previous.check(seq)?;
                    Ok(Plan::Previous(i))
                }
                (Some(_), _) => Err(OpenError::TooOld),
                (None, _) => Ok(Plan::NewEpoch(i)),
            };
        }
        if self.config.admission == Admission::Strict || self.config.signatures_required {
            return Err(OpenError::UnknownSender(sid));
        }
        if !self.senders.is_full() {
            return Ok(Plan::Create {
                replace: None,
                evicts: false,
            });
        }
        // A state whose windows are all in epochs no longer held can be reused without an
        // eviction; its sender is still refused up to its newest window's epoch when the slot is
        // taken (see `commit`), since a staged epoch replaced before activation is newer than
        // epochs still held. (A state with no window yet was provided by the key server: not
        // dead.)
        let dead = self.senders.iter().position(|s| {
            s.current.is_some()
                && [
                    s.current.as_ref().map(|(e, _)| *e),
                    s.previous.get().map(|(e, _)| e),
                ]
                .into_iter()
                .flatten()
                .all(|e| !self.epochs.holds(e, now))
        });
        if let Some(i) = dead {
            return Ok(Plan::Create {
                replace: Some(i),
                evicts: false,
            });
        }
        let lru = self
            .senders
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.last_active)
            .map(|(i, _)| i)
            .ok_or(OpenError::UnknownSender(sid))?;
        Ok(Plan::Create {
            replace: Some(lru),
            evicts: true,
        })
    }

    /// The tick of a record being committed. When the 16-bit tick runs out, it and every
    /// sender's last activity are halved: the least recently active sender stays the least
    /// recently active one (ties aside), which is all eviction needs.
    fn next_tick(&mut self) -> u16 {
        if self.tick == u16::MAX {
            self.tick /= 2;
            for s in self.senders.iter_mut() {
                s.last_active /= 2;
            }
        }
        self.tick = self.tick.saturating_add(1);
        self.tick
    }

    /// Applies a plan after the record authenticated.
    pub(super) fn commit(&mut self, plan: Plan, sid: SenderId, epoch: Epoch, seq: u64) {
        let tick = self.next_tick();
        let start = self.window_start();
        let fresh = || {
            let mut w = ReplayWindow::<WORDS>::new(start);
            w.commit(seq);
            (epoch, w)
        };
        match plan {
            Plan::Current(i) => {
                if let Some(s) = self.senders.get_mut(i) {
                    if let Some((_, w)) = &mut s.current {
                        w.commit(seq);
                    }
                    s.last_active = tick;
                }
            }
            Plan::Previous(i) => {
                if let Some(s) = self.senders.get_mut(i) {
                    s.previous.commit(seq);
                    s.last_active = tick;
                }
            }
            Plan::NewEpoch(i) => {
                if let Some(s) = self.senders.get_mut(i) {
                    // The sender moved on: what is kept of its current window becomes its
                    // previous epoch.
                    if let Some((e, w)) = s.current.replace(fresh()) {
                        s.previous = PreviousEpoch::of(e, &w);
                    }
                    s.last_active = tick;
                }
            }
            Plan::Create { replace, evicts } => {
                let state = SenderState {
                    sender_id: sid,
                    #[cfg(feature = "record-signatures")]
                    key: None,
                    current: Some(fresh()),
                    previous: PreviousEpoch::NONE,
                    last_active: tick,
                };
                // The slot's state is taken out (the others keep their order) and the new one
                // inserted where `sid` sorts.
                match replace.and_then(|i| self.remove_at(i)) {
                    Some(dropped) => {
                        if let Err(at) = self.find(sid) {
                            let _ = self.insert_sorted(at, state);
                        }
                        let old = dropped.sender_id;
                        if evicts {
                            self.block(old);
                            self.push_event(Event::SenderEvicted { sender_id: old });
                        } else if let Some((newest, _)) = dropped.current {
                            // A dead state: none of its epochs is held. Its sender may still
                            // have records in held epochs older than its windows (dropped from
                            // them as it moved on; refused `too_old` while the state lived),
                            // when its newest epoch was a staged one replaced before activation.
                            // Keep refusing it there, as the state did; no event, since this
                            // refuses nothing it would have accepted.
                            self.blocked
                                .raise(old, self.epochs.newest_slot_through(newest));
                        }
                    }
                    None => {
                        if let Err(at) = self.find(sid) {
                            let _ = self.insert_sorted(at, state);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<const N: usize>(g: &Group<N, 2>) -> heapless::Vec<u8, N> {
        g.senders().map(|s| s.sender_id.0).collect()
    }

    #[test]
    fn the_sender_table_stays_sorted_and_every_sender_is_found() {
        let mut g: Group<8, 2> = Group::new(super::super::GroupConfig::new(1));
        // Added out of order, by the key server and by first records.
        for sid in [200u8, 3, 77, 0, 255] {
            g.add_sender(SenderId(sid)).unwrap();
        }
        let plan = Plan::Create {
            replace: None,
            evicts: false,
        };
        for sid in [128u8, 1, 254] {
            g.commit(plan, SenderId(sid), Epoch(1), 5);
        }
        assert_eq!(ids(&g), [0, 1, 3, 77, 128, 200, 254, 255]);
        assert_eq!(g.add_sender(SenderId(9)), Err(SenderId(9)), "full");
        // A slot taken by a sender that sorts elsewhere: the table is re-ordered.
        let i = g.position(SenderId(254)).unwrap();
        g.commit(
            Plan::Create {
                replace: Some(i),
                evicts: true,
            },
            SenderId(2),
            Epoch(1),
            9,
        );
        assert_eq!(ids(&g), [0, 1, 2, 3, 77, 128, 200, 255]);
        g.remove_sender(SenderId(77));
        g.remove_sender(SenderId(0));
        assert_eq!(ids(&g), [1, 2, 3, 128, 200, 255]);
        for sid in 0..=255u8 {
            let want = [1u8, 2, 3, 128, 200, 255].contains(&sid);
            let found = g.position(SenderId(sid));
            assert_eq!(found.is_some(), want, "sid {sid}");
            if let Some(i) = found {
                assert_eq!(g.senders.get(i).map(|s| s.sender_id), Some(SenderId(sid)));
            }
        }
        // The evicted-by-slot sender's windows moved with it: sid 2's record 9 is a replay now.
        let two = g.position(SenderId(2)).unwrap();
        let w = g.senders.get(two).and_then(|s| s.current.as_ref()).unwrap();
        assert_eq!(w.1.highest(), Some(9));
    }

    #[test]
    fn the_eviction_order_survives_the_tick_running_out() {
        let mut g: Group<2, 2> = Group::new(super::super::GroupConfig::new(1));
        let create = Plan::Create {
            replace: None,
            evicts: false,
        };
        g.commit(create, SenderId(1), Epoch(1), 0);
        g.commit(create, SenderId(2), Epoch(1), 0);
        let two = g.position(SenderId(2)).unwrap();
        // Sender 2 is busy well past the 16-bit tick; then sender 1 sends once.
        for seq in 1..70_000u64 {
            g.commit(Plan::Current(two), SenderId(2), Epoch(1), seq);
        }
        let one = g.position(SenderId(1)).unwrap();
        g.commit(Plan::Current(one), SenderId(1), Epoch(1), 1);
        let active = |sid: u8| {
            g.senders
                .iter()
                .find(|s| s.sender_id == SenderId(sid))
                .map(|s| s.last_active)
                .unwrap()
        };
        assert!(
            active(2) < active(1),
            "sender 2 ({}) is now the least recently active, not sender 1 ({})",
            active(2),
            active(1)
        );
    }

    #[test]
    fn blocked_bounds_are_per_sender_id_and_only_rise() {
        use EpochRole::{Current, Next, Previous};
        let mut b = BlockedThrough::default();
        for sid in [0u8, 1, 31, 32, 33, 200, 255] {
            assert!(!b.refuses(SenderId(sid), Some(Previous)));
        }
        b.raise(SenderId(33), Some(Current));
        b.raise(SenderId(200), Some(Next));
        b.raise(SenderId(255), Some(Previous));
        b.raise(SenderId(200), Some(Previous)); // a lower bound never lowers a higher one
        b.raise(SenderId(34), None); // a bound below every slot refuses nothing
        let refused = |b: &BlockedThrough, sid: u8| -> [bool; 4] {
            [None, Some(Previous), Some(Current), Some(Next)].map(|r| b.refuses(SenderId(sid), r))
        };
        assert_eq!(refused(&b, 33), [false, true, true, false]);
        assert_eq!(refused(&b, 200), [false, true, true, true]);
        assert_eq!(refused(&b, 255), [false, true, false, false]);
        for sid in [0u8, 1, 32, 34, 35, 65, 199, 201, 254] {
            assert_eq!(refused(&b, sid), [false; 4], "sid {sid}");
        }
        // A newer staged epoch replaces the old one: bounds through it end at the current.
        b.staged_replaced();
        assert_eq!(refused(&b, 200), [false, true, true, false]);
        assert_eq!(refused(&b, 33), [false, true, true, false]);
        assert_eq!(refused(&b, 255), [false, true, false, false]);
        // An activation moves every epoch down a slot, the bounds with them.
        b.raise(SenderId(7), Some(Next));
        b.shift();
        assert_eq!(refused(&b, 7), [false, true, true, false]);
        assert_eq!(refused(&b, 200), [false, true, false, false]);
        assert_eq!(refused(&b, 255), [false; 4]);
        b.shift();
        b.shift();
        for sid in 0..=255u8 {
            assert_eq!(refused(&b, sid), [false; 4], "sid {sid}");
        }
        assert_eq!(b, BlockedThrough::default());
    }

    /// `shift` and `staged_replaced` work on four codes at once: every byte value against the
    /// codes one by one.
    /// A small xorshift, so the walk below is the same on every run.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// The compact record of a sender's previous epoch, against the set of numbers accepted in
    /// that epoch (by its window, then by the record): it never accepts a number twice; when
    /// made from a window it refuses everything that window refused and, within the 16 numbers
    /// up to the top, nothing more; every number it accepts is fresh and then refused.
    #[test]
    fn the_previous_epoch_record_never_accepts_a_number_twice() {
        const SEQS: usize = 400;
        for seed in 1..300u64 {
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let start = if seed % 2 == 0 {
                WindowStart::TrustFirst
            } else {
                WindowStart::Empty
            };
            let mut w = ReplayWindow::<2>::new(start);
            let mut accepted = [false; SEQS];
            let spread = 20 + next(&mut s) % 200;
            for _ in 0..(next(&mut s) % 60) {
                let seq = next(&mut s) % spread;
                if w.check(seq).is_ok() {
                    w.commit(seq);
                    accepted[seq as usize] = true;
                }
            }
            let mut p = PreviousEpoch::of(Epoch(3), &w);
            let Some(top) = w.highest() else {
                // Nothing accepted: nothing kept, and the epoch is refused as too old.
                assert_eq!(p, PreviousEpoch::NONE);
                assert_eq!(p.get(), None);
                continue;
            };
            assert_eq!(p.get(), Some((Epoch(3), top)));
            for seq in 0..SEQS as u64 {
                let (was, is) = (w.check(seq), p.check(seq));
                if was.is_err() {
                    assert!(is.is_err(), "seed {seed}: {seq} refused by the window");
                }
                if seq + PREVIOUS_WINDOW > top {
                    assert_eq!(was.is_ok(), is.is_ok(), "seed {seed}: {seq} near top {top}");
                } else {
                    assert_eq!(is, Err(OpenError::TooOld), "seed {seed}: {seq}");
                }
            }
            for _ in 0..200 {
                let seq = next(&mut s) % SEQS as u64;
                if p.check(seq).is_ok() {
                    let i = seq as usize;
                    assert!(!accepted[i], "seed {seed}: {seq} accepted twice");
                    p.commit(seq);
                    accepted[i] = true;
                    assert_eq!(p.check(seq), Err(OpenError::Replay));
                } else {
                    // A refused number commits nothing.
                    let before = p;
                    p.commit(seq);
                    assert_eq!(p, before, "seed {seed}: refused {seq} changed the record");
                }
            }
            for (seq, _) in accepted.iter().enumerate().filter(|(_, a)| **a) {
                assert!(
                    p.check(seq as u64).is_err(),
                    "seed {seed}: {seq} open again"
                );
            }
            assert_eq!(p.check(MAX_SEQ + 1), Err(OpenError::TooOld));
        }
    }

    /// The layout issue 12 counts on: the previous epoch in 9 bytes, a sender in 28 with the
    /// default window, every `Group`'s bounds in 64.
    #[test]
    fn receiver_state_sizes() {
        assert_eq!(core::mem::size_of::<PreviousEpoch>(), 9);
        #[cfg(not(feature = "record-signatures"))]
        assert_eq!(core::mem::size_of::<SenderState<2>>(), 28);
        assert_eq!(core::mem::size_of::<BlockedThrough>(), 64);
    }

    #[test]
    fn shift_and_replacement_move_each_of_a_bytes_four_codes() {
        for byte in 0..=255u8 {
            let codes = [0u32, 2, 4, 6].map(|k| (byte >> k) & 3);
            let pack = |f: &dyn Fn(u8) -> u8| {
                codes
                    .iter()
                    .zip([0u32, 2, 4, 6])
                    .fold(0u8, |acc, (c, k)| acc | (f(*c) << k))
            };
            let mut b = BlockedThrough([byte; 64]);
            b.shift();
            assert_eq!(
                b.0,
                [pack(&|c| c.saturating_sub(1)); 64],
                "shift {byte:#04x}"
            );
            let mut b = BlockedThrough([byte; 64]);
            b.staged_replaced();
            assert_eq!(b.0, [pack(&|c| c.min(2)); 64], "replaced {byte:#04x}");
        }
    }
}
