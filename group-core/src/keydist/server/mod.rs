//! The key server: a sans-IO state machine (docs/key-distribution.md §6).
//!
//! It holds groups (ID, suite, policy, epochs), admitted devices (credential, role) and, per
//! (device, group) the device is admitted to, its membership (sender ID, acknowledgement
//! state) as records in [`ServerTables`]. Every change goes through a [`ServerStore`]
//! *before* any message that depends on it is emitted: an operation stages copies of the
//! records it changes (a transaction: at most one device, up to `G` groups and `G` (device,
//! group) records, the counter reservation), the store commits exactly those rows in one
//! transaction, and only then do they replace the live records. A commit that fails leaves the
//! server exactly as it was. An operation's cost does not depend on how many devices and
//! groups the server holds (with indexed tables, as group-std's), only on what it touches
//! (and on the members of the group it rekeys).
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
//!   poll_outgoing(now, rng, buf)      the same, a bundle's public-key work left to the caller
//!   poll_timeout()                    when to call handle_timeout / poll_transmit again
//!   poll_event()                      what happened
//! ```
//! The server's `now` is persisted (activation and rotation times): use a clock that survives
//! restarts (e.g. UNIX time in ms), unlike the members, whose clocks may start anywhere.
//!
//! ```text
//!   spec      GroupSpec, KeySchedule: a group as the key server runs it
//!   state     the records (GroupRec, DeviceRec, MemberRec, Meta) and their pure operations
//!   tables    ServerTables (live records, by ID) and HeaplessTables (fixed capacity)
//!   txn       Txn: the staged records of one operation
//!   legacy    migrate_v1, migrate_v2_row: states of formats 1 and 2 as records of format 3
//!   admin     operator requests: create_group, admit_device, revoke_device, rekey; queries
//!   inbound   handle_message: join (validate, plan, apply), ack, leave, rekey report
//!   timers    handle_timeout, poll_timeout: activation and scheduled rotation
//!   outbound  poll_transmit: challenges, removal notices, bundles with backoff
//!   jobs      poll_outgoing's BundleJob: a bundle's public-key work, sealable on any thread
//! ```

mod admin;
mod inbound;
mod jobs;
mod legacy;
mod outbound;
mod spec;
mod state;
mod tables;
#[cfg(test)]
mod tests;
mod timers;
mod txn;

use core::fmt;

use heapless::{Deque, Vec};
use p256::ecdsa::VerifyingKey;
use rand_core::CryptoRng;
use zeroize::Zeroize;

use super::credential::ServerCredentials;
use super::error::Error;
use super::retry::Retry;
use super::store::{Row, ServerStore, Table, member_key};
use super::vocabulary::DeviceId;
use crate::sequence::StoreError;
use crate::time::Instant;
use outbound::{ChallengeOut, Notice, PartsOut};
use state::{Meta, STATE_FORMAT};
use txn::{DeviceChange, MemberChange, Txn};

pub use inbound::Received;
pub use jobs::{BundleJob, Outgoing};
pub use legacy::{migrate_v1, migrate_v2_row, state_format};
pub use outbound::Transmit;
pub use spec::{GroupSpec, KeySchedule};
pub use state::{DeviceRec, GroupRec, MemberRec};
pub use tables::{HeaplessTables, ServerTables};

/// Server counters reserved per store write.
const COUNTER_STEP: u64 = 64;
/// Queued removal notices.
const NOTICE_CAP: usize = 8;
/// Queued events.
const EVENT_CAP: usize = 32;
/// Most rows one transaction writes (a revocation step: the device, `G` groups, `G` (device,
/// group) records, and the counters): a `KeyServer` with `G` above 32 is refused at commit.
const TXN_ROWS: usize = 66;
/// Queued `SenderKeys` continuations (one per bundle whose list was split; they go out before
/// the next bundle is polled, so one is queued at a time in practice).
const PARTS_OUT_CAP: usize = 4;
/// Queued join challenges (a full queue refuses further unchallenged joins until it drains).
const CHALLENGE_OUT_CAP: usize = 16;
/// How long a join challenge stays valid (ms on the server's clock). The device answers at
/// once; an answer that comes later (lost, then retried after a long backoff) gets a new one.
pub const CHALLENGE_TTL_MS: u64 = 60_000;

/// Why the server created an epoch.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// The key server. Its live records are in `T` ([`ServerTables`]): by default
/// [`HeaplessTables`]`<32, G>` (32 devices, `G` groups, 128 (device, group) admissions, no
/// allocation); group-std's daemon uses unbounded tables, where a device may be in any number
/// of groups. One transaction stages up to `G` groups and `G` (device, group) records (at
/// most 32: admitting or revoking a device in more groups takes several transactions); its
/// rows are encoded into a `B`-byte buffer (one device and `G` groups must fit).
pub struct KeyServer<
    St: ServerStore,
    const G: usize = 4,
    T: ServerTables = HeaplessTables<32, G>,
    const B: usize = 16384,
