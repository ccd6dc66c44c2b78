//! The key server: a sans-IO state machine (docs/key-distribution.md §6).
//!
//! It holds groups (ID, suite, policy, epochs), admitted devices (credential, role, groups) and
//! memberships (sender ID, acknowledgement state). Every change goes through a
//! [`ServerStore`] *before* any message that depends on it is emitted: operations work on a
//! copy of the state, the copy is saved, and only then does it replace the live state. A save
//! that fails leaves the server exactly as it was.
//!
//! Invariants (checked by the crash tests):
//! - an epoch number is created once per group and never again, across crashes (the highest
//!   epoch is persisted before any bundle carries the new one);
//! - a sender ID is never given to two devices under the same key material: fresh IDs are
//!   handed out first; a released ID returns only in an epoch at least two above the newest
//!   epoch its previous holder could know;
//! - server counters strictly increase across crashes (reserved ahead in steps, persisted).
//!
//! Driving it:
//! ```text
//!   handle_message(now, rng, bytes)   a datagram from a device
//!   handle_timeout(now, rng)          activations and scheduled rotations
//!   poll_transmit(now, rng, buf)      next message to send (to Transmit::device_id)
//!   poll_timeout()                    when to call handle_timeout / poll_transmit again
//!   poll_event()                      what happened
//! ```
//! The server's `now` is persisted (activation and rotation times): use a clock that survives
//! restarts (e.g. UNIX time in ms), unlike the members, whose clocks may start anywhere.

use core::fmt;

use heapless::{Deque, Vec};
use p256::ecdsa::VerifyingKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::credential::{Credential, DeviceCredential, ServerCredentials};
use super::error::Error;
use super::message::{
    Ack, BundlePolicy, Bytes, JoinChallenge, JoinRequest, KeyBundle, KeyMaterial, Leave, Message,
    MessageKind, RekeyNeeded, Removed, RemovedReason, SenderEntry, ServerHeader, WireAdmission,
    WireNonceProfile, parse,
};
use super::retry::Retry;
use super::store::ServerStore;
use super::vocabulary::{DeviceId, Direction, MAX_SENDERS, MAX_STALE, NONCE_LEN, Role};
use crate::policy::{
    DEFAULT_ACTIVATION_DELAY_MS, DEFAULT_GRACE_MS, DEFAULT_REKEY_ON_JOIN, DEFAULT_REPLAY_WINDOW,
};
use crate::suite::Suite;
use crate::time::Instant;
use crate::wire::MAX_FRAGMENT_LEN;

/// Format byte of the stored state.
const STATE_FORMAT: u8 = 1;
/// Server counters reserved per store write.
const COUNTER_STEP: u64 = 64;
/// Released sender IDs remembered for reuse.
const RELEASED_CAP: usize = 32;
/// Queued removal notices.
const NOTICE_CAP: usize = 8;
/// Queued events.
const EVENT_CAP: usize = 32;
/// Queued join challenges (a full queue refuses further unchallenged joins until it drains).
const CHALLENGE_OUT_CAP: usize = 16;
/// How long a join challenge stays valid (ms on the server's clock). The device answers at
/// once; an answer that comes later (lost, then retried after a long backoff) gets a new one.
pub const CHALLENGE_TTL_MS: u64 = 60_000;

/// Which key schedule a group's members use (wire.md §4).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum KeySchedule {
    /// HKDF-SHA256 from a 32-byte epoch secret.
    Native,
    /// wolfSSL-compatible TLS 1.2 PRF from a 64-byte pre-master secret and two randoms.
    WolfSsl,
}

mod suite_serde {
    use super::Suite;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: &Suite, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u16(s.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Suite, D::Error> {
        u16::deserialize(d).map(Suite)
    }
}

/// A group as the key server runs it. Build with [`GroupSpec::new`] and adjust fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupSpec {
    /// Group ID (bound into the native key schedule).
    pub group_id: u32,
    /// Cipher suite.
    #[serde(with = "suite_serde")]
    pub suite: Suite,
    /// Key schedule.
    pub schedule: KeySchedule,
    /// Record-layer policy sent to members.
    pub policy: BundlePolicy,
    /// A joiner gets an epoch nobody has sent in yet (backward secrecy). Default on.
    pub rekey_on_join: bool,
    /// Delay between creating an epoch and making it the one to send in (ms): members get it
    /// staged first, so the switch needs no tight synchronisation.
    pub activation_delay_ms: u32,
    /// Rotate the epoch this often (ms; 0: only on membership changes and reports).
    pub rotation_interval_ms: u64,
    /// Key lifetime members are told (ms after activation; 0: none).
    pub lifetime_ms: u32,
}

impl GroupSpec {
    /// Defaults: native schedule, 64-record window, trust-first admission, strict nonces, no
    /// signatures, 60 s grace, full record size, rekey on join, 2 s activation delay, no
    /// scheduled rotation, no lifetime.
    pub const fn new(group_id: u32, suite: Suite) -> Self {
        Self {
            group_id,
            suite,
            schedule: KeySchedule::Native,
            policy: BundlePolicy {
                replay_window: DEFAULT_REPLAY_WINDOW,
                admission: WireAdmission::TrustFirst,
                nonce_profile: WireNonceProfile::Strict,
                signatures_required: false,
                grace_ms: DEFAULT_GRACE_MS,
                max_fragment_len: MAX_FRAGMENT_LEN as u16,
            },
            rekey_on_join: DEFAULT_REKEY_ON_JOIN,
            activation_delay_ms: DEFAULT_ACTIVATION_DELAY_MS,
            rotation_interval_ms: 0,
            lifetime_ms: 0,
        }
    }

    /// Requires signed records (wire.md §5).
    pub const fn with_signatures(mut self) -> Self {
        self.policy.signatures_required = true;
        self
    }

    /// Strict admission: members accept only the senders the bundles list.
    pub const fn with_strict_admission(mut self) -> Self {
        self.policy.admission = WireAdmission::Strict;
        self
    }

    /// Sets the grace period (ms).
    pub const fn with_grace_ms(mut self, ms: u32) -> Self {
        self.policy.grace_ms = ms;
        self
    }

    /// Sets the activation delay (ms).
    pub const fn with_activation_delay_ms(mut self, ms: u32) -> Self {
        self.activation_delay_ms = ms;
        self
    }

    /// Sets the scheduled rotation interval (ms; 0: none).
    pub const fn with_rotation_interval_ms(mut self, ms: u64) -> Self {
        self.rotation_interval_ms = ms;
        self
    }

    /// Sets whether joins get a fresh epoch.
    pub const fn with_rekey_on_join(mut self, on: bool) -> Self {
        self.rekey_on_join = on;
        self
    }

    /// Sets the key schedule.
    pub const fn with_schedule(mut self, s: KeySchedule) -> Self {
        self.schedule = s;
        self
    }
}

/// Why the server created an epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RekeyCause {
    /// The group was created.
    Created,
    /// A device joined (backward secrecy).
    Join,
    /// A device left or was revoked (forward secrecy).
    Removal,
    /// A device lost its sequence state (it must not send under any key it held).
    Recovery,
    /// A member reported that the epoch must be replaced.
    Report,
    /// Scheduled rotation.
    Scheduled,
    /// An operator asked for a new epoch ([`KeyServer::rekey`]).
    Operator,
}

