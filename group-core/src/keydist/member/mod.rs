//! The member side: a sans-IO state machine that joins a group, verifies and decrypts key
//! bundles, installs them into a [`Group`], acknowledges them, reports rekey needs and recovers
//! from the loss of its sequence store (docs/key-distribution.md §7).
//!
//! The member owns the [`Group`] (its configuration comes from the key server's bundles) and
//! the device's [`SequenceStore`]; [`Member::seal`] and [`Member::open`] wrap the group's.
//!
//! ```text
//!   join(now) / leave(now) / report_state_lost(now)
//!   handle_message(now, bytes)        a datagram from the key server
//!   handle_timeout(now)               activations, grace periods, expiry
//!   poll_transmit(now, rng, buf)      next message to the key server
//!   poll_timeout()  poll_event()
//! ```

mod bundle;
mod pending;

use core::fmt;

#[cfg(feature = "record-signatures")]
use p256::ecdsa::VerifyingKey;
use rand_core::CryptoRng;

use heapless::{Deque, Vec};

use super::credential::MemberCredentials;
use super::error::Error;
use super::message::{
    Ack, DeviceHeader, JoinChallenge, JoinRequest, Leave, RekeyNeeded, RekeyReport, RemovedReason,
};
use super::retry::Retry;
#[cfg(feature = "record-signatures")]
use super::signed::parse_key;
use super::view::{SenderKeysView, ServerMessage, parse_server};
use super::vocabulary::{DeviceId, NONCE_LEN, Role};
use super::writer::DeviceMessage;
use crate::counters::{Event, RekeyReason};
use crate::group::{Delivery, Group, GroupConfig};
use crate::record::{OpenError, SealError};
use crate::sequence::SequenceStore;
use crate::time::Instant;
use crate::wire::{Epoch, SenderId};
use bundle::SidSet;
use pending::Pending;

/// Queued member events.
const EVENT_CAP: usize = 16;

/// What a member is and wants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct MemberConfig {
    /// This device's ID at the key server.
    pub device_id: DeviceId,
    /// The group to join.
    pub group_id: u32,
    /// The role to ask for.
    pub role: Role,
    /// K: sequence numbers reserved per store write (wire-format.md §7).
    pub sequence_reserve_step: u64,
    /// Per-sender budget that raises a rekey report.
    pub sender_rekey_budget: u64,
}

impl MemberConfig {
    /// Defaults for the record layer as [`GroupConfig::new`].
    pub const fn new(device_id: DeviceId, group_id: u32, role: Role) -> Self {
        let g = GroupConfig::new(group_id);
        Self {
            device_id,
            group_id,
            role,
            sequence_reserve_step: g.sequence_reserve_step,
            sender_rekey_budget: g.sender_rekey_budget,
        }
    }
}

/// Where a member is.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemberState {
    /// Not joined and not joining.
    Idle,
    /// A join request is outstanding.
    Joining,
    /// Holds keys.
    Joined,
    /// Asked to leave; keys dropped; waiting for the key server's confirmation.
    Leaving,
    /// Removed by the key server (left or revoked); keys dropped.
    Removed(RemovedReason),
}

/// Something the application may act on.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum MemberEvent {
    /// A bundle was verified and installed (staged, or current if it activates at once).
    BundleInstalled {
        /// The epoch.
        epoch: Epoch,
        /// This node's sender ID.
        sender_id: Option<SenderId>,
        /// Milliseconds until it becomes the epoch to send in.
        activate_in_ms: u32,
    },
    /// An epoch became the one this node sends in.
    EpochActivated {
        /// The epoch.
        epoch: Epoch,
    },
    /// Sending restarted at 0 in a fresh epoch after the sequence store was lost.
    Recovered {
        /// The epoch.
        epoch: Epoch,
    },
    /// The key server removed this device; keys are gone.
    Removed {
        /// Why.
        reason: RemovedReason,
    },
    /// The current keys' lifetime ended without a new bundle; a report was queued.
    KeysExpired {
        /// The epoch.
        epoch: Epoch,
    },
    /// An event of the record layer (also acted upon: rekey needs are reported).
    Group(Event),
}

