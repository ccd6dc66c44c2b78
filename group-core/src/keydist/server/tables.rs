//! Where the key server keeps its live records: the [`ServerTables`] trait (groups by ID,
//! devices by ID, memberships by (device, group), the members of a group) and its
//! fixed-capacity implementation [`HeaplessTables`] (no allocation: the embedded
//! configuration). group-std has an unbounded one.
//!
//! The tables hold what is durable in the store (and a few in-memory fields of the records:
//! retransmission timers, acknowledgements, join challenges). The key server changes a record
//! only through a transaction ([`Txn`](super::txn::Txn)): staged copies, committed to the
//! store, and only then put here with [`put_group`](ServerTables::put_group),
//! [`put_device`](ServerTables::put_device), [`put_member`](ServerTables::put_member) and the
//! removals. Those calls cannot fail: the key server asks [`has_room`](ServerTables::has_room)
//! before it commits.

use heapless::Vec;

use super::state::{DeviceRec, GroupRec, MemberRec};
use crate::keydist::vocabulary::DeviceId;

/// The live records of a key server.
///
/// A [`MemberRec`] exists for every (device, group) the device is admitted to; it is a
/// *member* of the group while [`MemberRec::is_member`]. There is no limit per device in the
/// trait: a device may be admitted to any number of groups.
///
/// Contract: [`update_member`](Self::update_member) and
/// [`update_members`](Self::update_members) change in-memory fields only (timers,
/// acknowledgements, challenges), never whether a membership exists or its sender ID:
/// memberships come and go through [`put_member`](Self::put_member), so an implementation may
/// index the members and senders of a group there. An implementation that indexes timers
/// re-reads a record after each of these calls ([`MemberRec::due_at`], [`GroupRec::timer`]).
pub trait ServerTables {
    /// Group `group_id`.
    fn group(&self, group_id: u32) -> Option<&GroupRec>;
    /// Every group.
    fn groups(&self) -> impl Iterator<Item = &GroupRec>;
    /// How many groups there are.
    fn group_count(&self) -> usize;
    /// Inserts or replaces a group (room was checked with [`has_room`](Self::has_room)).
    fn put_group(&mut self, group: GroupRec);
    /// Device `id`.
    fn device(&self, id: DeviceId) -> Option<&DeviceRec>;
    /// Every device.
    fn devices(&self) -> impl Iterator<Item = &DeviceRec>;
    /// How many devices there are.
    fn device_count(&self) -> usize;
    /// Inserts or replaces a device (room was checked with [`has_room`](Self::has_room)).
    fn put_device(&mut self, device: DeviceRec);
    /// Removes a device record (its [`MemberRec`]s are removed on their own).
    fn remove_device(&mut self, id: DeviceId);
    /// The record of device `id` in group `group_id` (it is admitted there).
    fn member(&self, id: DeviceId, group_id: u32) -> Option<&MemberRec>;
    /// Every (device, group) record.
    fn all_members(&self) -> impl Iterator<Item = &MemberRec>;
    /// How many (device, group) records there are.
    fn member_count(&self) -> usize;
    /// Inserts or replaces a (device, group) record (room was checked).
    fn put_member(&mut self, member: MemberRec);
    /// Removes the record of device `id` in group `group_id`.
    fn remove_member(&mut self, id: DeviceId, group_id: u32);
    /// Calls `f` with the record of device `id` in group `group_id` to change in-memory
    /// fields (see the trait's contract).
    fn update_member<R>(
        &mut self,
        id: DeviceId,
        group_id: u32,
        f: impl FnOnce(&mut MemberRec) -> R,
    ) -> Option<R>;
    /// Whether `groups` more groups, `devices` more devices and `members` more (device, group)
    /// records fit.
    fn has_room(&self, groups: usize, devices: usize, members: usize) -> bool;
    /// The records of device `id` (the groups it is admitted to). The default scans every
    /// record; an implementation with an index answers in the device's number of groups.
    fn member_of(&self, id: DeviceId) -> impl Iterator<Item = &MemberRec> {
        self.all_members().filter(move |m| m.device() == id)
    }
    /// The members of group `group_id` (records with a membership). The default scans every
    /// record; an implementation with an index answers in the group's size.
    fn members(&self, group_id: u32) -> impl Iterator<Item = &MemberRec> {
        self.all_members()
            .filter(move |m| m.group_id() == group_id && m.is_member())
    }
    /// The members of group `group_id` that hold a sender ID in it (at most 255). The default
    /// filters [`members`](Self::members); an implementation with an index answers in the
    /// number of senders.
    fn senders(&self, group_id: u32) -> impl Iterator<Item = &MemberRec> {
        self.members(group_id).filter(|m| m.sender_id().is_some())
    }
    /// Calls `f` with each member of group `group_id`, to change in-memory fields.
    fn update_members(&mut self, group_id: u32, f: impl FnMut(&mut MemberRec));
    /// The first membership (device, group) whose bundle is due at `now`. The default scans
    /// every record in table order.
    fn due_member(&self, now: u64) -> Option<(DeviceId, u32)> {
        self.all_members().find_map(|m| {
            let at = m.due_at(self.group(m.group_id())?)?;
            (at <= now).then_some((m.device(), m.group_id()))
        })
    }
    /// When the next bundle is due (the earliest [`MemberRec::due_at`]). The default scans.
    fn next_member_time(&self) -> Option<u64> {
        self.all_members()
            .filter_map(|m| m.due_at(self.group(m.group_id())?))
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

/// Fixed-capacity tables: up to `D` devices, `G` groups and `M` (device, group) records
/// (admissions, with their memberships) in all, in place, no allocation. Lookups scan (a few
/// dozen records). The embedded configuration's capacities: a site with more needs
/// group-std's unbounded tables.
#[derive(Clone)]
pub struct HeaplessTables<const D: usize, const G: usize, const M: usize = 128> {
    groups: Vec<GroupRec, G>,
    devices: Vec<DeviceRec, D>,
    members: Vec<MemberRec, M>,
}

impl<const D: usize, const G: usize, const M: usize> Default for HeaplessTables<D, G, M> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            devices: Vec::new(),
            members: Vec::new(),
        }
    }
}