/// Something that happened at the key server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A device joined (or rejoined) a group.
    Joined {
        /// The device.
        device: DeviceId,
        /// The group.
        group_id: u32,
        /// Its sender ID, if a sender.
        sender_id: Option<u8>,
    },
    /// A device left a group.
    Left {
        /// The device.
        device: DeviceId,
        /// The group.
        group_id: u32,
    },
    /// A device was revoked (removed from all groups and forgotten).
    Revoked {
        /// The device.
        device: DeviceId,
    },
    /// A new epoch was created (staged).
    EpochCreated {
        /// The group.
        group_id: u32,
        /// The epoch.
        epoch: u16,
        /// Why.
        cause: RekeyCause,
    },
    /// A staged epoch became current.
    EpochActivated {
        /// The group.
        group_id: u32,
        /// The epoch.
        epoch: u16,
    },
    /// A device acknowledged a bundle.
    Acked {
        /// The device.
        device: DeviceId,
        /// The group.
        group_id: u32,
        /// The epoch acknowledged.
        epoch: u16,
    },
}

/// A message for the driver to send to a device (its address is the driver's business: the
/// source of that device's last [fresh](Received::Fresh) message; a
/// [`JoinChallenge`](MessageKind::JoinChallenge) goes to the source of the join request it
/// answers, see [`Received::Challenged`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// The recipient.
    pub device_id: DeviceId,
    /// Bytes written at the start of the caller's buffer.
    pub len: usize,
    /// What it is.
    pub kind: MessageKind,
}

/// What an authenticated device message proved ([`KeyServer::handle_message`]). A driver
/// may move a device's address only on [`Fresh`](Self::Fresh) (issue 10, finding 4): a
/// signature or PSK tag proves who wrote a message, not when, so a captured message replayed
/// from another address must not re-point where bundles and notices go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Received {
    /// The message was sent after something only the key server knew recently: a join request
    /// covering an outstanding challenge, the first acknowledgement of a bundle emitted since
    /// this server started, the leave that ended the membership, the report that started a
    /// rekey. The driver may note the datagram's source as the device's address.
    Fresh(DeviceId),
    /// Authenticated but proving no freshness: a duplicate, a replay, or a late copy of a
    /// message already acted upon. Nothing that matters changed; counted by
    /// [`KeyServer::replays`]. The driver must not take the source address from it.
    Unproven(DeviceId),
    /// A join request that covers no outstanding challenge (a first request, or a replay): a
    /// [`JoinChallenge`] is queued for the device and nothing else changed. The driver sends
    /// that challenge to the source of this datagram, without recording it as the device's
    /// address (only the answer proves where the device is).
    Challenged(DeviceId),
}

impl Received {
    /// The authenticated device.
    pub fn device(&self) -> DeviceId {
        match self {
            Self::Fresh(d) | Self::Unproven(d) | Self::Challenged(d) => *d,
        }
    }

    /// Whether the message proved freshness.
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh(_))
    }
}

/// A challenge the key server issued and still accepts (in memory only: after a restart the
/// device is simply challenged again).
#[derive(Clone, Copy, Default)]
struct Challenge {
    group_id: u32,
    nonce: [u8; NONCE_LEN],
    expires_at: u64,
}

/// A challenge waiting for [`KeyServer::poll_transmit`].
struct ChallengeOut {
    device: DeviceId,
    group_id: u32,
    echo: [u8; NONCE_LEN],
    nonce: [u8; NONCE_LEN],
}

