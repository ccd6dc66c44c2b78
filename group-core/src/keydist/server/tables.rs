//! Where the key server keeps its live records: the [`ServerTables`] trait (groups by ID,
//! devices by ID, the members of a group) and its fixed-capacity implementation
//! [`HeaplessTables`] (no allocation: the embedded configuration). group-std has an unbounded
//! one.
//!
//! The tables hold what is durable in the store (and a few in-memory fields of the records:
//! retransmission timers, acknowledgements, join challenges). The key server changes a record
//! only through a transaction ([`Txn`](super::txn::Txn)): staged copies, committed to the
//! store, and only then put here with [`put_group`](ServerTables::put_group),
//! [`put_device`](ServerTables::put_device) and
//! [`remove_device`](ServerTables::remove_device). Those calls cannot fail: the key server
//! asks [`has_room`](ServerTables::has_room) before it commits.

use heapless::Vec;

use super::state::{DeviceRec, GroupRec};
use crate::keydist::vocabulary::DeviceId;

/// The live records of a key server whose devices may be in up to `G` groups each.
///
/// Contract: [`update_device`](Self::update_device) and
/// [`update_members`](Self::update_members) change in-memory fields only (timers,
/// acknowledgements, challenges), never a membership's existence: memberships come and go
/// through [`put_device`](Self::put_device), so an implementation may index the members of a
/// group there. An implementation that indexes timers re-reads a record after each of these
/// calls ([`DeviceRec::due_at`], [`GroupRec::timer`]).
pub trait ServerTables<const G: usize> {
    /// Group `group_id`.
    fn group(&self, group_id: u32) -> Option<&GroupRec>;
    /// Every group.
    fn groups(&self) -> impl Iterator<Item = &GroupRec>;
    /// How many groups there are.
    fn group_count(&self) -> usize;
    /// Inserts or replaces a group (room was checked with [`has_room`](Self::has_room)).
    fn put_group(&mut self, group: GroupRec);
    /// Device `id`.
    fn device(&self, id: DeviceId) -> Option<&DeviceRec<G>>;
    /// Calls `f` with device `id` to change in-memory fields (see the trait's contract).
    fn update_device<R>(
        &mut self,
        id: DeviceId,
        f: impl FnOnce(&mut DeviceRec<G>) -> R,
    ) -> Option<R>;
    /// Every device.
    fn devices(&self) -> impl Iterator<Item = &DeviceRec<G>>;
    /// How many devices there are.
    fn device_count(&self) -> usize;
    /// Inserts or replaces a device (room was checked with [`has_room`](Self::has_room)).
    fn put_device(&mut self, device: DeviceRec<G>);
    /// Removes a device.
    fn remove_device(&mut self, id: DeviceId);
    /// Whether `groups` more groups and `devices` more devices fit.
    fn has_room(&self, groups: usize, devices: usize) -> bool;
    /// The members of group `group_id` (devices with a membership in it). The default scans
    /// every device; an implementation with an index answers in the group's size.
    fn members(&self, group_id: u32) -> impl Iterator<Item = &DeviceRec<G>> {
        self.devices()
            .filter(move |d| d.member_of().any(|g| g == group_id))
    }
    /// The members of group `group_id` that hold a sender ID in it (at most 255). The default
    /// filters [`members`](Self::members); an implementation with an index answers in the
    /// number of senders.
    fn senders(&self, group_id: u32) -> impl Iterator<Item = &DeviceRec<G>> {
        self.members(group_id)
            .filter(move |d| d.sender_in(group_id).is_some())
    }
    /// Calls `f` with each member of group `group_id`, to change in-memory fields.
    fn update_members(&mut self, group_id: u32, f: impl FnMut(&mut DeviceRec<G>));
    /// The first membership (device, group) whose bundle is due at `now`. The default scans
    /// every membership in table order.
    fn due_member(&self, now: u64) -> Option<(DeviceId, u32)> {
        self.devices().find_map(|d| {
            let gid = d.due_at(|g| self.group(g)).find(|(_, at)| *at <= now)?.0;
            Some((d.id(), gid))
        })
    }
    /// When the next bundle is due (the earliest [`DeviceRec::due_at`]). The default scans.
    fn next_member_time(&self) -> Option<u64> {
        self.devices()
            .flat_map(|d| d.due_at(|g| self.group(g)).map(|(_, at)| at))
            .min()
    }
    /// The first group whose timer ([`GroupRec::timer`]: activation or scheduled rotation)
    /// has come at `now`. The default scans every group.
    fn due_group(&self, now: u64) -> Option<u32> {
        self.groups()
            .find(|g| {
                g.timer(|| self.members(g.group_id()).next().is_some())
                    .is_some_and(|at| at <= now)
            })
            .map(GroupRec::group_id)
    }
    /// When the next group timer comes. The default scans every group.
    fn next_group_time(&self) -> Option<u64> {
        self.groups()
            .filter_map(|g| g.timer(|| self.members(g.group_id()).next().is_some()))
            .min()
    }
}

/// Fixed-capacity tables: up to `D` devices and `G` groups (and `G` groups per device), in
/// place, no allocation. Lookups scan (a few dozen records).
#[derive(Clone)]
pub struct HeaplessTables<const D: usize, const G: usize> {
    groups: Vec<GroupRec, G>,
    devices: Vec<DeviceRec<G>, D>,
}

impl<const D: usize, const G: usize> Default for HeaplessTables<D, G> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            devices: Vec::new(),
        }
    }
}

impl<const D: usize, const G: usize> ServerTables<G> for HeaplessTables<D, G> {
    fn group(&self, group_id: u32) -> Option<&GroupRec> {
        self.groups.iter().find(|g| g.group_id() == group_id)
    }

    fn groups(&self) -> impl Iterator<Item = &GroupRec> {
        self.groups.iter()
    }

    fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn put_group(&mut self, group: GroupRec) {
        let id = group.group_id();
        match self.groups.iter_mut().find(|g| g.group_id() == id) {
            Some(g) => *g = group,
            // Room was checked before the commit; a full table would keep the old state.
            None => {
                let _ = self.groups.push(group);
            }
        }
    }

    fn device(&self, id: DeviceId) -> Option<&DeviceRec<G>> {
        self.devices.iter().find(|d| d.id() == id)
    }

    fn update_device<R>(
        &mut self,
        id: DeviceId,
        f: impl FnOnce(&mut DeviceRec<G>) -> R,
    ) -> Option<R> {
        self.devices.iter_mut().find(|d| d.id() == id).map(f)
    }

    fn devices(&self) -> impl Iterator<Item = &DeviceRec<G>> {
        self.devices.iter()
    }

    fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn put_device(&mut self, device: DeviceRec<G>) {
        let id = device.id();
        match self.devices.iter_mut().find(|d| d.id() == id) {
            Some(d) => *d = device,
            None => {
                let _ = self.devices.push(device);
            }
        }
    }

    fn remove_device(&mut self, id: DeviceId) {
        if let Some(i) = self.devices.iter().position(|d| d.id() == id) {
            self.devices.swap_remove(i);
        }
    }

    fn has_room(&self, groups: usize, devices: usize) -> bool {
        self.groups.len().saturating_add(groups) <= G
            && self.devices.len().saturating_add(devices) <= D
    }

    fn update_members(&mut self, group_id: u32, mut f: impl FnMut(&mut DeviceRec<G>)) {
        for d in self
            .devices
            .iter_mut()
            .filter(|d| d.member_of().any(|g| g == group_id))
        {
            f(d);
        }
    }
}
