//! A group context: epochs, sender states with their replay windows, own sending state,
//! counters and events. The only `handle_*` / `poll_*` surface of the record layer.
//!
//! Receiving follows wire.md §2: parse → epoch held? → sender known or admissible? → replay
//! pre-check → AEAD open → commit replay state → deliver. Any failure drops the record,
//! counts it by reason and leaves all state as it was.

use heapless::{Deque, Vec};
use p256::ecdsa::{SigningKey, VerifyingKey};

use crate::counters::{Counters, Event, RekeyReason};
use crate::epochs::EpochSet;
use crate::policy;
use crate::record::{self, NonceProfile, OpenError, SealError};
use crate::replay::{ReplayWindow, WindowStart};
use crate::sequence::{SequenceCounter, SequenceStore};
use crate::signature;
use crate::suite::{KeyError, RecordKeys, Suite};
use crate::time::Instant;
use crate::wire::{
    self, ContentType, Epoch, MAX_FRAGMENT_LEN, MAX_PLAINTEXT_LEN, RecordHeader, SenderId,
};

/// How a receiver treats a sender it has no state for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Admission {
    /// Accept its first authenticated record and open its window there; every lower number
    /// counts as seen (default).
    #[default]
    TrustFirst,
    /// Accept only senders the key server provided ([`Group::add_sender`]).
    Strict,
}

/// Per-group policy. Build with [`GroupConfig::new`] and adjust fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupConfig {
    /// Group identifier (bound into the native key schedule).
    pub group_id: u32,
    /// This node's sender ID; `None` for a listener.
    pub own_sender_id: Option<SenderId>,
    /// Unknown-sender policy.
    pub admission: Admission,
    /// Explicit-nonce policy.
    pub nonce_profile: NonceProfile,
    /// How long the previous epoch stays receivable after a new one is activated (ms).
    pub grace_ms: u64,
    /// Largest fragment accepted or sent (at most 2^14 + 2048). Independently, a plaintext is at
    /// most 2^14 bytes ([`MAX_PLAINTEXT_LEN`]); the largest plaintext is the smaller of the two
    /// limits ([`Group::max_plaintext_len`]).
    pub max_fragment_len: usize,
    /// K: sequence numbers reserved per store write.
    pub sequence_reserve_step: u64,
    /// Raise [`RekeyReason::SenderBudget`] when own seq reaches this.
    pub sender_rekey_budget: u64,
    /// Raise [`RekeyReason::GroupUsage`] when records under one epoch key (sent + accepted)
    /// reach this; `None` picks the suite's RFC 9147 §4.5.3 figure.
    pub confidentiality_limit: Option<u64>,
    /// Raise [`Event::IntegrityLimitReached`] when failures under one key reach this; `None`
    /// picks the suite's figure.
    pub integrity_limit: Option<u64>,
    /// Source authentication (wire.md §5): every record carries a 64-byte ECDSA P-256
    /// signature after the tag, verified with the sender's key before decryption. Senders
    /// without a key ([`Group::set_sender_key`]) are refused.
    pub signatures_required: bool,
}

impl GroupConfig {
    /// Defaults: trust-first, strict nonce profile, 60 s grace, full DTLS record size,
    /// K = 1000, sender budget 2^22.
    pub const fn new(group_id: u32) -> Self {
        Self {
            group_id,
            own_sender_id: None,
            admission: Admission::TrustFirst,
            nonce_profile: NonceProfile::Strict,
            grace_ms: policy::DEFAULT_GRACE_MS as u64,
            max_fragment_len: MAX_FRAGMENT_LEN,
            sequence_reserve_step: policy::DEFAULT_SEQUENCE_RESERVE_STEP,
            sender_rekey_budget: policy::DEFAULT_SENDER_REKEY_BUDGET,
            confidentiality_limit: None,
            integrity_limit: None,
            signatures_required: false,
        }
    }

    /// Requires signed records (source authentication).
    pub const fn with_signatures(mut self) -> Self {
        self.signatures_required = true;
        self
    }

    /// Sets the own sender ID.
    pub const fn with_sender_id(mut self, sid: SenderId) -> Self {
        self.own_sender_id = Some(sid);
        self
    }

    /// Sets the admission policy.
    pub const fn with_admission(mut self, a: Admission) -> Self {
        self.admission = a;
        self
    }