#[derive(Clone, Copy)]
struct JoinAttempt {
    nonce: Option<[u8; NONCE_LEN]>,
    /// The key server's challenge to answer (the request is sent again covering it).
    challenge: Option<[u8; NONCE_LEN]>,
    lost: bool,
    retry: Retry,
}

#[derive(Clone, Copy)]
struct Report {
    epoch: Epoch,
    reason: RekeyReport,
    retry: Retry,
}

/// A member of one group, with room for `SENDERS` sender states and `32 × WORDS`-record replay
/// windows in its [`Group`].
pub struct Member<S: SequenceStore, const SENDERS: usize = 16, const WORDS: usize = 2> {
    config: MemberConfig,
    creds: MemberCredentials,
    store: S,
    state: MemberState,
    /// The record layer, built once and reset in place (never a `Group` by value on the stack
    /// of a join or rekey); meaningful only while `keyed`.
    group: Group<SENDERS, WORDS>,
    /// A bundle was installed into `group` and its keys were not dropped since.
    keyed: bool,
    last_counter: u64,
    last_join_nonce: Option<[u8; NONCE_LEN]>,
    join: Option<JoinAttempt>,
    leave: Option<Retry>,
    ack: Option<(u64, u16)>,
    report: Option<Report>,
    /// Epoch staged and when (member clock) to activate it.
    activation: Option<(Epoch, u64)>,
    /// Senders re-listed after this member removed them: added at activation of the epoch (as
    /// many as the group's table holds).
    deferred: Vec<(SenderId, Option<SenderKey>), SENDERS>,
    removed: SidSet,
    /// A bundle whose sender list continues in `SenderKeys` parts, held until complete.
    pending: Pending<SENDERS>,
    /// `SenderKeys` parts refused (forged, replayed, stale, malformed).
    parts_refused: u64,
    /// Restart sending at 0 when this epoch is activated (it was issued after a state loss).
    recover_at: Option<Epoch>,
    /// Epochs at or below this were held before the state loss (never recovered into).
    recovery_floor: Option<Epoch>,
    expiry: Option<(Epoch, u64)>,
    lifetime_ms: u32,
    events: Deque<MemberEvent, EVENT_CAP>,
    events_dropped: u64,
    /// The latest `now` seen (for work started from [`poll_event`](Self::poll_event)).
    last_now: Instant,
}

