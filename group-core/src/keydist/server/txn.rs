//! A key-server transaction: staged copies of the records one operation changes (at most one
//! device, up to `G` groups, the counter reservation). Reads see the staged copy if there is
//! one, else the live record. [`KeyServer::commit`](super::KeyServer) writes exactly these
//! records to the store in one transaction and only then puts them live; dropping a
//! transaction (a failed check, a failed commit) leaves the live state as it was.

use heapless::Vec;

use super::state::{DeviceRec, GroupRec};
use super::tables::ServerTables;
use crate::keydist::error::Error;
use crate::keydist::vocabulary::DeviceId;

/// What a transaction does to its device.
pub(super) enum DeviceChange<const G: usize> {
    Put(DeviceRec<G>),
    Remove(DeviceId),
}

/// Staged changes of one operation.
pub(super) struct Txn<const G: usize> {
    pub(super) counter_reserved: Option<u64>,
    pub(super) groups: Vec<GroupRec, G>,
    pub(super) device: Option<DeviceChange<G>>,
}

impl<const G: usize> Txn<G> {
    pub(super) const fn new() -> Self {
        Self {
            counter_reserved: None,
            groups: Vec::new(),
            device: None,
        }
    }

    /// Group `id`, staged for change.
    pub(super) fn group_mut<T: ServerTables<G>>(
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

    /// Device `id`, staged for change.
    pub(super) fn device_mut<T: ServerTables<G>>(
        &mut self,
        t: &T,
        id: DeviceId,
    ) -> Result<&mut DeviceRec<G>, Error> {
        let staged = match &self.device {
            Some(DeviceChange::Put(d)) => d.id() == id,
            Some(DeviceChange::Remove(_)) => return Err(Error::UnknownDevice),
            None => false,
        };
        if !staged {
            if self.device.is_some() {
                // One device per transaction.
                return Err(Error::CapacityExceeded);
            }
            let d = t.device(id).ok_or(Error::UnknownDevice)?.clone();
            self.device = Some(DeviceChange::Put(d));
        }
        match &mut self.device {
            Some(DeviceChange::Put(d)) => Ok(d),
            _ => Err(Error::UnknownDevice),
        }
    }

    /// Device `id` and group `group_id`, both staged for change.
    pub(super) fn device_and_group_mut<T: ServerTables<G>>(
        &mut self,
        t: &T,
        id: DeviceId,
        group_id: u32,
    ) -> Result<(&mut DeviceRec<G>, &mut GroupRec), Error> {
        self.device_mut(t, id)?;
        self.group_mut(t, group_id)?;
        let g = self
            .groups
            .iter_mut()
            .find(|g| g.group_id() == group_id)
            .ok_or(Error::UnknownGroup)?;
        match &mut self.device {
            Some(DeviceChange::Put(d)) => Ok((d, g)),
            _ => Err(Error::UnknownDevice),
        }
    }

    /// A new device.
    pub(super) fn insert_device(&mut self, d: DeviceRec<G>) -> Result<(), Error> {
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