> {
    creds: ServerCredentials,
    store: St,
    tables: T,
    /// Every counter below this may have been used (persisted).
    counter_reserved: u64,
    /// Whether the store holds the server's own row (written with the first commit).
    meta_written: bool,
    next_counter: u64,
    scratch: [u8; B],
    notices: Deque<Notice, NOTICE_CAP>,
    events: Deque<ServerEvent, EVENT_CAP>,
    events_dropped: u64,
    challenges_out: Deque<ChallengeOut, CHALLENGE_OUT_CAP>,
    /// Bundles whose sender keys still have parts to go out (in memory: a lost or forgotten
    /// part is sent again with the bundle's retransmission).
    parts_out: Deque<PartsOut, PARTS_OUT_CAP>,
    /// The first counter this run may use: counters below may have been used before a restart.
    boot_counter: u64,
    /// See [`set_join_update_delay_ms`](Self::set_join_update_delay_ms).
    join_update_delay_ms: u64,
    replays: u64,
    challenges_issued: u64,
}

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> fmt::Debug
    for KeyServer<St, G, T, B>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyServer")
            .field("groups", &self.tables.group_count())
            .field("devices", &self.tables.device_count())
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

/// Why a load stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LoadFault {
    None,
    Corrupt,
    Full,
}

impl<St: ServerStore, const G: usize, T: ServerTables + Default, const B: usize>
    KeyServer<St, G, T, B>
{
    /// Starts the key server from its store: a commissioned empty store gives an empty server;
    /// stored records are resumed; a store that lost its state, or records that do not decode,
    /// are refused (starting empty would reuse epochs and sender IDs).
    pub fn open(creds: ServerCredentials, store: St) -> Result<Self, Error> {
        Self::open_with(creds, store, T::default())
    }
}

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
    /// [`open`](Self::open) into the given (empty) tables.
    pub fn open_with(
        creds: ServerCredentials,
        mut store: St,
        mut tables: T,
    ) -> Result<Self, Error> {
        let mut meta: Option<Meta> = None;
        let mut fault = LoadFault::None;
        let written = store.load(&mut |table, key, bytes| {
            let ok = match table {
                Table::Counters => match postcard::from_bytes::<Meta>(bytes) {
                    Ok(m) if key == 0 && m.format == STATE_FORMAT => {
                        meta = Some(m);
                        true
                    }
                    _ => false,
                },
                Table::Groups => match postcard::from_bytes::<GroupRec>(bytes) {
                    Ok(g) if u64::from(g.group_id()) == key => {
                        if !tables.has_room(1, 0, 0) {
                            fault = LoadFault::Full;
                            return Err(StoreError::Corrupt);
                        }
                        tables.put_group(g);
                        true
                    }
                    _ => false,
                },
                Table::Devices => match postcard::from_bytes::<DeviceRec>(bytes) {
                    Ok(d) if u64::from(d.id().0) == key => {
                        if !tables.has_room(0, 1, 0) {
                            fault = LoadFault::Full;
                            return Err(StoreError::Corrupt);
                        }
                        tables.put_device(d);
                        true
                    }
                    _ => false,
                },
                Table::Memberships => match postcard::from_bytes::<MemberRec>(bytes) {
                    Ok(m) if member_key(m.device().0, m.group_id()) == key => {
                        if !tables.has_room(0, 0, 1) {
                            fault = LoadFault::Full;
                            return Err(StoreError::Corrupt);
                        }
                        tables.put_member(m);
                        true
                    }
                    _ => false,
                },
            };
            if ok {
                Ok(())
            } else {
                fault = LoadFault::Corrupt;
                Err(StoreError::Corrupt)
            }
        });
        match (fault, written) {
            (LoadFault::Full, _) => return Err(Error::CapacityExceeded),
            (LoadFault::Corrupt, _) => return Err(Error::StateCorrupt),
            (LoadFault::None, Err(e)) => return Err(Error::Store(e)),
            (LoadFault::None, Ok(_)) => {}
        }
        let counter_reserved = match (written, meta) {
            (Ok(false), _) => 1,
            (Ok(true), Some(m)) => m.counter_reserved,
            // Records without the server's own row: not a state this server wrote.
            (_, None) | (Err(_), _) => return Err(Error::StateCorrupt),
        };
        let next_counter = counter_reserved.max(1);
        Ok(Self {
            creds,
            store,
            tables,
            counter_reserved,
            meta_written: written == Ok(true),
            next_counter,
            scratch: [0u8; B],
            notices: Deque::new(),
            events: Deque::new(),
            events_dropped: 0,
            challenges_out: Deque::new(),
            parts_out: Deque::new(),
            boot_counter: next_counter,
            join_update_delay_ms: 0,
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

    /// The live records.
    pub fn tables(&self) -> &T {
        &self.tables
    }

    /// How many devices are admitted.
    pub fn device_count(&self) -> usize {
        self.tables.device_count()
    }

    /// How many groups there are.
    pub fn group_count(&self) -> usize {
        self.tables.group_count()
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

    /// Join challenges issued and not used up (in memory; at most one per device and group;
    /// counts every admission record).
    pub fn outstanding_challenges(&self) -> usize {
        self.tables
            .all_members()
            .filter(|m| m.challenge.is_some())
            .count()
    }

    fn push_event(&mut self, e: ServerEvent) {
        if self.events.push_back(e).is_err() {
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
    }

    /// Commits `txn`'s records to the store in one transaction, then makes them live; on
    /// failure nothing changes.
    fn commit(&mut self, mut txn: Txn<G>) -> Result<(), Error> {
        if !self.meta_written && txn.counter_reserved.is_none() {
            txn.counter_reserved = Some(self.counter_reserved);
        }
        let new_groups = txn
            .groups
            .iter()
            .filter(|g| self.tables.group(g.group_id()).is_none())
            .count();
        let new_device = match &txn.device {
            Some(DeviceChange::Put(d)) => usize::from(self.tables.device(d.id()).is_none()),
            _ => 0,
        };
        let new_members = txn
            .members
            .iter()
            .filter(|c| match c {
                MemberChange::Put(m) => self.tables.member(m.device(), m.group_id()).is_none(),
                MemberChange::Remove(..) => false,
            })
            .count();
        if !self.tables.has_room(new_groups, new_device, new_members) {
            return Err(Error::CapacityExceeded);
        }
        let result = self.write_rows(&txn);
        result?;
        if let Some(c) = txn.counter_reserved {
            self.counter_reserved = c;
            self.meta_written = true;
        }
        for g in txn.groups {
            self.tables.put_group(g);
        }
        match txn.device {
            Some(DeviceChange::Put(d)) => self.tables.put_device(d),
            Some(DeviceChange::Remove(id)) => self.tables.remove_device(id),
            None => {}
        }
        for c in txn.members {
            match c {
                MemberChange::Put(m) => self.tables.put_member(m),
                MemberChange::Remove(id, gid) => self.tables.remove_member(id, gid),
            }
        }
        Ok(())
    }

    /// Encodes `txn`'s rows into the scratch buffer and commits them to the store.
    fn write_rows(&mut self, txn: &Txn<G>) -> Result<(), Error> {
        let mut spans: Vec<Span, TXN_ROWS> = Vec::new();
        let mut at = 0usize;
        let result = (|| {
            let scratch = &mut self.scratch;
            // `bytes`: the encoded value's length, or `None` for a deleted row.
            let mut put = |table: Table,
                           key: u64,
                           bytes: Option<Result<usize, postcard::Error>>,
                           at: &mut usize|
             -> Result<(), Error> {
                let span = match bytes {
                    Some(n) => {
                        let n = n.map_err(|_| Error::StateTooLarge)?;
                        let end = at.checked_add(n).ok_or(Error::StateTooLarge)?;
                        let span = (*at, end);
                        *at = end;
                        Some(span)
                    }
                    None => None,
                };
                spans
                    .push((table, key, span))
                    .map_err(|_| Error::CapacityExceeded)
            };
            if let Some(c) = txn.counter_reserved {
                let meta = Meta {
                    format: STATE_FORMAT,
                    counter_reserved: c,
                };
                let n = encode(&meta, scratch, at);
                put(Table::Counters, 0, Some(n), &mut at)?;
            }
            for g in &txn.groups {
                let n = encode(g, scratch, at);
                put(Table::Groups, u64::from(g.group_id()), Some(n), &mut at)?;
            }
            match &txn.device {
                Some(DeviceChange::Put(d)) => {
                    let n = encode(d, scratch, at);
                    put(Table::Devices, u64::from(d.id().0), Some(n), &mut at)?;
                }
                Some(DeviceChange::Remove(id)) => {
                    put(Table::Devices, u64::from(id.0), None, &mut at)?;
                }
                None => {}
            }
            for c in &txn.members {
                let (id, gid) = c.key();
                let n = match c {
                    MemberChange::Put(m) => Some(encode(m, scratch, at)),
                    MemberChange::Remove(..) => None,
                };
                put(Table::Memberships, member_key(id.0, gid), n, &mut at)?;
            }
            Ok::<(), Error>(())
        })();
        let result = result.and_then(|()| {
            let mut rows: Vec<Row<'_>, TXN_ROWS> = Vec::new();
            for (table, key, span) in &spans {
                let value = match span {
                    Some((s, e)) => Some(self.scratch.get(*s..*e).ok_or(Error::StateTooLarge)?),
                    None => None,
                };
                rows.push(Row {
                    table: *table,
                    key: *key,
                    value,
                })
                .map_err(|_| Error::CapacityExceeded)?;
            }
            self.store.commit(&rows).map_err(Error::Store)
        });
        if let Some(s) = self.scratch.get_mut(..at) {
            s.zeroize();
        }
        result
    }

    /// Makes every member of group `group_id` due for a bundle now.
    fn mark_group_due(&mut self, group_id: u32, now: Instant) {
        self.tables.update_members(group_id, |r| {
            if let Some(m) = r.joined.as_mut() {
                m.retx = Retry::now(now);
            }
        });
    }

    /// After a join that changed group `group_id`'s sender list (and created no epoch): with
    /// no [join update delay](Self::set_join_update_delay_ms), every member is due now, as
    /// [`mark_group_due`](Self::mark_group_due); with one, a member is due at `now + delay`
    /// unless it was already waiting for a bundle due no later than that (its bundle, built
    /// when it is polled, carries the newest list then). A member's due time is never pushed
    /// later, so a join storm cannot starve anyone. `changed_before` is the group's
    /// `changed_at` before the join was committed.
    fn mark_group_due_after_join(&mut self, group_id: u32, now: Instant, changed_before: u64) {
        if self.join_update_delay_ms == 0 {
            self.mark_group_due(group_id, now);
            return;
        }
        let at = now.0.saturating_add(self.join_update_delay_ms);
        self.tables.update_members(group_id, |r| {
            if let Some(m) = r.joined.as_mut() {
                let was_pending = m.acked < m.since.max(changed_before);
                if !(was_pending && m.retx.next_at() <= at) {
                    m.retx = Retry::now(Instant(at));
                }
            }
        });
    }

    /// Delays the bundles that tell a group's other members about a new sender by up to
    /// `ms` milliseconds (default 0: at once), so that the joins of a storm (a building
    /// powering up, every device joining at once) share their updates: each member then gets
    /// about one bundle per `ms` instead of one per join, O(N) bundles for N joins instead of
    /// O(N²). The joiner itself gets its bundle at once, a join that creates an epoch (rekey
    /// on join, first in a storm) still makes every member due at once, and revocations,
    /// leaves and rekeys are never delayed. What the delay costs: for up to `ms` after a new
    /// sender joined, members that verify record signatures drop its records (they do not
    /// have its key yet). Not persisted: a setting of this run (the daemon's
    /// `join_update_delay_ms`).
    pub fn set_join_update_delay_ms(&mut self, ms: u64) {
        self.join_update_delay_ms = ms;
    }

    /// Creates a new epoch in group `group_id` now (committed first), makes the group's
    /// members due for it and reports it with `cause`. Returns the epoch.
    fn rekey_group<R: CryptoRng + ?Sized>(
        &mut self,
        group_id: u32,
        now: Instant,
        rng: &mut R,
        cause: RekeyCause,
    ) -> Result<u16, Error> {
        let mut txn = Txn::new();
        let epoch =
            txn.group_mut(&self.tables, group_id)?
                .new_epoch(self.next_counter, now, rng)?;
        self.commit(txn)?;
        self.mark_group_due(group_id, now);
        self.push_event(ServerEvent::EpochCreated {
            group_id,
            epoch,
            cause,
        });
        Ok(epoch)
    }

    /// Takes the next server counter, reserving a block in the store first when needed.
    fn take_counter(&mut self) -> Result<u64, Error> {
        if self.next_counter >= self.counter_reserved {
            let mut txn = Txn::new();
            txn.counter_reserved = Some(self.next_counter.saturating_add(COUNTER_STEP));
            self.commit(txn)?;
        }
        let c = self.next_counter;
        self.next_counter = self.next_counter.saturating_add(1);
        Ok(c)
    }
}

/// A row of a transaction being written: table, key, and where its value is in the scratch
/// buffer (`None`: deleted).
type Span = (Table, u64, Option<(usize, usize)>);

/// Encodes `value` into `scratch` from `at`; returns its length.
fn encode<V: serde::Serialize>(
    value: &V,
    scratch: &mut [u8],
    at: usize,
) -> Result<usize, postcard::Error> {
    let dst = scratch
        .get_mut(at..)
        .ok_or(postcard::Error::SerializeBufferFull)?;
    postcard::to_slice(value, dst).map(|b| b.len())
}