#[derive(Clone, Serialize, Deserialize)]
struct EpochRec {
    epoch: u16,
    material: KeyMaterial,
    /// When it became (or becomes) current, on the server's clock.
    activate_at: u64,
    /// Whether a bundle ever carried it (persisted before that bundle was emitted). A current
    /// epoch nobody got can go to a joiner without breaking backward secrecy.
    handed_out: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct GroupRec {
    spec: GroupSpec,
    /// Highest epoch ever created (persisted before use).
    latest_epoch: u16,
    current: Option<EpochRec>,
    staged: Option<EpochRec>,
    /// Bundles with a counter at or above this carry the group's present content.
    changed_at: u64,
    /// Next never-used sender ID (1..=255; 256 = none left).
    next_fresh_sid: u16,
    /// Released sender IDs with the newest epoch their holder could know.
    released: Vec<(u8, u16), RELEASED_CAP>,
    /// Sender IDs released since the current epoch (RFC 9594 stale_node_ids).
    stale: Vec<u8, MAX_STALE>,
}

impl GroupRec {
    fn newest(&self) -> Option<&EpochRec> {
        self.staged.as_ref().or(self.current.as_ref())
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct Membership {
    group_id: u32,
    role: Role,
    sender_id: Option<u8>,
    /// Server counter when this membership began: device messages must refer to a counter at
    /// or above it; every bundle of it has a counter at or above it.
    since: u64,
    /// Highest bundle counter acknowledged (0: none). Not persisted on its own: after a crash
    /// unacknowledged-looking bundles are simply sent again.
    acked: u64,
    /// Epoch of that bundle.
    acked_epoch: u16,
    /// Join nonce echoed until the first acknowledgement.
    join_nonce: Option<[u8; NONCE_LEN]>,
    #[serde(skip)]
    retx: Retry,
}

#[derive(Clone, Serialize, Deserialize)]
struct DeviceRec<const G: usize> {
    id: DeviceId,
    credential: DeviceCredential,
    role: Role,
    groups: Vec<u32, G>,
    last_join_nonce: Option<[u8; NONCE_LEN]>,
    memberships: Vec<Membership, G>,
    /// Outstanding join challenges, at most one per group (the device may join only its
    /// `groups`, at most `G`). Not persisted.
    #[serde(skip)]
    challenges: Vec<Challenge, G>,
}

#[derive(Clone, Serialize, Deserialize)]
struct ServerState<const D: usize, const G: usize> {
    format: u8,
    /// Every counter below this may have been used.
    counter_reserved: u64,
    groups: Vec<GroupRec, G>,
    devices: Vec<DeviceRec<G>, D>,
}

struct Notice {
    device: DeviceId,
    group_id: u32,
    reason: RemovedReason,
    credential: DeviceCredential,
}

/// The key server, for up to `DEVICES` devices and `GROUPS` groups, serializing its state into
/// a `BUF`-byte buffer.
pub struct KeyServer<
    St: ServerStore,
    const DEVICES: usize = 32,
    const GROUPS: usize = 4,
    const BUF: usize = 16384,
> {
    creds: ServerCredentials,
    store: St,
    state: ServerState<DEVICES, GROUPS>,
    next_counter: u64,
    scratch: [u8; BUF],
    notices: Deque<Notice, NOTICE_CAP>,
    events: Deque<ServerEvent, EVENT_CAP>,
    events_dropped: u64,
    challenges_out: Deque<ChallengeOut, CHALLENGE_OUT_CAP>,
    /// The first counter this run may use: counters below may have been used before a restart.
    boot_counter: u64,
    replays: u64,
    challenges_issued: u64,
}

impl<St: ServerStore, const D: usize, const G: usize, const B: usize> fmt::Debug
    for KeyServer<St, D, G, B>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyServer")
            .field("groups", &self.state.groups.len())
            .field("devices", &self.state.devices.len())
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

fn fresh_material<R: CryptoRng + ?Sized>(schedule: KeySchedule, rng: &mut R) -> KeyMaterial {
    match schedule {
        KeySchedule::Native => {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            KeyMaterial::Native { secret }
        }
        KeySchedule::WolfSsl => {
            let mut m = KeyMaterial::WolfSsl {
                pms: Bytes([0u8; 64]),
                client_random: [0u8; 32],
                server_random: [0u8; 32],
            };
            if let KeyMaterial::WolfSsl {
                pms,
                client_random,
                server_random,
            } = &mut m
            {
                rng.fill_bytes(&mut pms.0);
                rng.fill_bytes(client_random);
                rng.fill_bytes(server_random);
            }
            m
        }
    }
}

impl<St: ServerStore, const D: usize, const G: usize, const B: usize> KeyServer<St, D, G, B> {
    /// Starts the key server from its store: a commissioned empty store gives an empty server;
    /// stored state is resumed; a store that lost its state, or state that does not decode, is
    /// refused (starting empty would reuse epochs and sender IDs).
    pub fn open(creds: ServerCredentials, mut store: St) -> Result<Self, Error> {
        let mut scratch = [0u8; B];
        let state = match store.load(&mut scratch)? {
            None => ServerState {
                format: STATE_FORMAT,
                counter_reserved: 1,
                groups: Vec::new(),
                devices: Vec::new(),
            },
            Some(n) => {
                let bytes = scratch.get(..n).ok_or(Error::StateCorrupt)?;
                let decoded = postcard::from_bytes::<ServerState<D, G>>(bytes);
                scratch.zeroize();
                let s = decoded.map_err(|_| Error::StateCorrupt)?;
                if s.format != STATE_FORMAT {
                    return Err(Error::StateCorrupt);
                }
                s
            }
        };
        let next_counter = state.counter_reserved.max(1);
        Ok(Self {
            creds,
            store,
            state,
            next_counter,
            scratch,
            notices: Deque::new(),
            events: Deque::new(),
            events_dropped: 0,
            challenges_out: Deque::new(),
            boot_counter: next_counter,
            replays: 0,
            challenges_issued: 0,
        })
    }

    /// The key server's public key (what devices must be provisioned with).
    pub fn public_key(&self) -> VerifyingKey {
        self.creds.public_key()
    }

    /// The store (e.g. to inspect a simulated one).
    pub fn store(&self) -> &St {
        &self.store
    }

    /// Gives the store back (a clean shutdown; a crash is just dropping the server).
    pub fn into_store(self) -> St {
        self.store
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Events dropped because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Authenticated device messages that proved no freshness ([`Received::Unproven`]):
    /// duplicates, replays and late copies, since this server started.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Join challenges issued ([`Received::Challenged`]) since this server started.
    pub fn challenges_issued(&self) -> u64 {
        self.challenges_issued
    }

    /// Join challenges outstanding (in memory; at most one per device and group).
    pub fn outstanding_challenges(&self) -> usize {
        self.state.devices.iter().map(|d| d.challenges.len()).sum()
    }

    fn push_event(&mut self, e: ServerEvent) {
        if self.events.push_back(e).is_err() {
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
    }

    /// Saves `next` and makes it the live state; on failure nothing changes.
    fn commit(&mut self, next: ServerState<D, G>) -> Result<(), Error> {
        let encoded = postcard::to_slice(&next, &mut self.scratch);
        let result = match encoded {
            Ok(bytes) => self.store.save(bytes).map_err(Error::Store),
            Err(_) => Err(Error::StateTooLarge),
        };
        self.scratch.zeroize();
        result?;
        self.state = next;
        Ok(())
    }

    /// Takes the next server counter, reserving a block in the store first when needed.
    fn take_counter(&mut self) -> Result<u64, Error> {
        if self.next_counter >= self.state.counter_reserved {
            let mut next = self.state.clone();
            next.counter_reserved = self.next_counter.saturating_add(COUNTER_STEP);
            self.commit(next)?;
        }
        let c = self.next_counter;
        self.next_counter = self.next_counter.saturating_add(1);
        Ok(c)
    }

    // ---- administration ------------------------------------------------------------------

    /// Creates a group with a first epoch (current at once; nobody has it yet).
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        spec: GroupSpec,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        if self.group_index(spec.group_id).is_some() {
            return Err(Error::AlreadyExists);
        }
        if !spec.suite.is_enabled() {
            return Err(Error::UnsupportedSuite(spec.suite.0));
        }
        if spec.policy.signatures_required
            && self
                .state
                .devices
                .iter()
                .any(|d| d.credential.is_psk() && d.groups.contains(&spec.group_id))
        {
            return Err(Error::PskWithSignatures);
        }
        let mut next = self.state.clone();
        next.groups
            .push(GroupRec {
                spec,
                latest_epoch: 1,
                current: Some(EpochRec {
                    epoch: 1,
                    material: fresh_material(spec.schedule, rng),
                    activate_at: now.0,
                    handed_out: false,
                }),
                staged: None,
                changed_at: self.next_counter,
                next_fresh_sid: 1,
                released: Vec::new(),
                stale: Vec::new(),
            })
            .map_err(|_| Error::CapacityExceeded)?;
        self.commit(next)?;
        self.push_event(ServerEvent::EpochCreated {
            group_id: spec.group_id,
            epoch: 1,
            cause: RekeyCause::Created,
        });
        Ok(())
    }

    /// Admits a device: its credential, the most it may be (sender or listener) and the groups
    /// it may join.
    pub fn admit_device(
        &mut self,
        id: DeviceId,
        credential: DeviceCredential,
        role: Role,
        groups: &[u32],
    ) -> Result<(), Error> {
        if self.device_index(id).is_some() {
            return Err(Error::AlreadyExists);
        }
        credential.validate()?;
        let mut list = Vec::new();
        for g in groups {
            let gi = self.group_index(*g).ok_or(Error::UnknownGroup)?;
            let signed = self
                .state
                .groups
                .get(gi)
                .is_some_and(|g| g.spec.policy.signatures_required);
            if signed && credential.is_psk() {
                return Err(Error::PskWithSignatures);
            }
            list.push(*g).map_err(|_| Error::CapacityExceeded)?;
        }
        let mut next = self.state.clone();
        next.devices
            .push(DeviceRec {
                id,
                credential,
                role,
                groups: list,
                last_join_nonce: None,
                memberships: Vec::new(),
                challenges: Vec::new(),
            })
            .map_err(|_| Error::CapacityExceeded)?;
        self.commit(next)
    }

    /// Revokes a device: removes it from every group (each remaining group is rekeyed with a
    /// fresh epoch secret), forgets its credential (it can't rejoin), and queues a best-effort
    /// [`Removed`] notice per group.
    pub fn revoke_device<R: CryptoRng + ?Sized>(
        &mut self,
        id: DeviceId,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let di = self.device_index(id).ok_or(Error::UnknownDevice)?;
        let mut next = self.state.clone();
        let dev = next.devices.get(di).cloned().ok_or(Error::UnknownDevice)?;
        let mut created: Vec<(u32, u16), G> = Vec::new();
        for m in &dev.memberships {
            if let Some(e) =
                Self::remove_member(&mut next, self.next_counter, di, m.group_id, now, rng)?
            {
                let _ = created.push((m.group_id, e));
            }
        }
        next.devices.swap_remove(di);
        self.commit(next)?;
        for m in &dev.memberships {
            let _ = self.notices.push_back(Notice {
                device: id,
                group_id: m.group_id,
                reason: RemovedReason::Revoked,
                credential: dev.credential.clone(),
            });
        }
        self.push_event(ServerEvent::Revoked { device: id });
        for (g, e) in created {
            self.push_event(ServerEvent::EpochCreated {
                group_id: g,
                epoch: e,
                cause: RekeyCause::Removal,
            });
        }
        Ok(())
    }

    /// Forces a new epoch for a group now (e.g. an operator's rotation).
    pub fn rekey<R: CryptoRng + ?Sized>(
        &mut self,
        group_id: u32,
        now: Instant,
        rng: &mut R,
    ) -> Result<u16, Error> {
        let gi = self.group_index(group_id).ok_or(Error::UnknownGroup)?;
        let mut next = self.state.clone();
        let e = Self::new_epoch(&mut next, self.next_counter, gi, now, rng)?;
        self.commit(next)?;
        self.mark_group_due(gi, now);
        self.push_event(ServerEvent::EpochCreated {
            group_id,
            epoch: e,
            cause: RekeyCause::Operator,
        });
        Ok(e)
    }

    // ---- introspection --------------------------------------------------------------------

    /// A group's current and staged epochs.
    pub fn epochs(&self, group_id: u32) -> Option<(Option<u16>, Option<u16>)> {
        let g = self.state.groups.get(self.group_index(group_id)?)?;
        Some((
            g.current.as_ref().map(|e| e.epoch),
            g.staged.as_ref().map(|e| e.epoch),
        ))
    }

    /// The highest epoch a group ever had.
    pub fn latest_epoch(&self, group_id: u32) -> Option<u16> {
        let g = self.state.groups.get(self.group_index(group_id)?)?;
        Some(g.latest_epoch)
    }

    /// A device's membership in a group: its sender ID (if a sender).
    pub fn membership(&self, device: DeviceId, group_id: u32) -> Option<Option<u8>> {
        let d = self.state.devices.get(self.device_index(device)?)?;
        d.memberships
            .iter()
            .find(|m| m.group_id == group_id)
            .map(|m| m.sender_id)
    }

    /// Members of a group (device, sender ID).
    pub fn members(&self, group_id: u32) -> impl Iterator<Item = (DeviceId, Option<u8>)> + '_ {
        self.state.devices.iter().flat_map(move |d| {
            d.memberships
                .iter()
                .filter(move |m| m.group_id == group_id)
                .map(move |m| (d.id, m.sender_id))
        })
    }

    /// Whether a device still has to acknowledge the group's present content.
    pub fn is_pending(&self, device: DeviceId, group_id: u32) -> bool {
        let Some(g) = self
            .group_index(group_id)
            .and_then(|i| self.state.groups.get(i))
        else {
            return false;
        };
        self.device_index(device)
            .and_then(|i| self.state.devices.get(i))
            .and_then(|d| d.memberships.iter().find(|m| m.group_id == group_id))
            .is_some_and(|m| Self::pending(g, m))
    }

    /// The spec a group was created with (the running state's, whatever a configuration
    /// file says now).
    pub fn group_spec(&self, group_id: u32) -> Option<&GroupSpec> {
        self.group_index(group_id)
            .and_then(|gi| self.state.groups.get(gi))
            .map(|g| &g.spec)
    }

    /// What the server holds for an admitted device: its credential, its role and the groups
    /// it may join.
    pub fn device(&self, id: DeviceId) -> Option<(&DeviceCredential, Role, &[u32])> {
        self.device_index(id)
            .and_then(|di| self.state.devices.get(di))
            .map(|d| (&d.credential, d.role, d.groups.as_slice()))
    }

    fn group_index(&self, group_id: u32) -> Option<usize> {
        self.state
            .groups
            .iter()
            .position(|g| g.spec.group_id == group_id)
    }

    fn device_index(&self, id: DeviceId) -> Option<usize> {
        self.state.devices.iter().position(|d| d.id == id)
    }

    fn pending(g: &GroupRec, m: &Membership) -> bool {
        m.acked < m.since.max(g.changed_at)
    }

    // ---- state transitions (on a copy) ------------------------------------------------------

    /// Creates a fresh staged epoch in group `gi` of `s`. Returns its number.
    fn new_epoch<R: CryptoRng + ?Sized>(
        s: &mut ServerState<D, G>,
        counter: u64,
        gi: usize,
        now: Instant,
        rng: &mut R,
    ) -> Result<u16, Error> {
        let g = s.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        let epoch = g
            .latest_epoch
            .checked_add(1)
            .ok_or(Error::EpochsExhausted)?;
        let mut activate_at = now.0.saturating_add(u64::from(g.spec.activation_delay_ms));
        match g.staged.take() {
            // A staged epoch being replaced: switch no later than it would have.
            Some(old) => activate_at = activate_at.min(old.activate_at),
            None => g.stale.clear(),
        }
        g.staged = Some(EpochRec {
            epoch,
            material: fresh_material(g.spec.schedule, rng),
            activate_at,
            handed_out: false,
        });
        g.latest_epoch = epoch;
        g.changed_at = counter;
        Ok(epoch)
    }

    /// An epoch a joiner may get: one nobody has received yet; or, unless `recovery`, the staged
    /// epoch before its activation time (nobody sends in it before then: members activate at
    /// reception + the remaining delay) or any epoch if `fresh_needed` is off. Otherwise a new
    /// epoch is created. Returns (epoch, created).
    fn epoch_for_join<R: CryptoRng + ?Sized>(
        s: &mut ServerState<D, G>,
        counter: u64,
        gi: usize,
        now: Instant,
        rng: &mut R,
        fresh_needed: bool,
        recovery: bool,
    ) -> Result<(u16, bool), Error> {
        let g = s.groups.get(gi).ok_or(Error::UnknownGroup)?;
        let usable = |e: &EpochRec, staged: bool| {
            !e.handed_out || (!recovery && (!fresh_needed || (staged && e.activate_at > now.0)))
        };
        let reuse = match (&g.staged, &g.current) {
            (Some(st), _) => usable(st, true).then_some(st.epoch),
            (None, Some(c)) => usable(c, false).then_some(c.epoch),
            (None, None) => None,
        };
        if let Some(e) = reuse {
            return Ok((e, false));
        }
        let e = Self::new_epoch(s, counter, gi, now, rng)?;
        Ok((e, true))
    }

    /// Allocates a sender ID usable in `epoch` and later.
    fn alloc_sid(g: &mut GroupRec, epoch: u16) -> Result<u8, Error> {
        if let Ok(sid) = u8::try_from(g.next_fresh_sid) {
            g.next_fresh_sid = g.next_fresh_sid.saturating_add(1);
            return Ok(sid);
        }
        let i = g
            .released
            .iter()
            .position(|(_, last)| u32::from(*last).saturating_add(2) <= u32::from(epoch))
            .ok_or(Error::SenderIdsExhausted)?;
        let (sid, _) = g.released.remove(i);
        Ok(sid)
    }

    /// Releases `sid`, whose holder could know epochs up to `last_known`, and lists it as
    /// stale. Call it after creating the epoch that announces the release: `new_epoch` clears
    /// the stale list when nothing was staged, so a sid released before it would never be
    /// announced (issue 10, finding 7).
    fn release_sid(g: &mut GroupRec, sid: u8, last_known: u16) {
        // If the list is full the ID is simply never reused (the safe direction).
        let _ = g.released.push((sid, last_known));
        if !g.stale.contains(&sid) {
            let _ = g.stale.push(sid);
        }
    }

    /// Removes device `di` from group `group_id` in `s`; rekeys the group if members remain.
    fn remove_member<R: CryptoRng + ?Sized>(
        s: &mut ServerState<D, G>,
        counter: u64,
        di: usize,
        group_id: u32,
        now: Instant,
        rng: &mut R,
    ) -> Result<Option<u16>, Error> {
        let gi = s
            .groups
            .iter()
            .position(|g| g.spec.group_id == group_id)
            .ok_or(Error::UnknownGroup)?;
        let dev = s.devices.get_mut(di).ok_or(Error::UnknownDevice)?;
        let mi = dev
            .memberships
            .iter()
            .position(|m| m.group_id == group_id)
            .ok_or(Error::NotMember)?;
        let m = dev.memberships.swap_remove(mi);
        // The newest epoch the removed device could know: the one before the new epoch.
        let last_known = s.groups.get(gi).ok_or(Error::UnknownGroup)?.latest_epoch;
        // A fresh epoch secret even if nobody is left: the removed device holds the old one.
        // The epoch first, then the release: the bundles of this epoch announce the removal,
        // so its stale list must name the released sid.
        let epoch = Self::new_epoch(s, counter, gi, now, rng)?;
        if let Some(sid) = m.sender_id {
            let g = s.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
            Self::release_sid(g, sid, last_known);
        }
        Ok(Some(epoch))
    }

    /// Makes every pending member of group `gi` due for a bundle now.
    fn mark_group_due(&mut self, gi: usize, now: Instant) {
        let Some(g) = self.state.groups.get(gi) else {
            return;
        };
        let gid = g.spec.group_id;
        for d in self.state.devices.iter_mut() {
            for m in d.memberships.iter_mut().filter(|m| m.group_id == gid) {
                m.retx = Retry::now(now);
            }
        }
    }

    // ---- messages in ------------------------------------------------------------------------

    /// Handles one datagram from a device. Returns the authenticated device and whether the
    /// message proved freshness ([`Received`]): the driver notes the device's address only on
    /// [`Received::Fresh`]. Every refusal is a typed error and changes nothing.
    pub fn handle_message<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        bytes: &[u8],
    ) -> Result<Received, Error> {
        let pm = parse(bytes)?;
        if pm.message.direction() != Direction::DeviceToServer {
            return Err(Error::UnexpectedKind);
        }
        let id = pm.message.device_id();
        let di = self.device_index(id).ok_or(Error::UnknownDevice)?;
        let dev = self.state.devices.get(di).ok_or(Error::UnknownDevice)?;
        Credential::for_device(&self.creds, &dev.credential)?.check(&pm)?;
        let fresh = match pm.message {
            Message::JoinRequest(j) => match self.on_join(now, rng, di, &j)? {
                Some(fresh) => fresh,
                None => return Ok(Received::Challenged(id)),
            },
            Message::Ack(a) => self.on_ack(di, &a)?,
            Message::Leave(l) => self.on_leave(now, rng, di, &l)?,
            Message::RekeyNeeded(r) => self.on_rekey_needed(now, rng, di, &r)?,
            Message::KeyBundle(_) | Message::Removed(_) | Message::JoinChallenge(_) => {
                return Err(Error::UnexpectedKind);
            }
        };
        if fresh {
            Ok(Received::Fresh(id))
        } else {
            self.replays = self.replays.saturating_add(1);
            Ok(Received::Unproven(id))
        }
    }

    /// Queues a challenge for device `di`'s join request (nonce `echo`) to group `gid`: the
    /// outstanding one if there is one, else a fresh nonce from `rng`. Changes nothing but the
    /// in-memory challenge table and queue.
    ///
    /// An outstanding challenge is sent again rather than replaced: replacing it on every
    /// unchallenged request would let a replayed request invalidate the challenge a genuine
    /// device is answering, and two requests of one device in flight (a retry crossing a
    /// challenge) would invalidate each other's challenges forever.
    fn challenge<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        di: usize,
        gid: u32,
        echo: [u8; NONCE_LEN],
    ) -> Result<(), Error> {
        if self.challenges_out.is_full() {
            return Err(Error::CapacityExceeded);
        }
        let dev = self.state.devices.get_mut(di).ok_or(Error::UnknownDevice)?;
        dev.challenges.retain(|c| c.expires_at > now.0);
        let nonce = match dev.challenges.iter().find(|c| c.group_id == gid) {
            Some(c) => c.nonce,
            None => {
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill_bytes(&mut nonce);
                dev.challenges
                    .push(Challenge {
                        group_id: gid,
                        nonce,
                        expires_at: now.0.saturating_add(CHALLENGE_TTL_MS),
                    })
                    .map_err(|_| Error::CapacityExceeded)?;
                nonce
            }
        };
        let out = ChallengeOut {
            device: dev.id,
            group_id: gid,
            echo,
            nonce,
        };
        self.challenges_out
            .push_back(out)
            .map_err(|_| Error::CapacityExceeded)?;
        self.challenges_issued = self.challenges_issued.saturating_add(1);
        Ok(())
    }

