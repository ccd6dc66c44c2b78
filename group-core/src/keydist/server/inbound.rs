//! Inbound messages: a device's join request, acknowledgement, leave or rekey report is
//! authenticated, checked for freshness against the live state, and only then acted upon (on a
//! copy of the state, committed before anything depends on it).

use rand_core::CryptoRng;

use super::super::credential::Credential;
use super::super::error::Error;
use super::super::message::{Ack, JoinRequest, Leave, Message, RekeyNeeded, RemovedReason, parse};
use super::super::retry::Retry;
use super::super::store::ServerStore;
use super::super::vocabulary::{DeviceId, Direction, MAX_SENDERS, NONCE_LEN, Role};
use super::outbound::{ChallengeOut, Notice};
use super::state::{Challenge, Membership, remove_member};
use super::tables::ServerTables;
use super::txn::Txn;
use super::{CHALLENGE_TTL_MS, KeyServer, RekeyCause, ServerEvent};
use crate::time::Instant;

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
    /// [`JoinChallenge`](crate::keydist::JoinChallenge) is queued for the device and nothing else changed. The driver sends
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

/// What a join request may do, decided before anything changes.
enum JoinVerdict {
    /// A retransmission of the request that made the current membership (its bundle was
    /// lost).
    Retransmission,
    /// It covers no outstanding challenge: it gets one, and nothing else changes.
    Unchallenged,
    /// It covers an outstanding challenge: the device joins.
    Admit(JoinAdmit),
}

/// An admitted join: what its epoch must be.
#[derive(Clone, Copy)]
struct JoinAdmit {
    fresh_needed: bool,
    recovery: bool,
}