    /// Sets the nonce profile.
    pub const fn with_nonce_profile(mut self, p: NonceProfile) -> Self {
        self.nonce_profile = p;
        self
    }

    /// Sets the grace period.
    pub const fn with_grace_ms(mut self, ms: u64) -> Self {
        self.grace_ms = ms;
        self
    }
}

/// Confidentiality limit (records per key) by suite: RFC 9147 §4.5.3 gives 2^23 for AES-CCM;
/// GCM 2^24.5 is rounded down to 2^24; ChaCha20-Poly1305 has no practical limit.
pub fn default_confidentiality_limit(suite: Suite) -> u64 {
    match suite {
        Suite::AES_128_GCM => 1 << 24,
        Suite::CHACHA20_POLY1305 => u64::MAX,
        _ => 1 << 23,
    }
}

/// Integrity limit (failed authentications per key) by suite: 2^23 for AES-CCM (RFC 9147 gives
/// 2^23.5), 2^16 for CCM_8 (a project choice: RFC 9147 forbids CCM_8 without safeguards), 2^36
/// for GCM and ChaCha20-Poly1305.
pub fn default_integrity_limit(suite: Suite) -> u64 {
    match suite {
        Suite::AES_128_CCM_8 => 1 << 16,
        Suite::AES_128_CCM => 1 << 23,
        _ => 1 << 36,
    }
}

/// A record delivered to the application.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// Epoch of the record.
    pub epoch: Epoch,
    /// Authenticated (group-authenticated) sender ID.
    pub sender_id: SenderId,
    /// Sequence number.
    pub seq: u64,
    /// Content type (always application data).
    pub content_type: ContentType,
    /// The decrypted payload, in the caller's buffer.
    pub plaintext: &'a mut [u8],
}

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

pub use crate::signature::SIGNATURE_LEN;

#[derive(Clone, Debug)]
struct SenderState<const WORDS: usize> {
    sender_id: SenderId,
    key: Option<VerifyingKey>,
    current: Option<(Epoch, ReplayWindow<WORDS>)>,
    previous: Option<(Epoch, ReplayWindow<WORDS>)>,
    last_active: u64,
}

/// Where a record's replay state is, decided before decryption and applied after.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Current(usize),
    Previous(usize),
    NewEpoch(usize),
    Create {
        replace: Option<usize>,
        evicts: bool,
    },
}

/// Per sender ID, the newest epoch in which its records are refused (`Epoch(0)`: none; epoch 0
/// is never held, so "epoch ≤ bound" refuses nothing then). 2 bytes × 256 sender IDs, fixed.
///
/// A bound is only ever raised, never cleared: it covers epochs up to the newest one in which
/// the dropped state may have accepted records, and every epoch installed later is newer than
/// that (epochs only move forward), so the bound stops mattering by itself once those epochs
/// are no longer held, whoever lists the sender again in the meantime.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BlockedThrough([Epoch; 256]);

impl Default for BlockedThrough {
    fn default() -> Self {
        Self([Epoch(0); 256])
    }
}

impl BlockedThrough {
    /// Whether `sid`'s records in `epoch` are refused.
    fn refuses(&self, sid: SenderId, epoch: Epoch) -> bool {
        self.0
            .get(usize::from(sid.0))
            .is_some_and(|bound| epoch <= *bound)
    }

    /// Refuses `sid` in every epoch up to `epoch` (keeping a higher bound it already has).
    fn raise(&mut self, sid: SenderId, epoch: Epoch) {
        if let Some(bound) = self.0.get_mut(usize::from(sid.0)) {
            *bound = (*bound).max(epoch);
        }
    }
}

/// Capacity of the event queue.
pub const EVENT_QUEUE_LEN: usize = 8;

/// A group context with room for `SENDERS` sender states and replay windows of `32 × WORDS`
/// records (see [`ReplayWindow`]).
pub struct Group<const SENDERS: usize = 16, const WORDS: usize = 2> {
    config: GroupConfig,
    epochs: EpochSet,
    senders: Vec<SenderState<WORDS>, SENDERS>,
    /// Sender IDs whose state was dropped (evicted, reused as dead, or removed by the key
    /// server), each refused in every epoch up to its own bound, whether or not a state for it
    /// exists again (wire.md §3).
    blocked: BlockedThrough,
    tick: u64,
    counters: Counters,
    events: Deque<Event, EVENT_QUEUE_LEN>,
    sending: Option<SequenceCounter>,
    budget_event_for: Option<Epoch>,
    exhausted_event_for: Option<Epoch>,
    signing_key: Option<SigningKey>,
}