impl<const D: usize, const G: usize, const M: usize> ServerTables for HeaplessTables<D, G, M> {
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

    fn device(&self, id: DeviceId) -> Option<&DeviceRec> {
        self.devices.iter().find(|d| d.id() == id)
    }

    fn devices(&self) -> impl Iterator<Item = &DeviceRec> {
        self.devices.iter()
    }

    fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn put_device(&mut self, device: DeviceRec) {
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

    fn member(&self, id: DeviceId, group_id: u32) -> Option<&MemberRec> {
        self.members
            .iter()
            .find(|m| m.device() == id && m.group_id() == group_id)
    }

    fn all_members(&self) -> impl Iterator<Item = &MemberRec> {
        self.members.iter()
    }

    fn member_count(&self) -> usize {
        self.members.len()
    }

    fn put_member(&mut self, member: MemberRec) {
        let (id, gid) = (member.device(), member.group_id());
        match self
            .members
            .iter_mut()
            .find(|m| m.device() == id && m.group_id() == gid)
        {
            Some(m) => *m = member,
            None => {
                let _ = self.members.push(member);
            }
        }
    }

    fn remove_member(&mut self, id: DeviceId, group_id: u32) {
        if let Some(i) = self
            .members
            .iter()
            .position(|m| m.device() == id && m.group_id() == group_id)
        {
            self.members.swap_remove(i);
        }
    }

    fn update_member<R>(
        &mut self,
        id: DeviceId,
        group_id: u32,
        f: impl FnOnce(&mut MemberRec) -> R,
    ) -> Option<R> {
        self.members
            .iter_mut()
            .find(|m| m.device() == id && m.group_id() == group_id)
            .map(f)
    }

    fn has_room(&self, groups: usize, devices: usize, members: usize) -> bool {
        self.groups.len().saturating_add(groups) <= G
            && self.devices.len().saturating_add(devices) <= D
            && self.members.len().saturating_add(members) <= M
    }

    fn update_members(&mut self, group_id: u32, mut f: impl FnMut(&mut MemberRec)) {
        for m in self
            .members
            .iter_mut()
            .filter(|m| m.group_id() == group_id && m.is_member())
        {
            f(m);
        }
    }
}