/// A join planned on staged records (`txn`), to be committed.
struct JoinPlan<const G: usize> {
    txn: Txn<G>,
    epoch: u16,
    created: bool,
    recovery: bool,
    sid_changed: bool,
    sender_id: Option<u8>,
}

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
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
        let dev = self.tables.device(id).ok_or(Error::UnknownDevice)?;
        Credential::for_device(&self.creds, &dev.credential)?.check(&pm)?;
        let fresh = match pm.message {
            Message::JoinRequest(j) => match self.on_join(now, rng, id, &j)? {
                Some(fresh) => fresh,
                None => return Ok(Received::Challenged(id)),
            },
            Message::Ack(a) => self.on_ack(id, &a)?,
            Message::Leave(l) => self.on_leave(now, rng, id, &l)?,
            Message::RekeyNeeded(r) => self.on_rekey_needed(now, rng, id, &r)?,
            Message::KeyBundle(_)
            | Message::Removed(_)
            | Message::JoinChallenge(_)
            | Message::SenderKeys(_) => {
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

    /// Queues a challenge for device `id`'s join request (nonce `echo`) to group `gid`: the
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
        id: DeviceId,
        gid: u32,
        echo: [u8; NONCE_LEN],
    ) -> Result<(), Error> {
        if self.challenges_out.is_full() {
            return Err(Error::CapacityExceeded);
        }
        let nonce = self
            .tables
            .update_member(id, gid, |r| match r.challenge {
                Some(c) if c.expires_at > now.0 => c.nonce,
                _ => {
                    let mut nonce = [0u8; NONCE_LEN];
                    rng.fill_bytes(&mut nonce);
                    r.challenge = Some(Challenge {
                        group_id: gid,
                        nonce,
                        expires_at: now.0.saturating_add(CHALLENGE_TTL_MS),
                    });
                    nonce
                }
            })
            .ok_or(Error::NotAdmitted)?;
        let out = ChallengeOut {
            device: id,
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
    fn check_fresh(&self, id: DeviceId, group_id: u32, counter: u64) -> Result<(), Error> {
        let m = self
            .tables
            .member(id, group_id)
            .and_then(|r| r.joined.as_ref())
            .ok_or(Error::NotMember)?;
        if counter < m.since || counter >= self.next_counter {
            return Err(Error::Stale);
        }
        Ok(())
    }

    /// A join request. `None`: challenged (nothing changed); `Some(fresh)` otherwise.
    fn on_join<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        id: DeviceId,
        j: &JoinRequest,
    ) -> Result<Option<bool>, Error> {
        let gid = j.header.group_id;
        match self.validate_join(now, id, j)? {
            JoinVerdict::Retransmission => {
                self.tables.update_member(id, gid, |r| {
                    if let Some(m) = r.joined.as_mut() {
                        m.retx = Retry::now(now);
                    }
                });
                Ok(Some(false))
            }
            JoinVerdict::Unchallenged => {
                self.challenge(now, rng, id, gid, j.header.nonce)?;
                Ok(None)
            }
            JoinVerdict::Admit(admit) => {
                let plan = self.plan_join(now, rng, id, j, admit)?;
                self.apply_join(now, j, plan)?;
                Ok(Some(true))
            }
        }
    }

    /// Checks a join request against what is on file and decides what it may do. Changes
    /// nothing.
    fn validate_join(
        &self,
        now: Instant,
        id: DeviceId,
        j: &JoinRequest,
    ) -> Result<JoinVerdict, Error> {
        let gid = j.header.group_id;
        let g = self.tables.group(gid).ok_or(Error::UnknownGroup)?;
        let dev = self.tables.device(id).ok_or(Error::UnknownDevice)?;
        // The key on file must be the one in the request (signed mode), or none (PSK).
        dev.credential.check_claimed_key(&j.public_key)?;
        let rec = self.tables.member(id, gid).ok_or(Error::NotAdmitted)?;
        if !dev.role.allows(j.role) {
            return Err(Error::NotAdmitted);
        }
        if g.spec.policy.signatures_required && dev.credential.is_psk() {
            return Err(Error::PskWithSignatures);
        }
        if j.header.counter >= self.next_counter {
            return Err(Error::Stale);
        }
        let existing = rec.joined.as_ref();
        // A retransmission of the request that made the current membership (its bundle was
        // lost): send the bundle again, change nothing else.
        if existing.is_some_and(|m| m.request_nonce == j.header.nonce) {
            return Ok(JoinVerdict::Retransmission);
        }
        // Freshness (finding 1): a signature proves who wrote a request, not when. Only a
        // request covering an outstanding challenge of ours may change anything; any other
        // (a first request, or one captured at any time and replayed) just gets a challenge.
        let challenged = j.challenge.is_some_and(|c| {
            rec.challenge
                .is_some_and(|p| p.group_id == gid && p.nonce == c && p.expires_at > now.0)
        });
        if !challenged {
            return Ok(JoinVerdict::Unchallenged);
        }
        let recovery = j.sequence_state_lost && j.role == Role::Sender;
        // A sender that joins again keeps its sender ID, so it must not get back an epoch it
        // may already have sent in: its sequence store may have been lost and re-created
        // empty (indistinguishable from a new device's), and it would start again at 0 under
        // the same (key, epoch, sid). Give it an epoch nobody has received.
        let rejoining_sender =
            j.role == Role::Sender && existing.is_some_and(|m| m.sender_id.is_some());
        Ok(JoinVerdict::Admit(JoinAdmit {
            fresh_needed: g.spec.rekey_on_join || recovery || rejoining_sender,
            recovery,
        }))
    }

    /// Plans an admitted join on staged records: the epoch (created if needed), the sender
    /// ID, the membership. Changes nothing live.
    fn plan_join<R: CryptoRng + ?Sized>(
        &self,
        now: Instant,
        rng: &mut R,
        id: DeviceId,
        j: &JoinRequest,
        admit: JoinAdmit,
    ) -> Result<JoinPlan<G>, Error> {
        let JoinAdmit {
            fresh_needed,
            recovery,
        } = admit;
        let gid = j.header.group_id;
        let counter = self.next_counter;
        // Senders of the group now (the joiner's own sender ID counts only if it keeps one).
        let senders = self.tables.senders(gid).count();
        let mut txn = Txn::new();
        let (rec, g) = txn.member_and_group_mut(&self.tables, id, gid)?;
        let (epoch, created) = g.epoch_for_join(counter, now, rng, fresh_needed, recovery)?;
        // Sender ID: kept on a rejoin in the same role, otherwise allocated (and released).
        let old = rec.joined.as_ref().map(|m| (m.role, m.sender_id));
        // A new sender over the group's capacity is refused before a sender ID is taken (with
        // 255 sender IDs and `MAX_SENDERS` = 255 this is also the answer to a full ID space).
        // Groups with record signatures hold as many: a list whose keys don't fit one bundle
        // continues in `SenderKeys` parts.
        if j.role == Role::Sender && old.is_none_or(|(_, s)| s.is_none()) && senders >= MAX_SENDERS
        {
            return Err(Error::CapacityExceeded);
        }
        let sender_id = match (old, j.role) {
            (Some((Role::Sender, Some(sid))), Role::Sender) => Some(sid),
            (old, role) => {
                if let Some((_, Some(sid))) = old {
                    // Its holder (this device) may get every epoch up to the newest.
                    let last_known = g.latest_epoch;
                    g.release_sid(sid, last_known);
                }
                if role == Role::Sender {
                    Some(g.alloc_sid(epoch)?)
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
        // The challenge is used up (with the commit: a failed save keeps it).
        rec.challenge = None;
        rec.joined = Some(Membership {
            role: j.role,
            sender_id,
            since: counter,
            acked: 0,
            acked_epoch: 0,
            join_nonce: Some(j.header.nonce),
            request_nonce: j.header.nonce,
            retx: Retry::now(now),
        });
        Ok(JoinPlan {
            txn,
            epoch,
            created,
            recovery,
            sid_changed,
            sender_id,
        })
    }

    /// Commits a planned join, then makes the group's members due and reports it.
    fn apply_join(
        &mut self,
        now: Instant,
        j: &JoinRequest,
        plan: JoinPlan<G>,
    ) -> Result<(), Error> {
        let gid = j.header.group_id;
        let changed_before = self.tables.group(gid).map_or(0, |g| g.changed_at);
        self.commit(plan.txn)?;
        if plan.created {
            self.mark_group_due(gid, now);
            self.push_event(ServerEvent::EpochCreated {
                group_id: gid,
                epoch: plan.epoch,
                cause: if plan.recovery {
                    RekeyCause::Recovery
                } else {
                    RekeyCause::Join
                },
            });
        } else if plan.sid_changed {
            self.mark_group_due_after_join(gid, now, changed_before);
        }
        self.push_event(ServerEvent::Joined {
            device: j.header.device_id,
            group_id: gid,
            sender_id: plan.sender_id,
        });
        Ok(())
    }

    /// An acknowledgement. Fresh iff it is the first for a bundle emitted by this run (a
    /// counter above the last acknowledged one and at or above the first counter of this run:
    /// the acknowledged state is not persisted, so older counters prove nothing after a
    /// restart).
    fn on_ack(&mut self, id: DeviceId, a: &Ack) -> Result<bool, Error> {
        let gid = a.header.group_id;
        self.check_fresh(id, gid, a.header.counter)?;
        let boot = self.boot_counter;
        let (fresh, newer) = self
            .tables
            .update_member(id, gid, |r| {
                let m = r.joined.as_mut()?;
                let fresh = a.header.counter > m.acked && a.header.counter >= boot;
                let newer = a.header.counter > m.acked;
                if newer {
                    // Not persisted by itself: losing it only causes a retransmission after a
                    // crash.
                    m.acked = a.header.counter;
                    m.acked_epoch = a.epoch;
                    m.join_nonce = None;
                    m.retx.reset_timeout();
                }
                Some((fresh, newer))
            })
            .flatten()
            .ok_or(Error::NotMember)?;
        if newer {
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
        id: DeviceId,
        l: &Leave,
    ) -> Result<bool, Error> {
        let gid = l.header.group_id;
        if self.tables.group(gid).is_none() {
            return Err(Error::UnknownGroup);
        }
        let dev = self.tables.device(id).ok_or(Error::UnknownDevice)?;
        if self.tables.member(id, gid).is_none_or(|r| !r.is_member()) {
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
        self.check_fresh(id, gid, l.header.counter)?;
        let credential = dev.credential.clone();
        let mut txn: Txn<G> = Txn::new();
        let (rec, g) = txn.member_and_group_mut(&self.tables, id, gid)?;
        // The admission stays (the device may join again); the membership ends.
        let epoch = remove_member(self.next_counter, rec, g, now, rng)?;
        let notice = Notice {
            device: id,
            group_id: gid,
            reason: RemovedReason::Left,
            credential,
        };
        self.commit(txn)?;
        let _ = self.notices.push_back(notice);
        self.mark_group_due(gid, now);
        self.push_event(ServerEvent::Left {
            device: l.header.device_id,
            group_id: gid,
        });
        self.push_event(ServerEvent::EpochCreated {
            group_id: gid,
            epoch,
            cause: RekeyCause::Removal,
        });
        Ok(true)
    }

    /// A rekey report. Fresh iff it started a rekey (a report about the current epoch with
    /// nothing staged: once acted upon, the epoch it names is no longer the newest).
    fn on_rekey_needed<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        id: DeviceId,
        r: &RekeyNeeded,
    ) -> Result<bool, Error> {
        let gid = r.header.group_id;
        self.check_fresh(id, gid, r.header.counter)?;
        let g = self.tables.group(gid).ok_or(Error::UnknownGroup)?;
        // Only a report on the newest epoch matters; a newer one is on its way otherwise.
        if g.staged.is_some() || g.current.as_ref().is_none_or(|c| c.epoch != r.epoch) {
            return Ok(false);
        }
        self.rekey_group(gid, now, rng, RekeyCause::Report)?;
        Ok(true)
    }
}