impl<const SENDERS: usize, const WORDS: usize> core::fmt::Debug for Group<SENDERS, WORDS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Group")
            .field("config", &self.config)
            .field("epochs", &self.epochs)
            .field("senders", &self.senders.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<const SENDERS: usize, const WORDS: usize> Group<SENDERS, WORDS> {
    /// A group with no keys yet.
    pub fn new(config: GroupConfig) -> Self {
        let _ = ReplayWindow::<WORDS>::SIZE;
        Self {
            config,
            epochs: EpochSet::new(),
            senders: Vec::new(),
            blocked: BlockedThrough::default(),
            tick: 0,
            counters: Counters::default(),
            events: Deque::new(),
            sending: None,
            budget_event_for: None,
            exhausted_event_for: None,
            signing_key: None,
        }
    }

    /// The policy.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Counters by outcome.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The epochs held.
    pub fn epochs(&self) -> &EpochSet {
        &self.epochs
    }

    /// The current epoch, if any.
    pub fn current_epoch(&self) -> Option<Epoch> {
        self.epochs.current().map(|c| c.epoch())
    }

    /// Next queued event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: Event) {
        if self.events.push_back(e).is_err() {
            self.counters.events_dropped = self.counters.events_dropped.saturating_add(1);
        }
    }

    /// Stages `epoch` with `keys` (receivable at once; sent in after [`activate_epoch`]).
    ///
    /// [`activate_epoch`]: Self::activate_epoch
    pub fn install_epoch(&mut self, epoch: Epoch, keys: &RecordKeys) -> Result<(), KeyError> {
        self.epochs.install(epoch, keys)
    }

    /// Makes the staged `epoch` current: this node sends in it from now on; the old current
    /// epoch stays receivable for the grace period.
    pub fn activate_epoch(&mut self, epoch: Epoch, now: Instant) -> Result<(), KeyError> {
        if let Some(dropped) = self.epochs.activate(epoch, now, self.config.grace_ms)? {
            self.push_event(Event::EpochRetired { epoch: dropped });
        }
        Ok(())
    }

    /// Installs and activates `epoch` in one step (first keys, or a rekey with no staging).
    pub fn install_and_activate(
        &mut self,
        epoch: Epoch,
        keys: &RecordKeys,
        now: Instant,
    ) -> Result<(), KeyError> {
        self.install_epoch(epoch, keys)?;
        self.activate_epoch(epoch, now)
    }

    /// Drops the previous epoch if its grace period is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(epoch) = self.epochs.expire(now) {
            self.push_event(Event::EpochRetired { epoch });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.epochs.next_deadline()
    }

    /// Adds a sender the key server provided (required under [`Admission::Strict`]). Its windows
    /// start empty: it begins each epoch at seq 0. A full table hands the sid back.
    ///
    /// A sender whose state was dropped here before (evicted from a full table, or removed) stays
    /// refused in every epoch in which the dropped state may have accepted records: adding it
    /// again only admits it in newer epochs (wire.md §3).
    pub fn add_sender(&mut self, sid: SenderId) -> Result<(), SenderId> {
        self.add_sender_state(sid).map(|_| ())
    }

    fn add_sender_state(&mut self, sid: SenderId) -> Result<usize, SenderId> {
        if let Some(i) = self.position(sid) {
            return Ok(i);
        }
        self.senders
            .push(SenderState {
                sender_id: sid,
                key: None,
                current: None,
                previous: None,
                last_active: self.tick,
            })
            .map_err(|s| s.sender_id)?;
        Ok(self.senders.len().saturating_sub(1))
    }

    /// Sets the public key that verifies `sid`'s record signatures (adding the sender if
    /// needed, as [`add_sender`](Self::add_sender)). A full table hands the sid back.
    pub fn set_sender_key(&mut self, sid: SenderId, key: VerifyingKey) -> Result<(), SenderId> {
        let i = self.add_sender_state(sid)?;
        if let Some(s) = self.senders.get_mut(i) {
            s.key = Some(key);
        }
        Ok(())
    }

    /// Sets this node's record-signing key (needed to send in a group that requires signatures).
    pub fn set_signing_key(&mut self, key: SigningKey) {
        self.signing_key = Some(key);
    }

    /// Removes a sender (revoked or stale): its records are refused in every epoch installed
    /// now (the staged one too), also if it is added again later; only in a later epoch can it
    /// be admitted again.
    pub fn remove_sender(&mut self, sid: SenderId) {
        if let Some(i) = self.position(sid) {
            self.senders.swap_remove(i);
        }
        self.block(sid);
    }

    /// Refuses `sid` in every epoch installed so far (the staged one too).
    fn block(&mut self, sid: SenderId) {
        if let Some(h) = self.epochs.highest() {
            self.blocked.raise(sid, h);
        }
    }

    /// What this node knows of each sender.
    pub fn senders(&self) -> impl Iterator<Item = SenderInfo> + '_ {
        self.senders.iter().map(|s| SenderInfo {
            sender_id: s.sender_id,
            current: s.current.as_ref().map(|(e, w)| (*e, w.highest())),
            previous: s.previous.as_ref().map(|(e, w)| (*e, w.highest())),
        })
    }

    fn position(&self, sid: SenderId) -> Option<usize> {
        self.senders.iter().position(|s| s.sender_id == sid)
    }

    fn window_start(&self) -> WindowStart {
        match self.config.admission {
            Admission::TrustFirst => WindowStart::TrustFirst,
            Admission::Strict => WindowStart::Empty,
        }
    }

    /// Decides where the replay state of `(sid, epoch, seq)` lives and pre-checks it.
    fn plan(&self, sid: SenderId, epoch: Epoch, seq: u64, now: Instant) -> Result<Plan, OpenError> {
        // A sender whose state was dropped is refused in the epochs that state covered, also
        // when it was listed (and a state made for it) again since.
        if self.blocked.refuses(sid, epoch) {
            return Err(OpenError::UnknownSender(sid));
        }
        if let Some(i) = self.position(sid) {
            let s = self.senders.get(i).ok_or(OpenError::UnknownSender(sid))?;
            return match (&s.current, &s.previous) {
                (Some((ce, w)), _) if *ce == epoch => {
                    w.check(seq)?;
                    Ok(Plan::Current(i))
                }
                (Some((ce, _)), _) if epoch > *ce => Ok(Plan::NewEpoch(i)),
                (Some(_), Some((pe, w))) if *pe == epoch => {
                    w.check(seq)?;
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
                && [&s.current, &s.previous]
                    .into_iter()
                    .flatten()
                    .all(|(e, _)| !self.epochs.holds(*e, now))
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

    /// Applies a plan after the record authenticated.
    fn commit(&mut self, plan: Plan, sid: SenderId, epoch: Epoch, seq: u64) {
        self.tick = self.tick.saturating_add(1);
        let tick = self.tick;
        let start = self.window_start();
        let fresh = || {
            let mut w = ReplayWindow::<WORDS>::new(start);
            w.commit(seq);
            (epoch, w)
        };
        match plan {
            Plan::Current(i) | Plan::Previous(i) => {
                if let Some(s) = self.senders.get_mut(i) {
                    let window = match plan {
                        Plan::Current(_) => &mut s.current,
                        _ => &mut s.previous,
                    };
                    if let Some((_, w)) = window {
                        w.commit(seq);
                    }
                    s.last_active = tick;
                }
            }
            Plan::NewEpoch(i) => {
                if let Some(s) = self.senders.get_mut(i) {
                    // The sender moved on: its current window becomes its previous one.
                    if let Some(old) = s.current.replace(fresh()) {
                        s.previous = Some(old);
                    }
                    s.last_active = tick;
                }
            }
            Plan::Create { replace, evicts } => {
                let state = SenderState {
                    sender_id: sid,
                    key: None,
                    current: Some(fresh()),
                    previous: None,
                    last_active: tick,
                };
                match replace.and_then(|i| self.senders.get_mut(i)) {
                    Some(slot) => {
                        let dropped = core::mem::replace(slot, state);
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
                            self.blocked.raise(old, newest);
                        }
                    }
                    None => {
                        let _ = self.senders.push(state);
                    }
                }
            }
        }
    }

    /// Opens exactly one record in place (use [`open_datagram`](Self::open_datagram) for a
    /// datagram, which may hold several). On success the plaintext is delivered; on failure the
    /// record is counted by reason, the would-be plaintext is wiped and no state changes.
    pub fn open<'a>(
        &mut self,
        now: Instant,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.open_framed(now, RecordHeader::parse(record), record)
    }

    /// [`open`](Self::open) of a record whose header was already parsed from it (`header` is
    /// what [`RecordHeader::parse`] returned for `record`), so that walking a datagram parses
    /// each header once.
    pub(crate) fn open_framed<'a>(
        &mut self,
        now: Instant,
        header: Result<RecordHeader, wire::Error>,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.handle_timeout(now);
        let opened = header
            .map_err(OpenError::from)
            .and_then(|header| self.open_inner(now, header, record));
        match opened {
            Ok((header, plaintext)) => {
                self.counters.accepted = self.counters.accepted.saturating_add(1);
                Ok(Delivery {
                    epoch: header.epoch,
                    sender_id: header.sender_id,
                    seq: header.seq,
                    content_type: header.content_type,
                    plaintext,
                })
            }
            Err(e) => {
                self.counters.count_drop(&e);
                Err(e)
            }
        }
    }

    fn open_inner<'a>(
        &mut self,
        now: Instant,
        header: RecordHeader,
        record: &'a mut [u8],
    ) -> Result<(RecordHeader, &'a mut [u8]), OpenError> {
        if usize::from(header.length) > self.config.max_fragment_len {
            return Err(OpenError::Malformed(wire::Error::LengthTooLarge));
        }
        if record.len() != header.record_len() {
            return Err(OpenError::Malformed(wire::Error::TrailingBytes));
        }
        if header.content_type != ContentType::APPLICATION_DATA {
            return Err(OpenError::UnsupportedContentType(header.content_type));
        }
        let (epoch, sid, seq) = (header.epoch, header.sender_id, header.seq);
        let profile = self.config.nonce_profile;
        let own = self.config.own_sender_id == Some(sid);
        let trailer = self.trailer_len();
        let parsed = {
            let Some((_, keys)) = self.epochs.get_mut(epoch, now) else {
                return Err(OpenError::UnknownEpoch(epoch));
            };
            record::parse_fragment(keys.cipher(), header, record, profile, trailer)?
        };
        let plan = if own {
            None
        } else {
            Some(self.plan(sid, epoch, seq, now)?)
        };
        if self.config.signatures_required {
            let key = match plan {
                None => self.signing_key.as_ref().map(|k| *k.verifying_key()),
                Some(Plan::Current(i) | Plan::Previous(i) | Plan::NewEpoch(i)) => {
                    self.senders.get(i).and_then(|s| s.key)
                }
                Some(Plan::Create { .. }) => None,
            };
            let key = key.ok_or(OpenError::UnknownSender(sid))?;
            verify_signature(&key, record)?;
        }
        let integrity_limit = self.config.integrity_limit;
        let confidentiality_limit = self.config.confidentiality_limit;
        let Some((_, keys)) = self.epochs.get_mut(epoch, now) else {
            return Err(OpenError::UnknownEpoch(epoch));
        };
        let plaintext = match record::decrypt(keys.cipher(), &parsed, record) {
            Ok(p) => p,
            Err(e) => {
                keys.auth_failures = keys.auth_failures.saturating_add(1);
                let limit = integrity_limit
                    .unwrap_or_else(|| default_integrity_limit(keys.cipher().suite()));
                if keys.auth_failures >= limit && !keys.integrity_event_raised {
                    keys.integrity_event_raised = true;
                    let failures = keys.auth_failures;
                    self.push_event(Event::IntegrityLimitReached { epoch, failures });
                }
                return Err(e);
            }
        };
        let usage_event = plan.is_some() && count_usage(keys, confidentiality_limit);
        let Some(plan) = plan else {
            // Authentic record under our own sid: our own record looped back, or another
            // member holds our sid. A number we have not sent yet can only be the latter.
            plaintext.fill(0);
            let ours = self
                .sending
                .as_ref()
                .is_some_and(|c| c.epoch() == epoch && seq < c.peek());
            if !ours {
                self.push_event(Event::PossibleSenderIdClash { epoch, seq });
            }
            return Err(OpenError::OwnSenderId);
        };
        if usage_event {
            self.push_event(Event::RekeyNeeded {
                epoch,
                reason: RekeyReason::GroupUsage,
            });
        }
        self.commit(plan, sid, epoch, seq);
        Ok((header, plaintext))
    }

    fn note_usage(&mut self, epoch: Epoch, now: Instant) {
        let limit = self.config.confidentiality_limit;
        let raise = self
            .epochs
            .get_mut(epoch, now)
            .is_some_and(|(_, keys)| count_usage(keys, limit));
        if raise {
            self.push_event(Event::RekeyNeeded {
                epoch,
                reason: RekeyReason::GroupUsage,
            });
        }
    }

    /// Seals `plaintext` as the next record of this node into `out`; returns its length.
    /// Reserves sequence numbers in `store` ahead of use (wire.md §6).
    pub fn seal<S: SequenceStore>(
        &mut self,
        now: Instant,
        store: &mut S,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.check_plaintext_len(plaintext.len())?;
        let offset = self.payload_offset()?;
        let end = offset.saturating_add(plaintext.len());
        out.get_mut(offset..end)
            .ok_or(SealError::BufferTooSmall)?
            .copy_from_slice(plaintext);
        self.seal_in_place(now, store, out, plaintext.len())
    }

    /// Refuses (and counts) a plaintext over 2^14 bytes.
    fn check_plaintext_len(&mut self, len: usize) -> Result<(), SealError> {
        if len > MAX_PLAINTEXT_LEN {
            self.counters.seal_record_overflow =
                self.counters.seal_record_overflow.saturating_add(1);
            return Err(SealError::RecordOverflow);
        }
        Ok(())
    }

    /// The largest plaintext [`seal`](Self::seal) takes in the current epoch: 2^14 bytes
    /// ([`MAX_PLAINTEXT_LEN`]), or less when the configured maximum fragment leaves less room
    /// after the suite's explicit nonce, tag and (in signed groups) signature.
    pub fn max_plaintext_len(&self) -> Result<usize, SealError> {
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        let overhead = record::record_len(current.cipher(), 0)
            .saturating_sub(wire::HEADER_LEN)
            .saturating_add(self.trailer_len());
        Ok(self
            .config
            .max_fragment_len
            .saturating_sub(overhead)
            .min(MAX_PLAINTEXT_LEN))
    }

    /// Where the plaintext goes in a buffer for [`seal_in_place`](Self::seal_in_place).
    pub fn payload_offset(&self) -> Result<usize, SealError> {
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        Ok(record::payload_offset(current.cipher()))
    }

    /// Record length for a plaintext of `len` bytes in the current epoch (with the signature,
    /// if the group requires one).
    pub fn record_len(&self, len: usize) -> Result<usize, SealError> {
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        Ok(record::record_len(current.cipher(), len).saturating_add(self.trailer_len()))
    }

    fn trailer_len(&self) -> usize {
        if self.config.signatures_required {
            SIGNATURE_LEN
        } else {
            0
        }
    }

    /// Seals in place: `buf[payload_offset()..][..plaintext_len]` holds the plaintext.
    /// A plaintext over 2^14 bytes is refused with [`SealError::RecordOverflow`] and counted
    /// ([`Counters::seal_record_overflow`]); one that makes the record exceed the configured
    /// maximum fragment with [`SealError::PlaintextTooLarge`]. Neither uses a sequence number.
    pub fn seal_in_place<S: SequenceStore>(
        &mut self,
        now: Instant,
        store: &mut S,
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, SealError> {
        let sid = self.config.own_sender_id.ok_or(SealError::NotASender)?;
        let epoch = self.current_epoch().ok_or(SealError::NoCurrentEpoch)?;
        let trailer = self.trailer_len();
        if trailer > 0 && self.signing_key.is_none() {
            return Err(SealError::NoSigningKey);
        }
        self.check_plaintext_len(plaintext_len)?;
        {
            let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
            let total = record::record_len(current.cipher(), plaintext_len).saturating_add(trailer);
            if total.saturating_sub(wire::HEADER_LEN) > self.config.max_fragment_len {
                return Err(SealError::PlaintextTooLarge);
            }
            if buf.len() < total {
                return Err(SealError::BufferTooSmall);
            }
        }
        let counter = match &mut self.sending {
            Some(c) if c.epoch() == epoch && c.sender_id() == sid => c,
            slot => {
                *slot = None;
                let c =
                    SequenceCounter::start(store, epoch, sid, self.config.sequence_reserve_step)?;
                slot.insert(c)
            }
        };
        let seq = match counter.take(store) {
            Ok(s) => s,
            Err(e) => {
                let e = SealError::from(e);
                if e == SealError::SequenceExhausted && self.exhausted_event_for != Some(epoch) {
                    self.exhausted_event_for = Some(epoch);
                    self.push_event(Event::RekeyNeeded {
                        epoch,
                        reason: RekeyReason::SequenceExhausted,
                    });
                }
                return Err(e);
            }
        };
        if seq >= self.config.sender_rekey_budget && self.budget_event_for != Some(epoch) {
            self.budget_event_for = Some(epoch);
            self.push_event(Event::RekeyNeeded {
                epoch,
                reason: RekeyReason::SenderBudget,
            });
        }
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        let mut len = record::seal_in_place_with_trailer(
            current.cipher(),
            ContentType::APPLICATION_DATA,
            epoch,
            sid,
            seq,
            buf,
            plaintext_len,
            trailer,
        )?;
        if let Some(key) = self.signing_key.as_ref().filter(|_| trailer > 0) {
            let (signed, rest) = buf
                .split_at_mut_checked(len)
                .ok_or(SealError::BufferTooSmall)?;
            let sig = signature::sign(key, &[signed]).map_err(|_| SealError::Crypto)?;
            rest.get_mut(..SIGNATURE_LEN)
                .ok_or(SealError::BufferTooSmall)?
                .copy_from_slice(&sig);
            len = len.saturating_add(SIGNATURE_LEN);
        }
        self.counters.sealed = self.counters.sealed.saturating_add(1);
        self.note_usage(epoch, now);
        Ok(len)
    }

    /// After this device lost its sequence state, the key server issued the current epoch (or
    /// a new sender ID) for it: start sending at 0 there. Call only in that situation.
    pub fn recover_sending<S: SequenceStore>(&mut self, store: &mut S) -> Result<(), SealError> {
        let sid = self.config.own_sender_id.ok_or(SealError::NotASender)?;
        let epoch = self.current_epoch().ok_or(SealError::NoCurrentEpoch)?;
        self.sending = Some(SequenceCounter::start_recovered(
            store,
            epoch,
            sid,
            self.config.sequence_reserve_step,
        )?);
        Ok(())
    }

    /// The next sequence number this node would send in its current epoch, if it is sending.
    pub fn next_send_seq(&self) -> Option<(Epoch, u64)> {
        self.sending.as_ref().map(|c| (c.epoch(), c.peek()))
    }

    /// This node's sending counter for its current epoch (next number, reservation mark), if
    /// it is sending; for monitoring.
    pub fn send_counter(&self) -> Option<&SequenceCounter> {
        self.sending.as_ref()
    }
}

