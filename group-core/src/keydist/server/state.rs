//! The key server's persistent records and their pure operations: a group with its epochs and
//! sender IDs ([`GroupRec`]), an admitted device ([`DeviceRec`]), a device's admission to one
//! group and its membership there ([`MemberRec`]), the server's counters ([`Meta`]). Each is stored as one row (postcard) of its table. Operations
//! here work on staged copies of the records a transaction touches (never on the live ones),
//! take `now`, the next server counter and the caller's random generator as arguments, and do
//! no I/O.
//!
//! Invariants kept here (checked by the crash tests):
//! - an epoch number is created once per group and never again ([`GroupRec::new_epoch`]);
//! - a sender ID is never given to two devices under the same key material: fresh IDs are
//!   handed out first; a released ID returns only in an epoch at least two above the newest
//!   epoch its previous holder could know ([`GroupRec::alloc_sid`], [`GroupRec::release_sid`]).

use heapless::Vec;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use super::super::credential::DeviceCredential;
use super::super::error::Error;
use super::super::message::{Bytes, KeyMaterial};
use super::super::retry::Retry;
use super::super::vocabulary::{DeviceId, MAX_STALE, NONCE_LEN, Role};
use super::spec::{GroupSpec, KeySchedule};
use crate::time::Instant;

/// Format byte of the stored records (in [`Meta`]). Format 1 was one blob holding the whole
/// state ([`LegacyState`]), converted on first start by [`migrate_v1`](super::migrate_v1);
/// format 2 kept each device's groups and memberships inline in its row, converted by
/// [`migrate_v2_row`](super::migrate_v2_row).
pub(super) const STATE_FORMAT: u8 = 3;
/// Format byte of the records of format 2 (memberships inside the device rows).
pub(super) const V2_FORMAT: u8 = 2;
/// Format byte of the single-blob state before issue 16.
pub(super) const LEGACY_FORMAT: u8 = 1;
/// Released sender IDs remembered for reuse.
const RELEASED_CAP: usize = 32;

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct EpochRec {
    pub(super) epoch: u16,
    pub(super) material: KeyMaterial,
    /// When it became (or becomes) current, on the server's clock.
    pub(super) activate_at: u64,
    /// Whether a bundle ever carried it (persisted before that bundle was emitted). A current
    /// epoch nobody got can go to a joiner without breaking backward secrecy.
    pub(super) handed_out: bool,
}

/// A group's record: its spec, epochs and sender-ID allocation (one row of the groups table).
/// Opaque outside the key server; a [`ServerTables`](super::ServerTables) implementation keeps
/// it by [`group_id`](Self::group_id).
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupRec {
    pub(super) spec: GroupSpec,
    /// Highest epoch ever created (persisted before use).
    pub(super) latest_epoch: u16,
    pub(super) current: Option<EpochRec>,
    pub(super) staged: Option<EpochRec>,
    /// Bundles with a counter at or above this carry the group's present content.
    pub(super) changed_at: u64,
    /// Next never-used sender ID (1..=255; 256 = none left).
    pub(super) next_fresh_sid: u16,
    /// Released sender IDs with the newest epoch their holder could know.
    pub(super) released: Vec<(u8, u16), RELEASED_CAP>,
    /// Sender IDs released since the current epoch (RFC 9594 stale_node_ids).
    pub(super) stale: Vec<u8, MAX_STALE>,
}

/// A device's membership of one group (inside its [`MemberRec`]).
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Membership {
    pub(super) role: Role,
    pub(super) sender_id: Option<u8>,
    /// Server counter when this membership began: device messages must refer to a counter at
    /// or above it; every bundle of it has a counter at or above it.
    pub(super) since: u64,
    /// Highest bundle counter acknowledged (0: none). Not persisted on its own: after a crash
    /// unacknowledged-looking bundles are simply sent again.
    pub(super) acked: u64,
    /// Epoch of that bundle.
    pub(super) acked_epoch: u16,
    /// Join nonce echoed until the first acknowledgement.
    pub(super) join_nonce: Option<[u8; NONCE_LEN]>,
    /// Nonce of the join request that made this membership (a retransmission of it gets the
    /// bundle again and changes nothing).
    pub(super) request_nonce: [u8; NONCE_LEN],
    #[serde(skip)]
    pub(super) retx: Retry,
}

/// An admitted device's record: credential and role (one row of the devices table). The
/// groups it may join and its memberships are [`MemberRec`]s of their own. Opaque outside the
/// key server; a [`ServerTables`](super::ServerTables) implementation keeps it by
/// [`id`](Self::id).
#[derive(Clone, Serialize, Deserialize)]
pub struct DeviceRec {
    pub(super) id: DeviceId,
    pub(super) credential: DeviceCredential,
    pub(super) role: Role,
}

