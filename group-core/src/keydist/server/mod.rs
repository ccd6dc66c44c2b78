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
//!
//! ```text
//!   spec      GroupSpec, KeySchedule: a group as the key server runs it
//!   state     ServerState and its pure operations (epochs, sender IDs, memberships), on a copy
//!   admin     operator requests: create_group, admit_device, revoke_device, rekey; queries
//!   inbound   handle_message: join (validate, plan, apply), ack, leave, rekey report
//!   timers    handle_timeout, poll_timeout: activation and scheduled rotation
//!   outbound  poll_transmit: challenges, removal notices, bundles with backoff
//! ```

mod admin;
mod inbound;
mod outbound;
mod spec;
mod state;
#[cfg(test)]
mod tests;
mod timers;

use core::fmt;

use heapless::Deque;
use p256::ecdsa::VerifyingKey;
use rand_core::CryptoRng;
use zeroize::Zeroize;

use super::credential::ServerCredentials;
use super::error::Error;
use super::store::ServerStore;
use super::vocabulary::DeviceId;
use crate::time::Instant;
use outbound::{ChallengeOut, Notice};
use state::{STATE_FORMAT, ServerState};

pub use inbound::Received;
pub use outbound::Transmit;
pub use spec::{GroupSpec, KeySchedule};

/// Server counters reserved per store write.
const COUNTER_STEP: u64 = 64;
/// Queued removal notices.
const NOTICE_CAP: usize = 8;
/// Queued events.
const EVENT_CAP: usize = 32;
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

impl<St: ServerStore, const D: usize, const G: usize, const B: usize> KeyServer<St, D, G, B> {
    /// Starts the key server from its store: a commissioned empty store gives an empty server;
    /// stored state is resumed; a store that lost its state, or state that does not decode, is
    /// refused (starting empty would reuse epochs and sender IDs).
    pub fn open(creds: ServerCredentials, mut store: St) -> Result<Self, Error> {
        let mut scratch = [0u8; B];
        let state = match store.load(&mut scratch)? {
            None => ServerState::empty(),
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

    /// Creates a new epoch in group `gi` now (committed first), makes the group's members due
    /// for it and reports it with `cause`. Returns the epoch.
    fn rekey_group<R: CryptoRng + ?Sized>(
        &mut self,
        gi: usize,
        now: Instant,
        rng: &mut R,
        cause: RekeyCause,
    ) -> Result<u16, Error> {
        let mut next = self.state.clone();
        let epoch = next.new_epoch(self.next_counter, gi, now, rng)?;
        let group_id = next
            .groups
            .get(gi)
            .map(|g| g.spec.group_id)
            .ok_or(Error::UnknownGroup)?;
        self.commit(next)?;
        self.state.mark_group_due(gi, now);
        self.push_event(ServerEvent::EpochCreated {
            group_id,
            epoch,
            cause,
        });
        Ok(epoch)
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
}