/// Counts one record protected under `keys`; true when this crosses the confidentiality
/// limit for the first time.
fn count_usage(keys: &mut crate::epochs::EpochKeys, limit: Option<u64>) -> bool {
    keys.records = keys.records.saturating_add(1);
    let limit = limit.unwrap_or_else(|| default_confidentiality_limit(keys.cipher().suite()));
    if keys.records >= limit && !keys.usage_event_raised {
        keys.usage_event_raised = true;
        return true;
    }
    false
}

/// Verifies the signature trailer of `record` (the last 64 bytes) over everything before it.
/// High-S signatures are refused, so a signature can't be re-encoded into a second valid one.
fn verify_signature(key: &VerifyingKey, record: &[u8]) -> Result<(), OpenError> {
    let split = record
        .len()
        .checked_sub(SIGNATURE_LEN)
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    let (signed, sig) = record
        .split_at_checked(split)
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    signature::verify(key, &[signed], sig).map_err(|_| OpenError::AuthenticationFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_bounds_are_per_sender_id_and_only_rise() {
        let mut b = BlockedThrough::default();
        for sid in [0u8, 1, 31, 32, 33, 200, 255] {
            assert!(!b.refuses(SenderId(sid), Epoch(1)));
        }
        b.raise(SenderId(33), Epoch(3));
        b.raise(SenderId(200), Epoch(5));
        b.raise(SenderId(255), Epoch(1));
        b.raise(SenderId(200), Epoch(2)); // a lower bound never lowers a higher one
        for (sid, through) in [(33u8, 3u16), (200, 5), (255, 1)] {
            assert!(b.refuses(SenderId(sid), Epoch(1)));
            assert!(b.refuses(SenderId(sid), Epoch(through)));
            assert!(!b.refuses(SenderId(sid), Epoch(through + 1)));
        }
        for sid in [0u8, 1, 32, 34, 65, 199, 201, 254] {
            assert!(!b.refuses(SenderId(sid), Epoch(1)), "sid {sid}");
        }
    }
}
