//! A key-server transaction: staged copies of the records one operation changes (at most one
//! device, up to `G` groups and `G` (device, group) records, the counter reservation). Reads
//! see the staged copy if there is one, else the live record.
//! [`KeyServer::commit`](super::KeyServer) writes exactly these records to the store in one
//! transaction and only then puts them live; dropping a transaction (a failed check, a failed
//! commit) leaves the live state as it was.

use heapless::Vec;

use super::state::{DeviceRec, GroupRec, MemberRec};
use super::tables::ServerTables;
use crate::keydist::error::Error;
use crate::keydist::vocabulary::DeviceId;

/// What a transaction does to its device.
pub(super) enum DeviceChange {
    Put(DeviceRec),
    Remove(DeviceId),
}

/// What a transaction does to a (device, group) record.
pub(super) enum MemberChange {
    Put(MemberRec),
    Remove(DeviceId, u32),
}

impl MemberChange {
    pub(super) fn key(&self) -> (DeviceId, u32) {
        match self {
            MemberChange::Put(m) => (m.device(), m.group_id()),
            MemberChange::Remove(d, g) => (*d, *g),
        }
    }
}

/// Staged changes of one operation.
pub(super) struct Txn<const G: usize> {
    pub(super) counter_reserved: Option<u64>,
    pub(super) groups: Vec<GroupRec, G>,
    pub(super) device: Option<DeviceChange>,
    pub(super) members: Vec<MemberChange, G>,
}

impl<const G: usize> Txn<G> {
    pub(super) const fn new() -> Self {
        Self {
            counter_reserved: None,
            groups: Vec::new(),
            device: None,
            members: Vec::new(),
        }
    }

    /// Group `id`, staged for change.
    pub(super) fn group_mut<T: ServerTables>(
        &mut self,
        t: &T,
        id: u32,
    ) -> Result<&mut GroupRec, Error> {
        let i = match self.groups.iter().position(|g| g.group_id() == id) {
            Some(i) => i,
            None => {
                let g = t.group(id).ok_or(Error::UnknownGroup)?.clone();
                self.groups.push(g).map_err(|_| Error::CapacityExceeded)?;
                self.groups.len().saturating_sub(1)
            }
        };
        self.groups.get_mut(i).ok_or(Error::UnknownGroup)
    }

    /// A new group.
    pub(super) fn insert_group(&mut self, g: GroupRec) -> Result<(), Error> {
        self.groups.push(g).map_err(|_| Error::CapacityExceeded)
    }

    /// The record of device `id` in group `gid`, staged for change (it must exist: the device
    /// is admitted to the group).
    pub(super) fn member_mut<T: ServerTables>(
        &mut self,
        t: &T,
        id: DeviceId,
        gid: u32,
    ) -> Result<&mut MemberRec, Error> {
        let i = match self.members.iter().position(|c| c.key() == (id, gid)) {
            Some(i) => i,
            None => {
                let m = t.member(id, gid).ok_or(Error::NotAdmitted)?.clone();
                self.members
                    .push(MemberChange::Put(m))
                    .map_err(|_| Error::CapacityExceeded)?;
                self.members.len().saturating_sub(1)
            }
        };
        match self.members.get_mut(i) {
            Some(MemberChange::Put(m)) => Ok(m),
            _ => Err(Error::NotAdmitted),
        }
    }

    /// The record of device `id` in group `gid` and the group, both staged for change.
    pub(super) fn member_and_group_mut<T: ServerTables>(
        &mut self,
        t: &T,
        id: DeviceId,
        gid: u32,
    ) -> Result<(&mut MemberRec, &mut GroupRec), Error> {
        self.member_mut(t, id, gid)?;
        self.group_mut(t, gid)?;
        let g = self
            .groups
            .iter_mut()
            .find(|g| g.group_id() == gid)
            .ok_or(Error::UnknownGroup)?;
        let m = self
            .members
            .iter_mut()
            .find_map(|c| match c {
                MemberChange::Put(m) if m.device() == id && m.group_id() == gid => Some(m),
                _ => None,
            })
            .ok_or(Error::NotAdmitted)?;
        Ok((m, g))
    }

    /// A new or replaced (device, group) record.
    pub(super) fn put_member(&mut self, m: MemberRec) -> Result<(), Error> {
        let key = (m.device(), m.group_id());
        match self.members.iter_mut().find(|c| c.key() == key) {
            Some(c) => *c = MemberChange::Put(m),
            None => self
                .members
                .push(MemberChange::Put(m))
                .map_err(|_| Error::CapacityExceeded)?,
        }
        Ok(())
    }

    /// Removes the record of device `id` in group `gid`.
    pub(super) fn remove_member(&mut self, id: DeviceId, gid: u32) -> Result<(), Error> {
        match self.members.iter_mut().find(|c| c.key() == (id, gid)) {
            Some(c) => *c = MemberChange::Remove(id, gid),
            None => self
                .members
                .push(MemberChange::Remove(id, gid))
                .map_err(|_| Error::CapacityExceeded)?,
        }
        Ok(())
    }

    /// Room for `n` more (device, group) changes.
    pub(super) fn members_room(&self) -> usize {
        G.saturating_sub(self.members.len())
    }

    /// A new device.
    pub(super) fn insert_device(&mut self, d: DeviceRec) -> Result<(), Error> {
        if self.device.is_some() {
            return Err(Error::CapacityExceeded);
        }
        self.device = Some(DeviceChange::Put(d));
        Ok(())
    }

    /// Removes device `id`.
    pub(super) fn remove_device(&mut self, id: DeviceId) {
        self.device = Some(DeviceChange::Remove(id));
    }
}
