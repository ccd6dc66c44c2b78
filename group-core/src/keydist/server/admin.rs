//! Operator requests: creating groups, admitting and revoking devices, forcing a rekey, and
//! what an operator may ask about the running state.

use heapless::Vec;
use rand_core::CryptoRng;

use super::super::credential::DeviceCredential;
use super::super::error::Error;
use super::super::message::RemovedReason;
use super::super::store::ServerStore;
use super::super::vocabulary::{DeviceId, Role};
use super::outbound::Notice;
use super::spec::GroupSpec;
use super::state::{DeviceRec, GroupRec, MemberRec, remove_member};
use super::tables::ServerTables;
use super::txn::Txn;
use super::{KeyServer, RekeyCause, ServerEvent};
use crate::time::Instant;

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
    /// Creates a group with a first epoch (current at once; nobody has it yet).
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        spec: GroupSpec,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        if self.tables.group(spec.group_id).is_some() {
            return Err(Error::AlreadyExists);
        }
        if !spec.suite.is_enabled() {
            return Err(Error::UnsupportedSuite(spec.suite.0));
        }
        if spec.policy.signatures_required
            && self.tables.all_members().any(|m| {
                m.group_id() == spec.group_id
                    && self
                        .tables
                        .device(m.device())
                        .is_some_and(|d| d.credential.is_psk())
            })
        {
            return Err(Error::PskWithSignatures);
        }
        let mut txn = Txn::new();
        txn.insert_group(GroupRec::new(spec, self.next_counter, now, rng))?;
        self.commit(txn)?;
        self.push_event(ServerEvent::EpochCreated {
            group_id: spec.group_id,
            epoch: 1,
            cause: RekeyCause::Created,
        });
        Ok(())
    }

    /// Admits a device: its credential, the most it may be (sender or listener) and the groups
    /// it may join (any number: one (device, group) record each).
    ///
    /// Up to `G` groups take one transaction. With more, the (device, group) records are
    /// written `G` at a time and the device's own record last: until that last commit the
    /// device does not exist (its records admit nothing), so a failure or a crash in between
    /// leaves a device that is not admitted, and admitting it again completes it.
    pub fn admit_device(
        &mut self,
        id: DeviceId,
        credential: DeviceCredential,
        role: Role,
        groups: &[u32],
    ) -> Result<(), Error> {
        if self.tables.device(id).is_some() {
            return Err(Error::AlreadyExists);
        }
        credential.validate()?;
        for g in groups {
            let signed = self
                .tables
                .group(*g)
                .ok_or(Error::UnknownGroup)?
                .spec
                .policy
                .signatures_required;
            if signed && credential.is_psk() {
                return Err(Error::PskWithSignatures);
            }
        }
        // Records left by an admission that did not complete, for groups not in this one.
        loop {
            let mut txn: Txn<G> = Txn::new();
            let stale = self
                .tables
                .member_of(id)
                .map(MemberRec::group_id)
                .filter(|g| !groups.contains(g));
            for gid in stale.take(G) {
                txn.remove_member(id, gid)?;
            }
            if txn.members.is_empty() {
                break;
            }
            self.commit(txn)?;
        }
        let mut txn: Txn<G> = Txn::new();
        for (i, gid) in groups.iter().enumerate() {
            if txn.members_room() == 0 {
                self.commit(core::mem::replace(&mut txn, Txn::new()))?;
            }
            // A duplicate in the list is one admission.
            if groups.get(..i).is_some_and(|before| before.contains(gid)) {
                continue;
            }
            txn.put_member(MemberRec {
                device: id,
                group_id: *gid,
                joined: None,
                challenge: None,
            })?;
        }
        txn.insert_device(DeviceRec {
            id,
            credential,
            role,
        })?;
        self.commit(txn)
    }

    /// Revokes a device: removes it from every group (each group it was a member of is
    /// rekeyed with a fresh epoch secret), forgets its credential (it can't rejoin), and
    /// queues a best-effort [`Removed`](crate::keydist::Removed) notice per group.
    ///
    /// A device in up to `G` groups is revoked in one transaction. With more, its groups are
    /// left `G` at a time (each step: its (device, group) records deleted and those groups
    /// rekeyed), and the device record goes with the last step. If a step fails (or the
    /// server crashes), the groups done stay done and the device stays admitted to the
    /// others: revoking it again finishes (group-std's daemon does that at startup for a
    /// device it marked revoked).
    pub fn revoke_device<R: CryptoRng + ?Sized>(
        &mut self,
        id: DeviceId,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let credential = self
            .tables
            .device(id)
            .ok_or(Error::UnknownDevice)?
            .credential
            .clone();
        loop {
            let mut txn: Txn<G> = Txn::new();
            let mut created: Vec<(u32, u16), G> = Vec::new();
            let mut left: Vec<u32, G> = Vec::new();
            let chunk: Vec<(u32, bool), G> = self
                .tables
                .member_of(id)
                .map(|m| (m.group_id(), m.is_member()))
                .take(G)
                .collect();
            let last = self.tables.member_of(id).nth(G).is_none();
            for (gid, joined) in &chunk {
                if *joined {
                    let (m, g) = txn.member_and_group_mut(&self.tables, id, *gid)?;
                    let e = remove_member(self.next_counter, m, g, now, rng)?;
                    let _ = created.push((*gid, e));
                    let _ = left.push(*gid);
                }
                txn.remove_member(id, *gid)?;
            }
            if last {
                txn.remove_device(id);
            }
            self.commit(txn)?;
            for gid in left {
                let _ = self.notices.push_back(Notice {
                    device: id,
                    group_id: gid,
                    reason: RemovedReason::Revoked,
                    credential: credential.clone(),
                });
            }
            if last {
                self.push_event(ServerEvent::Revoked { device: id });
            }
            for (g, e) in created {
                self.push_event(ServerEvent::EpochCreated {
                    group_id: g,
                    epoch: e,
                    cause: RekeyCause::Removal,
                });
            }
            if last {
                return Ok(());
            }
        }
    }

    /// Forces a new epoch for a group now (e.g. an operator's rotation).
    pub fn rekey<R: CryptoRng + ?Sized>(
        &mut self,
        group_id: u32,
        now: Instant,
        rng: &mut R,
    ) -> Result<u16, Error> {
        if self.tables.group(group_id).is_none() {
            return Err(Error::UnknownGroup);
        }
        self.rekey_group(group_id, now, rng, RekeyCause::Operator)
    }

    /// A group's current and staged epochs.
    pub fn epochs(&self, group_id: u32) -> Option<(Option<u16>, Option<u16>)> {
        let g = self.tables.group(group_id)?;
        Some((
            g.current.as_ref().map(|e| e.epoch),
            g.staged.as_ref().map(|e| e.epoch),
        ))
    }

    /// The highest epoch a group ever had.
    pub fn latest_epoch(&self, group_id: u32) -> Option<u16> {
        Some(self.tables.group(group_id)?.latest_epoch)
    }

    /// A device's membership in a group: its sender ID (if a sender).
    pub fn membership(&self, device: DeviceId, group_id: u32) -> Option<Option<u8>> {
        self.tables
            .member(device, group_id)?
            .joined
            .as_ref()
            .map(|m| m.sender_id)
    }

    /// Members of a group (device, sender ID).
    pub fn members(&self, group_id: u32) -> impl Iterator<Item = (DeviceId, Option<u8>)> + '_ {
        self.tables
            .members(group_id)
            .map(|m| (m.device(), m.sender_id()))
    }

    /// Whether a device still has to acknowledge the group's present content.
    pub fn is_pending(&self, device: DeviceId, group_id: u32) -> bool {
        let Some(g) = self.tables.group(group_id) else {
            return false;
        };
        self.tables
            .member(device, group_id)
            .and_then(|r| r.joined.as_ref())
            .is_some_and(|m| g.is_pending(m))
    }

    /// The spec a group was created with (the running state's, whatever a configuration
    /// file says now).
    pub fn group_spec(&self, group_id: u32) -> Option<&GroupSpec> {
        self.tables.group(group_id).map(|g| &g.spec)
    }

    /// What the server holds for an admitted device: its credential and its role (the groups
    /// it may join: [`device_groups`](Self::device_groups)).
    pub fn device(&self, id: DeviceId) -> Option<(&DeviceCredential, Role)> {
        self.tables.device(id).map(|d| (&d.credential, d.role))
    }

    /// The groups device `id` may join (in the tables' order).
    pub fn device_groups(&self, id: DeviceId) -> impl Iterator<Item = u32> + '_ {
        self.tables.member_of(id).map(MemberRec::group_id)
    }
}