    /// Checks that a device message refers to the device's current membership in the group.
    fn check_fresh(&self, di: usize, group_id: u32, counter: u64) -> Result<usize, Error> {
        let dev = self.state.devices.get(di).ok_or(Error::UnknownDevice)?;
        let mi = dev
            .memberships
            .iter()
            .position(|m| m.group_id == group_id)
            .ok_or(Error::NotMember)?;
        let m = dev.memberships.get(mi).ok_or(Error::NotMember)?;
        if counter < m.since || counter >= self.next_counter {
            return Err(Error::Stale);
        }
        Ok(mi)
    }

    /// A join request. `None`: challenged (nothing changed); `Some(fresh)` otherwise.
    fn on_join<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        di: usize,
        j: &JoinRequest,
    ) -> Result<Option<bool>, Error> {
        let gid = j.header.group_id;
        let gi = self.group_index(gid).ok_or(Error::UnknownGroup)?;
        let g = self.state.groups.get(gi).ok_or(Error::UnknownGroup)?;
        let dev = self.state.devices.get(di).ok_or(Error::UnknownDevice)?;
        // The key on file must be the one in the request (signed mode), or none (PSK).
        dev.credential.check_claimed_key(&j.public_key)?;
        if !dev.groups.contains(&gid) || !dev.role.allows(j.role) {
            return Err(Error::NotAdmitted);
        }
        if g.spec.policy.signatures_required && dev.credential.is_psk() {
            return Err(Error::PskWithSignatures);
        }
        if j.header.counter >= self.next_counter {
            return Err(Error::Stale);
        }
        let existing = dev.memberships.iter().position(|m| m.group_id == gid);
        // A retransmission of the request that made the current membership (its bundle was
        // lost): send the bundle again, change nothing else.
        if dev.last_join_nonce == Some(j.header.nonce)
            && let Some(mi) = existing
        {
            if let Some(m) = self
                .state
                .devices
                .get_mut(di)
                .and_then(|d| d.memberships.get_mut(mi))
            {
                m.retx = Retry::now(now);
            }
            return Ok(Some(false));
        }
        // Freshness (finding 1): a signature proves who wrote a request, not when. Only a
        // request covering an outstanding challenge of ours may change anything; any other
        // (a first request, or one captured at any time and replayed) just gets a challenge.
        let challenged = j.challenge.is_some_and(|c| {
            dev.challenges
                .iter()
                .any(|p| p.group_id == gid && p.nonce == c && p.expires_at > now.0)
        });
        if !challenged {
            self.challenge(now, rng, di, gid, j.header.nonce)?;
            return Ok(None);
        }
        let recovery = j.sequence_state_lost && j.role == Role::Sender;
        // A sender that joins again keeps its sender ID, so it must not get back an epoch it
        // may already have sent in: its sequence store may have been lost and re-created
        // empty (indistinguishable from a new device's), and it would start again at 0 under
        // the same (key, epoch, sid). Give it an epoch nobody has received.
        let rejoining_sender = j.role == Role::Sender
            && existing
                .and_then(|mi| dev.memberships.get(mi))
                .is_some_and(|m| m.sender_id.is_some());
        let fresh_needed = g.spec.rekey_on_join || recovery || rejoining_sender;
        let counter = self.next_counter;
        let mut next = self.state.clone();
        let (epoch, created) =
            Self::epoch_for_join(&mut next, counter, gi, now, rng, fresh_needed, recovery)?;
        // Sender ID: kept on a rejoin in the same role, otherwise allocated (and released).
        let old = existing.and_then(|mi| {
            next.devices
                .get(di)
                .and_then(|d| d.memberships.get(mi))
                .map(|m| (m.role, m.sender_id))
        });
        let g = next.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        let sender_id = match (old, j.role) {
            (Some((Role::Sender, Some(sid))), Role::Sender) => Some(sid),
            (old, role) => {
                if let Some((_, Some(sid))) = old {
                    // Its holder (this device) may get every epoch up to the newest.
                    let last_known = g.latest_epoch;
                    Self::release_sid(g, sid, last_known);
                }
                if role == Role::Sender {
                    Some(Self::alloc_sid(g, epoch)?)
                } else {
                    None
                }
            }
        };
        // The sender list changes for everyone when a sender ID comes or goes.
        let sid_changed = old.map_or(sender_id.is_some(), |(_, s)| s != sender_id);
        if sid_changed {
            g.changed_at = counter;
        }
        let senders = next
            .devices
            .iter()
            .flat_map(|d| d.memberships.iter())
            .filter(|m| m.group_id == gid && m.sender_id.is_some())
            .count();
        if sender_id.is_some() && old.is_none_or(|(_, s)| s.is_none()) && senders >= MAX_SENDERS {
            return Err(Error::CapacityExceeded);
        }
        let dev = next.devices.get_mut(di).ok_or(Error::UnknownDevice)?;
        // The challenge is used up (with the commit: a failed save keeps it).
        dev.challenges.retain(|c| c.group_id != gid);
        let membership = Membership {
            group_id: gid,
            role: j.role,
            sender_id,
            since: counter,
            acked: 0,
            acked_epoch: 0,
            join_nonce: Some(j.header.nonce),
            retx: Retry::now(now),
        };
        match existing.and_then(|mi| dev.memberships.get_mut(mi)) {
            Some(m) => *m = membership,
            None => dev
                .memberships
                .push(membership)
                .map_err(|_| Error::CapacityExceeded)?,
        }
        dev.last_join_nonce = Some(j.header.nonce);
        self.commit(next)?;
        if created {
            self.mark_group_due(gi, now);
            self.push_event(ServerEvent::EpochCreated {
                group_id: gid,
                epoch,
                cause: if recovery {
                    RekeyCause::Recovery
                } else {
                    RekeyCause::Join
                },
            });
        } else if sid_changed {
            self.mark_group_due(gi, now);
        }
        self.push_event(ServerEvent::Joined {
            device: j.header.device_id,
            group_id: gid,
            sender_id,
        });
        Ok(Some(true))
    }

