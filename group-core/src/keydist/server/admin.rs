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
use super::state::{DeviceRec, GroupRec, remove_member};
use super::tables::ServerTables;
use super::txn::Txn;
use super::{KeyServer, RekeyCause, ServerEvent};
use crate::time::Instant;

impl<St: ServerStore, const G: usize, T: ServerTables<G>, const B: usize> KeyServer<St, G, T, B> {
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
            && self
                .tables
                .devices()
                .any(|d| d.credential.is_psk() && d.groups.contains(&spec.group_id))
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
    /// it may join.
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
        let mut list = Vec::new();
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
            list.push(*g).map_err(|_| Error::CapacityExceeded)?;
        }
        let mut txn = Txn::new();
        txn.insert_device(DeviceRec {
            id,
            credential,
            role,
            groups: list,
            last_join_nonce: None,
            memberships: Vec::new(),
            challenges: Vec::new(),
        })?;
        self.commit(txn)
    }

    /// Revokes a device: removes it from every group (each remaining group is rekeyed with a
    /// fresh epoch secret), forgets its credential (it can't rejoin), and queues a best-effort
    /// [`Removed`](crate::keydist::Removed) notice per group.
    pub fn revoke_device<R: CryptoRng + ?Sized>(
        &mut self,
        id: DeviceId,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let dev = self.tables.device(id).ok_or(Error::UnknownDevice)?.clone();
        let mut staged = dev.clone();
        let mut txn = Txn::new();
        let mut created: Vec<(u32, u16), G> = Vec::new();
        for m in &dev.memberships {
            let g = txn.group_mut(&self.tables, m.group_id)?;
            let e = remove_member(self.next_counter, &mut staged, g, now, rng)?;
            let _ = created.push((m.group_id, e));
        }
        txn.remove_device(id);
        self.commit(txn)?;
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
            .device(device)?
            .membership(group_id)
            .map(|m| m.sender_id)
    }

    /// Members of a group (device, sender ID).
    pub fn members(&self, group_id: u32) -> impl Iterator<Item = (DeviceId, Option<u8>)> + '_ {
        self.tables
            .members(group_id)
            .filter_map(move |d| d.membership(group_id).map(|m| (d.id, m.sender_id)))
    }

    /// Whether a device still has to acknowledge the group's present content.
    pub fn is_pending(&self, device: DeviceId, group_id: u32) -> bool {
        let Some(g) = self.tables.group(group_id) else {
            return false;
        };
        self.tables
            .device(device)
            .and_then(|d| d.membership(group_id))
            .is_some_and(|m| g.is_pending(m))
    }

    /// The spec a group was created with (the running state's, whatever a configuration
    /// file says now).
    pub fn group_spec(&self, group_id: u32) -> Option<&GroupSpec> {
        self.tables.group(group_id).map(|g| &g.spec)
    }

    /// What the server holds for an admitted device: its credential, its role and the groups
    /// it may join.
    pub fn device(&self, id: DeviceId) -> Option<(&DeviceCredential, Role, &[u32])> {
        self.tables
            .device(id)
            .map(|d| (&d.credential, d.role, d.groups.as_slice()))
    }
}