/// A device's admission to one group and, while it is a member, its membership (one row of
/// the memberships table, keyed by (device, group): [`member_key`](crate::keydist::member_key)).
/// Exists for every group the device may join, from its admission to its revocation; a join
/// or a leave changes only this record and the group's. Opaque outside the key server; a
/// [`ServerTables`](super::ServerTables) implementation keeps it by
/// ([`device`](Self::device), [`group_id`](Self::group_id)).
#[derive(Clone, Serialize, Deserialize)]
pub struct MemberRec {
    pub(super) device: DeviceId,
    pub(super) group_id: u32,
    pub(super) joined: Option<Membership>,
    /// The outstanding join challenge of this device for this group. Not persisted (after a
    /// restart the device is simply challenged again).
    #[serde(skip)]
    pub(super) challenge: Option<Challenge>,
}

/// The server's own row (counters table): format and counter reservation.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Meta {
    pub(super) format: u8,
    /// Every counter below this may have been used.
    pub(super) counter_reserved: u64,
}

/// The whole state as one blob (format 1, before issue 16): read only to migrate it.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct LegacyState<const D: usize, const G: usize> {
    pub(super) format: u8,
    /// Every counter below this may have been used.
    pub(super) counter_reserved: u64,
    pub(super) groups: Vec<GroupRec, G>,
    pub(super) devices: Vec<DeviceRecV2<G>, D>,
}

/// A membership as formats 1 and 2 stored it (inside its device's row): read only to migrate.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct MembershipV2 {
    pub(super) group_id: u32,
    pub(super) role: Role,
    pub(super) sender_id: Option<u8>,
    pub(super) since: u64,
    pub(super) acked: u64,
    pub(super) acked_epoch: u16,
    pub(super) join_nonce: Option<[u8; NONCE_LEN]>,
}

/// A device row of formats 1 and 2: the groups it may join and its memberships inline, at
/// most `G` each. Read only to migrate.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct DeviceRecV2<const G: usize> {
    pub(super) id: DeviceId,
    pub(super) credential: DeviceCredential,
    pub(super) role: Role,
    pub(super) groups: Vec<u32, G>,
    pub(super) last_join_nonce: Option<[u8; NONCE_LEN]>,
    pub(super) memberships: Vec<MembershipV2, G>,
}

/// A challenge the key server issued and still accepts (in memory only: after a restart the
/// device is simply challenged again).
#[derive(Clone, Copy, Default)]
pub(super) struct Challenge {
    pub(super) group_id: u32,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) expires_at: u64,
}

