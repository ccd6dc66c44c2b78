//! Outbound messages: join challenges, removal notices and key bundles, each protected for
//! its recipient; bundles are (re)transmitted with exponential backoff until acknowledged.

use rand_core::CryptoRng;

use super::super::credential::{Credential, DeviceCredential};
use super::super::error::Error;
use super::super::message::{
    CompressedKey, JoinChallenge, KeyBundle, Message, MessageKind, Removed, RemovedReason,
    SealedSecret, SenderEntry, SenderKeys, ServerHeader,
};
use super::super::sender_list::SenderEntries;
use super::super::store::ServerStore;
use super::super::vocabulary::{
    DeviceId, MAX_PART_KEYS, MAX_SENDERS, MAX_SIGNING_SENDERS, NONCE_LEN, SPLIT_BUNDLE_KEYS,
};
use super::KeyServer;
use super::jobs::{BundleJob, Outgoing};
use super::tables::ServerTables;
use super::txn::Txn;
use crate::time::Instant;

/// A message for the driver to send to a device (its address is the driver's business: the
/// source of that device's last [fresh](crate::keydist::Received::Fresh) message; a
/// [`JoinChallenge`](MessageKind::JoinChallenge) goes to the source of the join request it
/// answers, see [`Received::Challenged`](crate::keydist::Received::Challenged)).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// The recipient.
    pub device_id: DeviceId,
    /// Bytes written at the start of the caller's buffer.
    pub len: usize,
    /// What it is.
    pub kind: MessageKind,
}

/// A challenge waiting for [`KeyServer::poll_transmit`].
pub(super) struct ChallengeOut {
    pub(super) device: DeviceId,
    pub(super) group_id: u32,
    pub(super) echo: [u8; NONCE_LEN],
    pub(super) nonce: [u8; NONCE_LEN],
}

/// A removal notice waiting for [`KeyServer::poll_transmit`].
pub(super) struct Notice {
    pub(super) device: DeviceId,
    pub(super) group_id: u32,
    pub(super) reason: RemovedReason,
    pub(super) credential: DeviceCredential,
}

/// The `SenderKeys` parts of a bundle still to go out: entries `next..` of its list.
#[derive(Clone, Copy)]
pub(super) struct PartsOut {
    pub(super) device: DeviceId,
    pub(super) group_id: u32,
    /// The bundle's counter and epoch.
    pub(super) bundle: u64,
    pub(super) epoch: u16,
    /// Index of the first entry whose key is still to be sent.
    pub(super) next: usize,
}