impl<S: SequenceStore, const N: usize, const W: usize> fmt::Debug for Member<S, N, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("last_counter", &self.last_counter)
            .field("group", &self.group())
            .finish_non_exhaustive()
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> Member<S, SENDERS, WORDS> {
    /// A member that has not joined yet.
    pub fn new(config: MemberConfig, creds: MemberCredentials, store: S) -> Self {
        Self {
            config,
            creds,
            store,
            state: MemberState::Idle,
            group: Group::new(GroupConfig::new(config.group_id)),
            keyed: false,
            last_counter: 0,
            last_join_nonce: None,
            join: None,
            leave: None,
            ack: None,
            report: None,
            activation: None,
            deferred: Vec::new(),
            removed: SidSet::default(),
            pending: Pending::new(),
            parts_refused: 0,
            recover_at: None,
            recovery_floor: None,
            expiry: None,
            lifetime_ms: 0,
            events: Deque::new(),
            events_dropped: 0,
            last_now: Instant(0),
        }
    }

    /// Where the member is.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// Whether the member holds keys.
    pub fn is_joined(&self) -> bool {
        self.state == MemberState::Joined
    }

    /// The record layer, once a bundle arrived.
    pub fn group(&self) -> Option<&Group<SENDERS, WORDS>> {
        self.keyed.then_some(&self.group)
    }

    /// The sequence store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The sequence store, e.g. to simulate its loss.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The highest server counter accepted.
    pub fn last_counter(&self) -> u64 {
        self.last_counter
    }

    /// `SenderKeys` parts refused since this member was created: forged (bad signature or
    /// tag), replayed, of another bundle or epoch (stale), or inconsistent with their bundle.
    pub fn parts_refused(&self) -> u64 {
        self.parts_refused
    }

    /// Whether a bundle is held waiting for the rest of its sender keys (nothing of it is
    /// installed yet).
    pub fn is_completing_bundle(&self) -> bool {
        self.pending.is_active()
    }

    /// Events dropped because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    fn push_event(&mut self, e: MemberEvent) {
        if self.events.push_back(e).is_err() {
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
    }

    /// Starts joining (or rejoining). If this device is a sender and its sequence store lost
    /// its state, the request says so and the key server answers with a fresh epoch.
    pub fn join(&mut self, now: Instant) -> Result<(), Error> {
        let lost = self.config.role == Role::Sender && self.store.load().is_err();
        self.start_join(now, lost);
        Ok(())
    }

    /// Reports that the sequence store lost its state (Group OSCORE §2.6.1.1): this device
    /// stops sending until the key server gave it a fresh epoch.
    pub fn report_state_lost(&mut self, now: Instant) {
        self.start_join(now, true);
    }

    fn start_join(&mut self, now: Instant, lost: bool) {
        if lost {
            self.recovery_floor = self
                .group()
                .and_then(|g| g.epochs().highest())
                .max(self.recovery_floor);
        }
        self.join = Some(JoinAttempt {
            nonce: None,
            challenge: None,
            lost,
            retry: Retry::now(now),
        });
        self.leave = None;
        if self.state != MemberState::Joined {
            self.state = MemberState::Joining;
        }
    }

    /// Asks the key server for a new epoch (e.g. after a suspected compromise); repeated
    /// until a newer epoch arrives.
    pub fn request_rekey(&mut self, now: Instant) -> Result<(), Error> {
        let epoch = self
            .group()
            .and_then(|g| g.current_epoch())
            .ok_or(Error::NotJoined)?;
        self.schedule_report(now, epoch, RekeyReport::Requested);
        Ok(())
    }

    /// Leaves the group: keys are dropped now; the request is repeated until the key server
    /// confirms.
    pub fn leave(&mut self, now: Instant) -> Result<(), Error> {
        if self.state != MemberState::Joined {
            return Err(Error::NotJoined);
        }
        self.drop_keys();
        self.state = MemberState::Leaving;
        self.leave = Some(Retry::now(now));
        self.join = None;
        Ok(())
    }

    fn drop_keys(&mut self) {
        self.group.reset(GroupConfig::new(self.config.group_id));
        self.keyed = false;
        self.activation = None;
        self.deferred.clear();
        self.pending.clear();
        self.expiry = None;
        self.report = None;
        self.ack = None;
    }

    /// Handles one datagram from the key server. Refusals are typed errors and change nothing
    /// (but the count of refused [`SenderKeys`](super::SenderKeys) parts).
    pub fn handle_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error> {
        self.last_now = self.last_now.max(now);
        // Decoded by borrowing: only server → device kinds (the others are UnexpectedKind).
        let pm = parse_server(bytes)?;
        let r = self.handle_parsed(now, &pm);
        if r.is_err() && matches!(pm.message, ServerMessage::SenderKeys(_)) {
            self.parts_refused = self.parts_refused.saturating_add(1);
        }
        r
    }

    fn handle_parsed(
        &mut self,
        now: Instant,
        pm: &super::view::ServerProtected<'_>,
    ) -> Result<(), Error> {
        if pm.message.device_id() != self.config.device_id {
            return Err(Error::WrongDevice);
        }
        if pm.message.group_id() != self.config.group_id {
            return Err(Error::WrongGroup);
        }
        self.creds.credential().check_server(pm)?;
        // A challenge carries no counter: its freshness is the echo of the outstanding join.
        if let ServerMessage::JoinChallenge(c) = &pm.message {
            return self.on_challenge(now, c);
        }
        let counter = pm.message.server_header().map_or(0, |h| h.counter);
        if counter <= self.last_counter {
            return Err(Error::Replayed);
        }
        if let ServerMessage::SenderKeys(p) = &pm.message {
            return self.on_sender_keys(now, p);
        }
        // Above the bundle being completed and its parts too.
        if self.pending.is_active() && counter <= self.pending.last_counter() {
            return Err(Error::Replayed);
        }
        match &pm.message {
            ServerMessage::KeyBundle(b) => self.on_bundle(now, b),
            ServerMessage::Removed(r) => {
                if !matches!(self.state, MemberState::Joined | MemberState::Leaving) {
                    return Err(Error::NotJoined);
                }
                self.last_counter = counter;
                self.drop_keys();
                self.leave = None;
                self.join = None;
                self.state = MemberState::Removed(r.reason);
                self.push_event(MemberEvent::Removed { reason: r.reason });
                Ok(())
            }
            ServerMessage::JoinChallenge(_) | ServerMessage::SenderKeys(_) => {
                Err(Error::UnexpectedKind)
            }
        }
    }

    /// A part of the sender list of the bundle being completed (authenticated, addressed to
    /// this device, with a counter above the last one accepted). Its keys are checked and
    /// held; the last one installs the bundle. Refusals change nothing.
    #[inline(never)] // its own frame (stack, issue 12)
    fn on_sender_keys(&mut self, now: Instant, p: &SenderKeysView<'_>) -> Result<(), Error> {
        // Without signed records no bundle is ever held: every part is `Stale` here.
        self.pending.check_part(p)?;
        #[cfg(feature = "record-signatures")]
        {
            for k in p.keys() {
                let _key = sender_key(&k.0)?;
            }
            if self.pending.add_part(p)? {
                self.apply_pending(now)?;
            }
        }
        #[cfg(not(feature = "record-signatures"))]
        let _ = now;
        Ok(())
    }

    /// The key server wants the outstanding join request again, covering its challenge: it is
    /// sent at once (and retried with backoff like any join request). A challenge that answers
    /// no outstanding request is refused; the same challenge again changes nothing.
    fn on_challenge(&mut self, now: Instant, c: &JoinChallenge) -> Result<(), Error> {
        let Some(j) = self.join.as_mut() else {
            return Err(Error::NotJoined);
        };
        if j.nonce != Some(c.echo) {
            return Err(Error::NonceMismatch);
        }
        if j.challenge != Some(c.challenge) {
            j.challenge = Some(c.challenge);
            j.retry = Retry::now(now);
        }
        Ok(())
    }

    fn activate(&mut self, epoch: Epoch, now: Instant) {
        if !self.keyed {
            return;
        }
        let group = &mut self.group;
        let was_current = group.current_epoch() == Some(epoch);
        if group.activate_epoch(epoch, now).is_err() {
            return;
        }
        // The previous-but-one epoch is gone now: re-listed senders are safe to add.
        // One entry at a time (no copy of the list on the stack).
        while let Some((sid, key)) = self.deferred.pop() {
            let _ = add_listed(group, sid, key);
            self.removed.remove(sid.0);
        }
        self.try_recover();
        if !was_current {
            self.expiry = (self.lifetime_ms > 0)
                .then(|| (epoch, now.0.saturating_add(u64::from(self.lifetime_ms))));
            self.push_event(MemberEvent::EpochActivated { epoch });
        }
    }

    /// After a state loss: once the fresh epoch is current, restart sending at 0 there (retried
    /// on the next seal if the store refuses the write).
    fn try_recover(&mut self) {
        let Some(epoch) = self.recover_at else {
            return;
        };
        if !self.keyed {
            return;
        }
        let group = &mut self.group;
        if group.current_epoch() != Some(epoch) {
            return;
        }
        if group.recover_sending(&mut self.store).is_ok() {
            self.recover_at = None;
            self.recovery_floor = None;
            self.push_event(MemberEvent::Recovered { epoch });
        }
    }

    /// Activates staged epochs whose time came, ends grace periods, notices expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if let Some((epoch, at)) = self.activation
            && now.0 >= at
        {
            self.activation = None;
            self.activate(epoch, now);
        }
        if self.keyed {
            self.group.handle_timeout(now);
        }
        if let Some((epoch, at)) = self.expiry
            && now.0 >= at
        {
            self.expiry = None;
            self.push_event(MemberEvent::KeysExpired { epoch });
            self.schedule_report(now, epoch, RekeyReport::Expired);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) or [`poll_transmit`](Self::poll_transmit)
    /// next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let candidates = [
            self.ack.map(|_| 0),
            self.join.map(|j| j.retry.next_at()),
            self.leave.map(|r| r.next_at()),
            self.report.map(|r| r.retry.next_at()),
            self.activation.map(|(_, at)| at),
            self.expiry.map(|(_, at)| at),
            self.group().and_then(|g| g.poll_timeout()).map(|i| i.0),
        ];
        candidates.into_iter().flatten().min().map(Instant)
    }

    /// How many times the request that is due again at `now` (a join request, a leave or a
    /// rekey report) was already sent without a sign of progress from the key server: its
    /// retry schedule ran out once more with no answer. 0 when nothing is due. A member
    /// configured with several key-server addresses moves to the next one when this reaches
    /// its threshold (the runtime decides; the state machine knows no addresses).
    pub fn unanswered_due(&self, now: Instant) -> u32 {
        let due = |r: Retry| if r.due(now) { r.sends() } else { 0 };
        let join = self.join.map_or(0, |j| due(j.retry));
        let leave = self.leave.map_or(0, due);
        let report = self.report.map_or(0, |r| due(r.retry));
        join.max(leave).max(report)
    }

    /// Starts an outstanding join over with a fresh nonce and no challenge, keeping its retry
    /// schedule: for a join whose answers went missing (the runtime calls it when
    /// [`unanswered_due`](Self::unanswered_due) says so). The key server may hold the join as
    /// done (it committed it, then died before its bundle got out, or sends it to an address
    /// the device no longer uses) and takes the same request again as a retransmission it
    /// answers there, or, if another server took over, as nothing it issued; a fresh request
    /// is challenged at the address it came from and answered as a rejoin. A bundle answering
    /// the old nonce is refused from then on.
    pub fn restart_join(&mut self) {
        if let Some(j) = self.join.as_mut() {
            j.nonce = None;
            j.challenge = None;
        }
    }

    /// The member moved to another key-server address: every outstanding request (join,
    /// leave, rekey report) is due at `now` with the first timeout again, and a join starts
    /// over with a fresh nonce ([`restart_join`](Self::restart_join)).
    pub fn retry_now(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.restart_join();
        if let Some(j) = self.join.as_mut() {
            j.retry = Retry::now(now);
        }
        if let Some(r) = self.leave.as_mut() {
            *r = Retry::now(now);
        }
        if let Some(r) = self.report.as_mut() {
            r.retry = Retry::now(now);
        }
    }

    fn schedule_report(&mut self, now: Instant, epoch: Epoch, reason: RekeyReport) {
        if self.state != MemberState::Joined || self.report.is_some_and(|r| r.epoch >= epoch) {
            return;
        }
        self.report = Some(Report {
            epoch,
            reason,
            retry: Retry::now(now),
        });
    }

    /// Moves the group's events into this member's queue, acting on rekey needs.
    fn pump_group_events(&mut self, now: Instant) {
        while let Some(e) = self.keyed.then(|| self.group.poll_event()).flatten() {
            let report = match e {
                Event::RekeyNeeded { epoch, reason } => Some((
                    epoch,
                    match reason {
                        RekeyReason::SenderBudget => RekeyReport::SenderBudget,
                        RekeyReason::GroupUsage => RekeyReport::GroupUsage,
                        RekeyReason::SequenceExhausted => RekeyReport::SequenceExhausted,
                    },
                )),
                Event::IntegrityLimitReached { epoch, .. } => {
                    Some((epoch, RekeyReport::IntegrityLimit))
                }
                _ => None,
            };
            if let Some((epoch, reason)) = report {
                self.schedule_report(now, epoch, reason);
            }
            self.push_event(MemberEvent::Group(e));
        }
    }

    /// Next event (record-layer events included: poll here, not on the group).
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        if self.events.is_empty() {
            self.pump_group_events(self.last_now);
        }
        self.events.pop_front()
    }

    fn header<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> DeviceHeader {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        DeviceHeader {
            group_id: self.config.group_id,
            device_id: self.config.device_id,
            nonce,
            counter: self.last_counter,
        }
    }

    /// Writes and protects a device message (by hand: no serde in a member).
    fn protect(&self, msg: DeviceMessage<'_>, buf: &mut [u8]) -> Result<usize, Error> {
        self.creds.credential().protect_device(msg, buf)
    }

    /// The next message for the key server, written to `buf`; returns its length.
    pub fn poll_transmit<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        self.last_now = self.last_now.max(now);
        self.pump_group_events(now);
        if let Some((counter, epoch)) = self.ack {
            let mut header = self.header(rng);
            header.counter = counter;
            let n = self.protect(DeviceMessage::Ack(&Ack { header, epoch }), buf)?;
            self.ack = None;
            return Ok(Some(n));
        }
        if let Some(mut j) = self.join.filter(|j| j.retry.due(now)) {
            let mut header = self.header(rng);
            match j.nonce {
                Some(n) => header.nonce = n,
                None => j.nonce = Some(header.nonce),
            }
            let msg = JoinRequest {
                header,
                role: self.config.role,
                public_key: self.creds.public_key_bytes()?,
                sequence_state_lost: j.lost,
                challenge: j.challenge,
            };
            let n = self.protect(DeviceMessage::JoinRequest(&msg), buf)?;
            j.retry.backoff(now);
            self.join = Some(j);
            return Ok(Some(n));
        }
        if let Some(mut r) = self.leave.filter(|r| r.due(now)) {
            let header = self.header(rng);
            let n = self.protect(DeviceMessage::Leave(&Leave { header }), buf)?;
            r.backoff(now);
            self.leave = Some(r);
            return Ok(Some(n));
        }
        if let Some(mut r) = self.report.filter(|r| r.retry.due(now)) {
            let header = self.header(rng);
            let msg = RekeyNeeded {
                header,
                epoch: r.epoch.0,
                reason: r.reason,
            };
            let n = self.protect(DeviceMessage::RekeyNeeded(&msg), buf)?;
            r.retry.backoff(now);
            self.report = Some(r);
            return Ok(Some(n));
        }
        Ok(None)
    }

    /// Seals `plaintext` as this node's next record (see [`Group::seal`]). If the sequence
    /// store lost its state, a recovery request is queued and the error returned; until the
    /// fresh epoch the key server issues for it is current, sealing is refused with
    /// [`SealError::AwaitingRecovery`]. Before the first bundle: [`SealError::NoCurrentEpoch`].
    pub fn seal(
        &mut self,
        now: Instant,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.handle_timeout(now);
        self.try_recover();
        if self.recover_at.is_some() {
            // Waiting for the fresh epoch: nothing may be sent before it.
            return Err(SealError::AwaitingRecovery);
        }
        if !self.keyed {
            return Err(SealError::NoCurrentEpoch);
        }
        let r = self.group.seal(now, &mut self.store, plaintext, out);
        if let Err(SealError::SequenceStateLost(_)) = r
            && self.join.is_none_or(|j| !j.lost)
            && self.recover_at.is_none()
        {
            self.report_state_lost(now);
        }
        r
    }

    /// Opens one record (see [`Group::open`]). Without keys (not joined yet, left or removed)
    /// every record is refused with [`OpenError::NotJoined`] and wiped.
    pub fn open<'a>(
        &mut self,
        now: Instant,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.handle_timeout(now);
        if self.keyed {
            self.group.open(now, record)
        } else {
            record.fill(0);
            Err(OpenError::NotJoined)
        }
    }
}

/// A listed sender's record-verifying key (present iff the group requires signatures); without
/// the `record-signatures` feature there is none (a signed group is refused by `check_policy`).
#[cfg(feature = "record-signatures")]
type SenderKey = VerifyingKey;
#[cfg(not(feature = "record-signatures"))]
type SenderKey = core::convert::Infallible;

/// Parses a listed sender's record-verifying key.
#[cfg(feature = "record-signatures")]
fn sender_key(bytes: &[u8]) -> Result<SenderKey, Error> {
    parse_key(bytes)
}
#[cfg(not(feature = "record-signatures"))]
fn sender_key(_bytes: &[u8]) -> Result<SenderKey, Error> {
    Err(Error::PolicyUnsupported)
}

/// Adds a listed sender to `group`, with its verifying key if it has one.
fn add_listed<const SENDERS: usize, const WORDS: usize>(
    group: &mut Group<SENDERS, WORDS>,
    sid: SenderId,
    key: Option<SenderKey>,
) -> Result<(), SenderId> {
    match key {
        #[cfg(feature = "record-signatures")]
        Some(k) => group.set_sender_key(sid, k),
        #[cfg(not(feature = "record-signatures"))]
        Some(never) => match never {},
        None => group.add_sender(sid),
    }
}
