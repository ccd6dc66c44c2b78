//! Outbound messages: join challenges, removal notices and key bundles, each protected for
//! its recipient; bundles are (re)transmitted with exponential backoff until acknowledged.

use rand_core::CryptoRng;

use super::super::credential::{Credential, DeviceCredential};
use super::super::error::Error;
use super::super::message::{
    JoinChallenge, KeyBundle, Message, MessageKind, Removed, RemovedReason, SealedSecret,
    SenderEntry, ServerHeader,
};
use super::super::sender_list::SenderEntries;
use super::super::store::ServerStore;
use super::super::vocabulary::{DeviceId, NONCE_LEN};
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

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
    /// The next message to send, written to `buf` (at least
    /// [`MAX_MESSAGE_LEN`](super::super::MAX_MESSAGE_LEN) bytes). Join challenges first, then removal
    /// notices, then due bundles (first transmissions and retransmissions with exponential
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
        let job = self.build_bundle(device_id, gid, counter, now, rng)?;
        self.tables.update_member(device_id, gid, |r| {
            if let Some(m) = r.joined.as_mut() {
                m.retx.backoff(now);
            }
        });
        Ok(Some(Outgoing::Bundle(job)))
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
    /// (the job's public-key work); draws its ephemeral key from `rng`.
    fn build_bundle<R: CryptoRng + ?Sized>(
        &self,
        id: DeviceId,
        gid: u32,
        counter: u64,
        now: Instant,
        rng: &mut R,
    ) -> Result<BundleJob, Error> {
        let g = self.tables.group(gid).ok_or(Error::UnknownGroup)?;
        let d = self.tables.device(id).ok_or(Error::UnknownDevice)?;
        let m = self
            .tables
            .member(id, gid)
            .and_then(|r| r.joined.as_ref())
            .ok_or(Error::NotMember)?;
        let e = g.newest().ok_or(Error::UnknownGroup)?;
        let mut senders = SenderEntries::new();
        for om in self.tables.senders(gid) {
            let Some(sid) = om.sender_id() else { continue };
            let public_key = if g.spec.policy.signatures_required {
                self.tables
                    .device(om.device())
                    .and_then(|od| od.credential.compressed_key().copied())
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
        senders.sort_by_sender_id();
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
        Ok(BundleJob::new(
            d.credential.clone(),
            bundle,
            e.material.clone(),
            ephemeral,
        ))
    }
}