    /// An acknowledgement. Fresh iff it is the first for a bundle emitted by this run (a
    /// counter above the last acknowledged one and at or above the first counter of this run:
    /// the acknowledged state is not persisted, so older counters prove nothing after a
    /// restart).
    fn on_ack(&mut self, di: usize, a: &Ack) -> Result<bool, Error> {
        let gid = a.header.group_id;
        let mi = self.check_fresh(di, gid, a.header.counter)?;
        let dev = self.state.devices.get_mut(di).ok_or(Error::UnknownDevice)?;
        let id = dev.id;
        let m = dev.memberships.get_mut(mi).ok_or(Error::NotMember)?;
        let fresh = a.header.counter > m.acked && a.header.counter >= self.boot_counter;
        if a.header.counter > m.acked {
            // Not persisted by itself: losing it only causes a retransmission after a crash.
            m.acked = a.header.counter;
            m.acked_epoch = a.epoch;
            m.join_nonce = None;
            m.retx.reset_timeout();
            self.push_event(ServerEvent::Acked {
                device: id,
                group_id: gid,
                epoch: a.epoch,
            });
        }
        Ok(fresh)
    }

    /// A leave. Fresh iff it ended the membership (that happens once).
    fn on_leave<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        di: usize,
        l: &Leave,
    ) -> Result<bool, Error> {
        let gid = l.header.group_id;
        let gi = self.group_index(gid).ok_or(Error::UnknownGroup)?;
        let dev = self.state.devices.get(di).ok_or(Error::UnknownDevice)?;
        if !dev.memberships.iter().any(|m| m.group_id == gid) {
            // Already out (the confirmation was lost, or this is a replay): confirm again.
            // Harmless: a device accepts `Removed` only while joined or leaving, and a device
            // that is a member again is handled above by the freshness check.
            if l.header.counter >= self.next_counter {
                return Err(Error::Stale);
            }
            let notice = Notice {
                device: dev.id,
                group_id: gid,
                reason: RemovedReason::Left,
                credential: dev.credential.clone(),
            };
            self.notices
                .push_back(notice)
                .map_err(|_| Error::CapacityExceeded)?;
            return Ok(false);
        }
        self.check_fresh(di, gid, l.header.counter)?;
        let mut next = self.state.clone();
        let epoch = Self::remove_member(&mut next, self.next_counter, di, gid, now, rng)?;
        let dev = next.devices.get(di).ok_or(Error::UnknownDevice)?;
        let notice = Notice {
            device: dev.id,
            group_id: gid,
            reason: RemovedReason::Left,
            credential: dev.credential.clone(),
        };
        self.commit(next)?;
        let _ = self.notices.push_back(notice);
        self.mark_group_due(gi, now);
        self.push_event(ServerEvent::Left {
            device: l.header.device_id,
            group_id: gid,
        });
        if let Some(e) = epoch {
            self.push_event(ServerEvent::EpochCreated {
                group_id: gid,
                epoch: e,
                cause: RekeyCause::Removal,
            });
        }
        Ok(true)
    }

    /// A rekey report. Fresh iff it started a rekey (a report about the current epoch with
    /// nothing staged: once acted upon, the epoch it names is no longer the newest).
    fn on_rekey_needed<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        di: usize,
        r: &RekeyNeeded,
    ) -> Result<bool, Error> {
        let gid = r.header.group_id;
        self.check_fresh(di, gid, r.header.counter)?;
        let gi = self.group_index(gid).ok_or(Error::UnknownGroup)?;
        let g = self.state.groups.get(gi).ok_or(Error::UnknownGroup)?;
        // Only a report on the newest epoch matters; a newer one is on its way otherwise.
        if g.staged.is_some() || g.current.as_ref().is_none_or(|c| c.epoch != r.epoch) {
            return Ok(false);
        }
        let mut next = self.state.clone();
        let e = Self::new_epoch(&mut next, self.next_counter, gi, now, rng)?;
        self.commit(next)?;
        self.mark_group_due(gi, now);
        self.push_event(ServerEvent::EpochCreated {
            group_id: gid,
            epoch: e,
            cause: RekeyCause::Report,
        });
        Ok(true)
    }

    // ---- time ---------------------------------------------------------------------------------

    /// Activates staged epochs whose time came and starts scheduled rotations.
    pub fn handle_timeout<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        for gi in 0..self.state.groups.len() {
            let Some(g) = self.state.groups.get(gi) else {
                continue;
            };
            let gid = g.spec.group_id;
            if g.staged.as_ref().is_some_and(|s| s.activate_at <= now.0) {
                let mut next = self.state.clone();
                let mut activated = 0;
                if let Some(g) = next.groups.get_mut(gi) {
                    let mut staged = g.staged.take();
                    if let Some(s) = staged.as_mut() {
                        activated = s.epoch;
                    }
                    g.current = staged;
                }
                self.commit(next)?;
                self.push_event(ServerEvent::EpochActivated {
                    group_id: gid,
                    epoch: activated,
                });
                continue;
            }
            let interval = g.spec.rotation_interval_ms;
            let has_members = self
                .state
                .devices
                .iter()
                .any(|d| d.memberships.iter().any(|m| m.group_id == gid));
            let due = interval > 0
                && g.staged.is_none()
                && has_members
                && g.current
                    .as_ref()
                    .is_some_and(|c| now.0 >= c.activate_at.saturating_add(interval));
            if due {
                let mut next = self.state.clone();
                let e = Self::new_epoch(&mut next, self.next_counter, gi, now, rng)?;
                self.commit(next)?;
                self.mark_group_due(gi, now);
                self.push_event(ServerEvent::EpochCreated {
                    group_id: gid,
                    epoch: e,
                    cause: RekeyCause::Scheduled,
                });
            }
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) or [`poll_transmit`](Self::poll_transmit)
    /// next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<u64> = None;
        let mut at = |v: u64| t = Some(t.map_or(v, |c| c.min(v)));
        if !self.notices.is_empty() || !self.challenges_out.is_empty() {
            at(0);
        }
        for g in &self.state.groups {
            if let Some(s) = &g.staged {
                at(s.activate_at);
            } else if g.spec.rotation_interval_ms > 0
                && let Some(c) = &g.current
            {
                at(c.activate_at.saturating_add(g.spec.rotation_interval_ms));
            }
        }
        for d in &self.state.devices {
            for m in &d.memberships {
                let pending = self
                    .state
                    .groups
                    .iter()
                    .find(|g| g.spec.group_id == m.group_id)
                    .is_some_and(|g| Self::pending(g, m));
                if pending {
                    at(m.retx.next_at());
                }
            }
        }
        t.map(Instant)
    }

    // ---- messages out -------------------------------------------------------------------------

    /// The next message to send, written to `buf` (at least
    /// [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN) bytes). Join challenges first, then removal
    /// notices, then due bundles (first transmissions and retransmissions with exponential
    /// backoff). A store failure is returned and nothing is emitted.
    pub fn poll_transmit<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, Error> {
        while let Some(c) = self.challenges_out.pop_front() {
            // A device revoked since is skipped.
            let Some(credential) = self
                .device_index(c.device)
                .and_then(|di| self.state.devices.get(di))
                .map(|d| d.credential.clone())
            else {
                continue;
            };
            let msg = Message::JoinChallenge(JoinChallenge {
                group_id: c.group_id,
                device_id: c.device,
                echo: c.echo,
                challenge: c.nonce,
            });
            let len = self.protect_for(&credential, &msg, buf)?;
            return Ok(Some(Transmit {
                device_id: c.device,
                len,
                kind: MessageKind::JoinChallenge,
            }));
        }
        if let Some(n) = self.notices.pop_front() {
            let counter = match self.take_counter() {
                Ok(c) => c,
                Err(e) => {
                    let _ = self.notices.push_front(n);
                    return Err(e);
                }
            };
            let msg = Message::Removed(Removed {
                header: ServerHeader {
                    group_id: n.group_id,
                    device_id: n.device,
                    counter,
                },
                reason: n.reason,
            });
            let len = self.protect_for(&n.credential, &msg, buf)?;
            return Ok(Some(Transmit {
                device_id: n.device,
                len,
                kind: MessageKind::Removed,
            }));
        }
        let Some((di, mi, gi)) = self.due(now) else {
            return Ok(None);
        };
        // The epoch is handed out: persist that before the bundle exists.
        let handed = self
            .state
            .groups
            .get(gi)
            .and_then(|g| g.newest())
            .is_some_and(|e| e.handed_out);
        if !handed {
            let mut next = self.state.clone();
            if let Some(g) = next.groups.get_mut(gi) {
                if let Some(s) = g.staged.as_mut() {
                    s.handed_out = true;
                } else if let Some(c) = g.current.as_mut() {
                    c.handed_out = true;
                }
            }
            self.commit(next)?;
        }
        let counter = self.take_counter()?;
        let (len, device_id) = self.build_bundle(di, mi, gi, counter, now, rng, buf)?;
        if let Some(m) = self
            .state
            .devices
            .get_mut(di)
            .and_then(|d| d.memberships.get_mut(mi))
        {
            m.retx.backoff(now);
        }
        Ok(Some(Transmit {
            device_id,
            len,
            kind: MessageKind::KeyBundle,
        }))
    }

    /// The first membership due for a bundle: (device, membership, group) indices.
    fn due(&self, now: Instant) -> Option<(usize, usize, usize)> {
        for (di, d) in self.state.devices.iter().enumerate() {
            for (mi, m) in d.memberships.iter().enumerate() {
                let Some(gi) = self.group_index(m.group_id) else {
                    continue;
                };
                let Some(g) = self.state.groups.get(gi) else {
                    continue;
                };
                if Self::pending(g, m) && m.retx.due(now) {
                    return Some((di, mi, gi));
                }
            }
        }
        None
    }

    fn protect_for(
        &self,
        credential: &DeviceCredential,
        msg: &Message,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        Credential::for_device(&self.creds, credential)?.protect(msg, buf)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_bundle<R: CryptoRng + ?Sized>(
        &self,
        di: usize,
        mi: usize,
        gi: usize,
        counter: u64,
        now: Instant,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Result<(usize, DeviceId), Error> {
        let g = self.state.groups.get(gi).ok_or(Error::UnknownGroup)?;
        let d = self.state.devices.get(di).ok_or(Error::UnknownDevice)?;
        let m = d.memberships.get(mi).ok_or(Error::NotMember)?;
        let e = g.newest().ok_or(Error::UnknownGroup)?;
        let gid = g.spec.group_id;
        let mut senders: Vec<SenderEntry, MAX_SENDERS> = Vec::new();
        for od in &self.state.devices {
            for om in od.memberships.iter().filter(|om| om.group_id == gid) {
                let Some(sid) = om.sender_id else { continue };
                let public_key = if g.spec.policy.signatures_required {
                    od.credential.compressed_key().copied()
                } else {
                    None
                };
                senders
                    .push(SenderEntry {
                        sender_id: sid,
                        public_key,
                    })
                    .map_err(|_| Error::CapacityExceeded)?;
            }
        }
        senders.sort_unstable_by_key(|s| s.sender_id);
        let header = ServerHeader {
            group_id: gid,
            device_id: d.id,
            counter,
        };
        let sealed = Credential::for_device(&self.creds, &d.credential)?.seal_secret(
            rng,
            &header,
            e.epoch,
            g.spec.suite.0,
            &e.material,
        )?;
        let activate_in = e.activate_at.saturating_sub(now.0);
        let msg = Message::KeyBundle(KeyBundle {
            header,
            echo: m.join_nonce,
            epoch: e.epoch,
            suite: g.spec.suite.0,
            sender_id: m.sender_id,
            policy: g.spec.policy,
            activate_in_ms: u32::try_from(activate_in).unwrap_or(u32::MAX),
            lifetime_ms: g.spec.lifetime_ms,
            senders,
            stale: g.stale.clone(),
            sealed,
        });
        let len = self.protect_for(&d.credential, &msg, buf)?;
        Ok((len, d.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keydist::store::MemoryServerStore;
    use crate::sequence::StoreError;
    use p256::ecdsa::SigningKey;

    /// Deterministic test RNG (not cryptographic).
    struct Xs(u64);
    impl rand_core::TryRng for Xs {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
            for b in d {
                *b = self.try_next_u64()? as u8;
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for Xs {}

    fn group() -> GroupRec {
        GroupRec {
            spec: GroupSpec::new(1, Suite::AES_128_CCM),
            latest_epoch: 1,
            current: None,
            staged: None,
            changed_at: 0,
            next_fresh_sid: 1,
            released: Vec::new(),
            stale: Vec::new(),
        }
    }

    type Ks = KeyServer<MemoryServerStore, 4, 2, 4096>;

    fn server() -> Ks {
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        Ks::open(ServerCredentials::new(key), MemoryServerStore::new()).unwrap()
    }

    #[test]
    fn sender_ids_fresh_first_then_quarantined() {
        let mut g = group();
        let mut seen = [false; 256];
        for _ in 0..255 {
            let s = KeyServer::<MemoryServerStore>::alloc_sid(&mut g, 1).unwrap();
            assert!(s != 0 && !seen[usize::from(s)]);
            seen[usize::from(s)] = true;
        }
        assert_eq!(
            KeyServer::<MemoryServerStore>::alloc_sid(&mut g, 1),
            Err(Error::SenderIdsExhausted)
        );
        // Sid 9's holder knew epochs up to 5: reusable from epoch 7 on, not before.
        g.latest_epoch = 5;
        KeyServer::<MemoryServerStore>::release_sid(&mut g, 9, 5);
        assert_eq!(g.stale.as_slice(), &[9]);
        for e in [5, 6] {
            assert_eq!(
                KeyServer::<MemoryServerStore>::alloc_sid(&mut g, e),
                Err(Error::SenderIdsExhausted)
            );
        }
        assert_eq!(KeyServer::<MemoryServerStore>::alloc_sid(&mut g, 7), Ok(9));
        assert_eq!(
            KeyServer::<MemoryServerStore>::alloc_sid(&mut g, 7),
            Err(Error::SenderIdsExhausted)
        );
    }

    #[test]
    fn joiners_get_epochs_nobody_sent_in() {
        let mut s = server();
        let mut rng = Xs(3);
        let now = Instant(100);
        s.create_group(GroupSpec::new(1, Suite::AES_128_CCM), now, &mut rng)
            .unwrap();
        let c = s.next_counter;
        let mut st = s.state.clone();
        // Epoch 1 is current and nobody has it: a joiner may have it.
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, now, &mut rng, true, false),
            Ok((1, false))
        );
        // Once handed out, a joiner needs a new epoch; it is staged until now + 2 s, and
        // further joiners share it until then.
        st.groups[0].current.as_mut().unwrap().handed_out = true;
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, now, &mut rng, true, false),
            Ok((2, true))
        );
        st.groups[0].staged.as_mut().unwrap().handed_out = true;
        let later = Instant(100 + 1_999);
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, later, &mut rng, true, false),
            Ok((2, false))
        );
        // At its activation time traffic may exist in it: a new one, activating no later.
        let at = Instant(100 + 2_000);
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, at, &mut rng, true, false),
            Ok((3, true))
        );
        assert_eq!(st.groups[0].staged.as_ref().unwrap().activate_at, 2_100);
        // Without rekey-on-join the newest epoch is fine; a recovery always needs one that
        // nobody has received.
        st.groups[0].staged.as_mut().unwrap().handed_out = true;
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, at, &mut rng, false, false),
            Ok((3, false))
        );
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, now, &mut rng, true, true),
            Ok((4, true))
        );
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, now, &mut rng, true, true),
            Ok((4, false))
        );
        // Epochs never wrap.
        st.groups[0].latest_epoch = u16::MAX;
        st.groups[0].staged.as_mut().unwrap().handed_out = true;
        assert_eq!(
            Ks::epoch_for_join(&mut st, c, 0, now, &mut rng, true, true),
            Err(Error::EpochsExhausted)
        );
    }

    #[test]
    fn failed_saves_change_nothing() {
        let mut s = server();
        let mut rng = Xs(5);
        s.create_group(GroupSpec::new(1, Suite::AES_128_CCM), Instant(0), &mut rng)
            .unwrap();
        s.store.crash_after(0);
        let key = SigningKey::from_slice(&[9; 32]).unwrap();
        let cred = DeviceCredential::public_key(key.verifying_key());
        assert_eq!(
            s.admit_device(DeviceId(1), cred.clone(), Role::Sender, &[1]),
            Err(Error::Store(StoreError::Io))
        );
        assert!(s.device_index(DeviceId(1)).is_none());
        assert_eq!(
            s.rekey(1, Instant(0), &mut rng),
            Err(Error::Store(StoreError::Io))
        );
        assert_eq!(s.latest_epoch(1), Some(1));
        s.store.restore_power();
        s.admit_device(DeviceId(1), cred, Role::Sender, &[1])
            .unwrap();
        assert_eq!(s.rekey(1, Instant(0), &mut rng), Ok(2));
        // A restart resumes where the store is; counters jump past the reservation.
        let reserved = s.state.counter_reserved;
        let store = s.into_store();
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        let s = Ks::open(ServerCredentials::new(key), store).unwrap();
        assert_eq!(s.latest_epoch(1), Some(2));
        assert_eq!(s.next_counter, reserved);
    }

    #[test]
    fn lost_or_corrupt_state_is_refused() {
        struct Lost;
        impl ServerStore for Lost {
            fn load(&mut self, _: &mut [u8]) -> Result<Option<usize>, StoreError> {
                Err(StoreError::Missing)
            }
            fn save(&mut self, _: &[u8]) -> Result<(), StoreError> {
                Ok(())
            }
        }
        struct Garbage;
        impl ServerStore for Garbage {
            fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError> {
                buf[..3].copy_from_slice(&[1, 0xff, 0xff]);
                Ok(Some(3))
            }
            fn save(&mut self, _: &[u8]) -> Result<(), StoreError> {
                Ok(())
            }
        }
        let key = || ServerCredentials::new(SigningKey::from_slice(&[7; 32]).unwrap());
        assert_eq!(
            KeyServer::<Lost>::open(key(), Lost).err(),
            Some(Error::Store(StoreError::Missing))
        );
        assert_eq!(
            KeyServer::<Garbage>::open(key(), Garbage).err(),
            Some(Error::StateCorrupt)
        );
    }
}
