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
use super::state::{DeviceRec, GroupRec};
use super::{KeyServer, RekeyCause, ServerEvent};
use crate::time::Instant;

impl<St: ServerStore, const D: usize, const G: usize, const B: usize> KeyServer<St, D, G, B> {
    /// Creates a group with a first epoch (current at once; nobody has it yet).
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        spec: GroupSpec,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        if self.state.group_index(spec.group_id).is_some() {
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
            .push(GroupRec::new(spec, self.next_counter, now, rng))
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
        if self.state.device_index(id).is_some() {
            return Err(Error::AlreadyExists);
        }
        credential.validate()?;
        let mut list = Vec::new();
        for g in groups {
            let gi = self.state.group_index(*g).ok_or(Error::UnknownGroup)?;
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
    /// [`Removed`](crate::keydist::Removed) notice per group.
    pub fn revoke_device<R: CryptoRng + ?Sized>(
        &mut self,
        id: DeviceId,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let di = self.state.device_index(id).ok_or(Error::UnknownDevice)?;
        let mut next = self.state.clone();
        let dev = next.devices.get(di).cloned().ok_or(Error::UnknownDevice)?;
        let mut created: Vec<(u32, u16), G> = Vec::new();
        for m in &dev.memberships {
            if let Some(e) = next.remove_member(self.next_counter, di, m.group_id, now, rng)? {
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
        let gi = self
            .state
            .group_index(group_id)
            .ok_or(Error::UnknownGroup)?;
        let mut next = self.state.clone();
        let e = next.new_epoch(self.next_counter, gi, now, rng)?;
        self.commit(next)?;
        self.state.mark_group_due(gi, now);
        self.push_event(ServerEvent::EpochCreated {
            group_id,
            epoch: e,
            cause: RekeyCause::Operator,
        });
        Ok(e)
    }

    /// A group's current and staged epochs.
    pub fn epochs(&self, group_id: u32) -> Option<(Option<u16>, Option<u16>)> {
        let g = self.state.groups.get(self.state.group_index(group_id)?)?;
        Some((
            g.current.as_ref().map(|e| e.epoch),
            g.staged.as_ref().map(|e| e.epoch),
        ))
    }

    /// The highest epoch a group ever had.
    pub fn latest_epoch(&self, group_id: u32) -> Option<u16> {
        let g = self.state.groups.get(self.state.group_index(group_id)?)?;
        Some(g.latest_epoch)
    }

    /// A device's membership in a group: its sender ID (if a sender).
    pub fn membership(&self, device: DeviceId, group_id: u32) -> Option<Option<u8>> {
        let d = self.state.devices.get(self.state.device_index(device)?)?;
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
            .state
            .group_index(group_id)
            .and_then(|i| self.state.groups.get(i))
        else {
            return false;
        };
        self.state
            .device_index(device)
            .and_then(|i| self.state.devices.get(i))
            .and_then(|d| d.memberships.iter().find(|m| m.group_id == group_id))
            .is_some_and(|m| g.is_pending(m))
    }

    /// The spec a group was created with (the running state's, whatever a configuration
    /// file says now).
    pub fn group_spec(&self, group_id: u32) -> Option<&GroupSpec> {
        self.state
            .group_index(group_id)
            .and_then(|gi| self.state.groups.get(gi))
            .map(|g| &g.spec)
    }

    /// What the server holds for an admitted device: its credential, its role and the groups
    /// it may join.
    pub fn device(&self, id: DeviceId) -> Option<(&DeviceCredential, Role, &[u32])> {
        self.state
            .device_index(id)
            .and_then(|di| self.state.devices.get(di))
            .map(|d| (&d.credential, d.role, d.groups.as_slice()))
    }
}