impl EpochRec {
    /// A new epoch with fresh key material for `schedule`, not handed out yet.
    pub(super) fn fresh<R: CryptoRng + ?Sized>(
        epoch: u16,
        schedule: KeySchedule,
        activate_at: u64,
        rng: &mut R,
    ) -> Self {
        Self {
            epoch,
            material: fresh_material(schedule, rng),
            activate_at,
            handed_out: false,
        }
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

impl GroupRec {
    /// A new group whose first epoch is current at once; `counter` is the next server counter.
    pub(super) fn new<R: CryptoRng + ?Sized>(
        spec: GroupSpec,
        counter: u64,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        Self {
            spec,
            latest_epoch: 1,
            current: Some(EpochRec::fresh(1, spec.schedule, now.0, rng)),
            staged: None,
            changed_at: counter,
            next_fresh_sid: 1,
            released: Vec::new(),
            stale: Vec::new(),
        }
    }

    /// The newest epoch: the staged one, else the current one.
    pub(super) fn newest(&self) -> Option<&EpochRec> {
        self.staged.as_ref().or(self.current.as_ref())
    }

    /// Whether member `m` still has to acknowledge this group's present content.
    pub(super) fn is_pending(&self, m: &Membership) -> bool {
        m.acked < m.since.max(self.changed_at)
    }

    /// Allocates a sender ID usable in `epoch` and later.
    pub(super) fn alloc_sid(&mut self, epoch: u16) -> Result<u8, Error> {
        if let Ok(sid) = u8::try_from(self.next_fresh_sid) {
            self.next_fresh_sid = self.next_fresh_sid.saturating_add(1);
            return Ok(sid);
        }
        let i = self
            .released
            .iter()
            .position(|(_, last)| u32::from(*last).saturating_add(2) <= u32::from(epoch))
            .ok_or(Error::SenderIdsExhausted)?;
        let (sid, _) = self.released.remove(i);
        Ok(sid)
    }

    /// Releases `sid`, whose holder could know epochs up to `last_known`, and lists it as
    /// stale. Call it after creating the epoch that announces the release: `new_epoch` clears
    /// the stale list when nothing was staged, so a sid released before it would never be
    /// announced (issue 10, finding 7).
    pub(super) fn release_sid(&mut self, sid: u8, last_known: u16) {
        // If the list is full the ID is simply never reused (the safe direction).
        let _ = self.released.push((sid, last_known));
        if !self.stale.contains(&sid) {
            let _ = self.stale.push(sid);
        }
    }
}

impl GroupRec {
    /// The group's ID (its key in the groups table).
    pub fn group_id(&self) -> u32 {
        self.spec.group_id
    }

    /// The server counter of the group's last change of content (a new epoch, a sender list
    /// change): members that acknowledged less still need a bundle.
    pub fn changed_at(&self) -> u64 {
        self.changed_at
    }

    /// When this group next has work: its staged epoch's activation, else its scheduled
    /// rotation (only if `has_members` says it has any).
    pub fn timer(&self, has_members: impl FnOnce() -> bool) -> Option<u64> {
        if let Some(s) = &self.staged {
            return Some(s.activate_at);
        }
        let interval = self.spec.rotation_interval_ms;
        let c = self.current.as_ref()?;
        (interval > 0 && has_members()).then(|| c.activate_at.saturating_add(interval))
    }

    /// Creates a fresh staged epoch; `counter` is the next server counter. Returns its number.
    pub(super) fn new_epoch<R: CryptoRng + ?Sized>(
        &mut self,
        counter: u64,
        now: Instant,
        rng: &mut R,
    ) -> Result<u16, Error> {
        let epoch = self
            .latest_epoch
            .checked_add(1)
            .ok_or(Error::EpochsExhausted)?;
        let mut activate_at = now
            .0
            .saturating_add(u64::from(self.spec.activation_delay_ms));
        match self.staged.take() {
            // A staged epoch being replaced: switch no later than it would have.
            Some(old) => activate_at = activate_at.min(old.activate_at),
            None => self.stale.clear(),
        }
        self.staged = Some(EpochRec::fresh(epoch, self.spec.schedule, activate_at, rng));
        self.latest_epoch = epoch;
        self.changed_at = counter;
        Ok(epoch)
    }

    /// An epoch a joiner may get: one nobody has received yet; or, unless `recovery`, the staged
    /// epoch before its activation time (nobody sends in it before then: members activate at
    /// reception + the remaining delay) or any epoch if `fresh_needed` is off. Otherwise a new
    /// epoch is created. Returns (epoch, created).
    pub(super) fn epoch_for_join<R: CryptoRng + ?Sized>(
        &mut self,
        counter: u64,
        now: Instant,
        rng: &mut R,
        fresh_needed: bool,
        recovery: bool,
    ) -> Result<(u16, bool), Error> {
        let usable = |e: &EpochRec, staged: bool| {
            !e.handed_out || (!recovery && (!fresh_needed || (staged && e.activate_at > now.0)))
        };
        let reuse = match (&self.staged, &self.current) {
            (Some(st), _) => usable(st, true).then_some(st.epoch),
            (None, Some(c)) => usable(c, false).then_some(c.epoch),
            (None, None) => None,
        };
        if let Some(e) = reuse {
            return Ok((e, false));
        }
        let e = self.new_epoch(counter, now, rng)?;
        Ok((e, true))
    }
}

impl DeviceRec {
    /// The device's ID (its key in the devices table).
    pub fn id(&self) -> DeviceId {
        self.id
    }
}

impl MemberRec {
    /// The device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The group.
    pub fn group_id(&self) -> u32 {
        self.group_id
    }

    /// Whether the device is a member of the group now (not only admitted to it).
    pub fn is_member(&self) -> bool {
        self.joined.is_some()
    }

    /// Its sender ID in the group, if it is a member there and a sender.
    pub fn sender_id(&self) -> Option<u8> {
        self.joined.as_ref().and_then(|m| m.sender_id)
    }

    /// When its bundle is due, if it is a member that still has to acknowledge `group`'s
    /// present content (`group` must be this record's group).
    pub fn due_at(&self, group: &GroupRec) -> Option<u64> {
        let m = self.joined.as_ref()?;
        group.is_pending(m).then(|| m.retx.next_at())
    }

    /// Whether it has a join challenge outstanding at `now` (ms on the server's clock).
    pub fn has_challenge(&self, now: u64) -> bool {
        self.challenge.is_some_and(|c| c.expires_at > now)
    }
}

/// Ends membership `m` in group `g` (both staged copies) and rekeys the group: a fresh epoch
/// secret even if nobody is left (the removed device holds the old one). Returns the new
/// epoch.
pub(super) fn remove_member<R: CryptoRng + ?Sized>(
    counter: u64,
    m: &mut MemberRec,
    g: &mut GroupRec,
    now: Instant,
    rng: &mut R,
) -> Result<u16, Error> {
    let joined = m.joined.take().ok_or(Error::NotMember)?;
    // The newest epoch the removed device could know: the one before the new epoch.
    let last_known = g.latest_epoch;
    // The epoch first, then the release: the bundles of this epoch announce the removal,
    // so its stale list must name the released sid.
    let epoch = g.new_epoch(counter, now, rng)?;
    if let Some(sid) = joined.sender_id {
        g.release_sid(sid, last_known);
    }
    Ok(epoch)
}