/// A group's senders as its bundles list them: (sender ID, device), by sender ID.
type Listed = heapless::Vec<(u8, DeviceId), MAX_SENDERS>;

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
    /// The next message to send, written to `buf` (at least
    /// [`MAX_MESSAGE_LEN`](super::super::MAX_MESSAGE_LEN) bytes). Join challenges first, then removal
    /// notices, then the [`SenderKeys`] parts of the last bundle whose list did not fit it (a
    /// group with record signatures and more than
    /// [`MAX_SIGNING_SENDERS`](super::super::MAX_SIGNING_SENDERS) senders), then due bundles (first transmissions and retransmissions with exponential
    /// backoff). A store failure is returned and nothing is emitted.
    ///
    /// The same as [`KeyServer::poll_outgoing`] followed at once by [`BundleJob::seal`].
    pub fn poll_transmit<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, Error> {
        match self.poll_outgoing(now, rng, buf)? {
            None => Ok(None),
            Some(Outgoing::Ready(t)) => Ok(Some(t)),
            Some(Outgoing::Bundle(job)) => job.seal(&self.creds, buf).map(Some),
        }
    }

    /// The next message to send, as [`KeyServer::poll_transmit`], except that a key bundle
    /// comes back as a [`BundleJob`]: every state change of that transmission is done (the
    /// epoch persisted as handed out, the counter taken, the retransmission scheduled) and its
    /// ephemeral key drawn from `rng`; what is left is its per-member public-key work, which
    /// [`BundleJob::seal`] does without the server, so a driver may run the jobs of several
    /// bundles on other threads and send the results in the order they were polled.
    /// Challenges and removal notices are written to `buf` at once ([`Outgoing::Ready`]).
    pub fn poll_outgoing<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Result<Option<Outgoing>, Error> {
        while let Some(c) = self.challenges_out.pop_front() {
            // A device revoked since is skipped.
            let Some(credential) = self.tables.device(c.device).map(|d| d.credential.clone())
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
            return Ok(Some(Outgoing::Ready(Transmit {
                device_id: c.device,
                len,
                kind: MessageKind::JoinChallenge,
            })));
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
            return Ok(Some(Outgoing::Ready(Transmit {
                device_id: n.device,
                len,
                kind: MessageKind::Removed,
            })));
        }
        while let Some(p) = self.parts_out.pop_front() {
            if let Some(t) = self.next_part(p, buf)? {
                return Ok(Some(Outgoing::Ready(t)));
            }
        }
        let Some((device_id, gid)) = self.tables.due_member(now.0) else {
            return Ok(None);
        };
        // The epoch is handed out: persist that before the bundle exists.
        let handed = self
            .tables
            .group(gid)
            .and_then(|g| g.newest())
            .is_some_and(|e| e.handed_out);
        if !handed {
            let mut txn = Txn::new();
            let g = txn.group_mut(&self.tables, gid)?;
            if let Some(s) = g.staged.as_mut() {
                s.handed_out = true;
            } else if let Some(c) = g.current.as_mut() {
                c.handed_out = true;
            }
            self.commit(txn)?;
        }
        let counter = self.take_counter()?;
        let (job, split) = self.build_bundle(device_id, gid, counter, now, rng)?;
        self.tables.update_member(device_id, gid, |r| {
            if let Some(m) = r.joined.as_mut() {
                m.retx.backoff(now);
            }
        });
        if let Some(p) = split {
            // A full queue only delays this member to the bundle's retransmission.
            let _ = self.parts_out.push_back(p);
        }
        Ok(Some(Outgoing::Bundle(job)))
    }

    /// Writes the next `SenderKeys` part of `p` into `buf` and queues the rest; `None` if the
    /// bundle is out of date (a newer epoch or sender list, or the device left): the bundle
    /// that replaces it has its own parts.
    fn next_part(&mut self, mut p: PartsOut, buf: &mut [u8]) -> Result<Option<Transmit>, Error> {
        let Some(g) = self.tables.group(p.group_id) else {
            return Ok(None);
        };
        if g.newest().map(|e| e.epoch) != Some(p.epoch) || g.changed_at > p.bundle {
            return Ok(None);
        }
        let joined = self
            .tables
            .member(p.device, p.group_id)
            .is_some_and(|r| r.joined.is_some());
        let Some(credential) = self
            .tables
            .device(p.device)
            .filter(|_| joined)
            .map(|d| d.credential.clone())
        else {
            return Ok(None);
        };
        let listed = self.listed(p.group_id)?;
        let end = p.next.saturating_add(MAX_PART_KEYS).min(listed.len());
        let Ok(first) = u8::try_from(p.next) else {
            return Ok(None);
        };
        let mut keys = heapless::Vec::new();
        for (_, id) in listed.get(p.next..end).unwrap_or(&[]) {
            keys.push(self.key_of(*id)?)
                .map_err(|_| Error::CapacityExceeded)?;
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let counter = self.take_counter()?;
        let msg = Message::SenderKeys(SenderKeys {
            header: ServerHeader {
                group_id: p.group_id,
                device_id: p.device,
                counter,
            },
            epoch: p.epoch,
            bundle: p.bundle,
            first,
            keys,
        });
        let len = self.protect_for(&credential, &msg, buf)?;
        if end < listed.len() {
            p.next = end;
            let _ = self.parts_out.push_front(p);
        }
        Ok(Some(Transmit {
            device_id: p.device,
            len,
            kind: MessageKind::SenderKeys,
        }))
    }

    /// Group `gid`'s senders as bundles list them: by sender ID.
    fn listed(&self, gid: u32) -> Result<Listed, Error> {
        let mut listed = Listed::new();
        for om in self.tables.senders(gid) {
            if let Some(sid) = om.sender_id() {
                listed
                    .push((sid, om.device()))
                    .map_err(|_| Error::CapacityExceeded)?;
            }
        }
        listed.sort_unstable_by_key(|(sid, _)| *sid);
        Ok(listed)
    }

    /// The record-verifying key of sender device `id` (compressed).
    fn key_of(&self, id: DeviceId) -> Result<CompressedKey, Error> {
        self.tables
            .device(id)
            .and_then(|d| d.credential.compressed_key().copied())
            .ok_or(Error::PskWithSignatures)
    }

    fn protect_for(
        &self,
        credential: &DeviceCredential,
        msg: &Message,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        Credential::for_device(&self.creds, credential)?.protect(msg, buf)
    }

    /// Builds device `id`'s bundle for group `gid`, all but its sealed secret and signature
    /// (the job's public-key work); draws its ephemeral key from `rng`. In a group with
    /// record signatures and more than [`MAX_SIGNING_SENDERS`] senders the bundle carries the
    /// keys of its first [`SPLIT_BUNDLE_KEYS`] entries and the parts to send after it are
    /// returned too.
    fn build_bundle<R: CryptoRng + ?Sized>(
        &self,
        id: DeviceId,
        gid: u32,
        counter: u64,
        now: Instant,
        rng: &mut R,
    ) -> Result<(BundleJob, Option<PartsOut>), Error> {
        let g = self.tables.group(gid).ok_or(Error::UnknownGroup)?;
        let d = self.tables.device(id).ok_or(Error::UnknownDevice)?;
        let m = self
            .tables
            .member(id, gid)
            .and_then(|r| r.joined.as_ref())
            .ok_or(Error::NotMember)?;
        let e = g.newest().ok_or(Error::UnknownGroup)?;
        let listed = self.listed(gid)?;
        let signed = g.spec.policy.signatures_required;
        let split = signed && listed.len() > MAX_SIGNING_SENDERS;
        let mut senders = SenderEntries::new();
        for (i, (sid, od)) in listed.iter().enumerate() {
            let public_key = if signed && (!split || i < SPLIT_BUNDLE_KEYS) {
                Some(self.key_of(*od)?)
            } else {
                None
            };
            senders
                .push(SenderEntry {
                    sender_id: *sid,
                    public_key,
                })
                .map_err(|_| Error::CapacityExceeded)?;
        }
        let header = ServerHeader {
            group_id: gid,
            device_id: d.id,
            counter,
        };
        let ephemeral = Credential::draw_ephemeral(&d.credential, rng);
        let activate_in = e.activate_at.saturating_sub(now.0);
        let bundle = KeyBundle {
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
            sealed: SealedSecret {
                ephemeral: None,
                ciphertext: heapless::Vec::new(),
            },
        };
        let parts = split.then_some(PartsOut {
            device: d.id,
            group_id: gid,
            bundle: counter,
            epoch: e.epoch,
            next: SPLIT_BUNDLE_KEYS,
        });
        let job = BundleJob::new(d.credential.clone(), bundle, e.material.clone(), ephemeral);
        Ok((job, parts))
    }
}
