//! Unbounded live records for the key server ([`StdTables`]): groups, devices and (device,
//! group) records in ordered maps, with indexes so that nothing the key server does per
//! message scans every device or every group of a device: the members and senders of each
//! group, the pending memberships by the time their bundle is due, and the groups by their
//! next timer (activation or scheduled rotation). A device may be in any number of groups.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use group_core::keydist::{DeviceId, DeviceRec, GroupRec, MemberRec, ServerTables};

/// The key server's live records, without a capacity.
#[derive(Default)]
pub struct StdTables {
    groups: BTreeMap<u32, GroupRec>,
    devices: BTreeMap<DeviceId, DeviceRec>,
    /// (device, group) records, ordered by device: a device's groups are one range.
    records: BTreeMap<(DeviceId, u32), MemberRec>,
    /// The members of each group (records with a membership).
    members: HashMap<u32, BTreeSet<DeviceId>>,
    /// The members of each group that hold a sender ID in it.
    senders: HashMap<u32, BTreeSet<DeviceId>>,
    due: BTreeSet<(u64, DeviceId, u32)>,
    due_of: HashMap<(DeviceId, u32), u64>,
    timers: BTreeSet<(u64, u32)>,
    timer_of: HashMap<u32, u64>,
}

impl std::fmt::Debug for StdTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdTables")
            .field("groups", &self.groups.len())
            .field("devices", &self.devices.len())
            .field("records", &self.records.len())
            .field("pending", &self.due.len())
            .finish_non_exhaustive()
    }
}

impl StdTables {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Re-reads when membership (`id`, `gid`) is due (if it is pending).
    fn index_due(&mut self, id: DeviceId, gid: u32) {
        if let Some(at) = self.due_of.remove(&(id, gid)) {
            self.due.remove(&(at, id, gid));
        }
        let at = match (self.records.get(&(id, gid)), self.groups.get(&gid)) {
            (Some(r), Some(g)) => r.due_at(g),
            _ => None,
        };
        if let Some(at) = at {
            self.due.insert((at, id, gid));
            self.due_of.insert((id, gid), at);
        }
    }

    /// Re-reads group `gid`'s timer.
    fn index_timer(&mut self, gid: u32) {
        if let Some(at) = self.timer_of.remove(&gid) {
            self.timers.remove(&(at, gid));
        }
        let has_members = self.members.get(&gid).is_some_and(|m| !m.is_empty());
        if let Some(at) = self.groups.get(&gid).and_then(|g| g.timer(|| has_members)) {
            self.timers.insert((at, gid));
            self.timer_of.insert(gid, at);
        }
    }

    /// Drops record (`id`, `gid`) from the indexes.
    fn unindex(&mut self, id: DeviceId, gid: u32) {
        if let Some(at) = self.due_of.remove(&(id, gid)) {
            self.due.remove(&(at, id, gid));
        }
        if let Some(s) = self.senders.get_mut(&gid) {
            s.remove(&id);
            if s.is_empty() {
                self.senders.remove(&gid);
            }
        }
        if let Some(m) = self.members.get_mut(&gid) {
            m.remove(&id);
            if m.is_empty() {
                self.members.remove(&gid);
                self.index_timer(gid);
            }
        }
    }

    /// Adds record (`id`, `gid`) to the indexes.
    fn index(&mut self, id: DeviceId, gid: u32) {
        let (member, sender) = self
            .records
            .get(&(id, gid))
            .map_or((false, false), |r| (r.is_member(), r.sender_id().is_some()));
        if sender {
            self.senders.entry(gid).or_default().insert(id);
        }
        if member {
            let set = self.members.entry(gid).or_default();
            let first = set.is_empty();
            set.insert(id);
            if first {
                self.index_timer(gid);
            }
        }
        self.index_due(id, gid);
    }
}

impl ServerTables for StdTables {
    fn group(&self, group_id: u32) -> Option<&GroupRec> {
        self.groups.get(&group_id)
    }

    fn groups(&self) -> impl Iterator<Item = &GroupRec> {
        self.groups.values()
    }

    fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn put_group(&mut self, group: GroupRec) {
        let gid = group.group_id();
        let changed = group.changed_at();
        let old = self.groups.insert(gid, group);
        self.index_timer(gid);
        // Whether a member is pending depends on what the group last changed: re-read the
        // members only when that moved (a rekey, a sender list change), not on every commit.
        if old.is_some_and(|o| o.changed_at() == changed) {
            return;
        }
        let ids: Vec<DeviceId> = self
            .members
            .get(&gid)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.index_due(id, gid);
        }
    }

    fn device(&self, id: DeviceId) -> Option<&DeviceRec> {
        self.devices.get(&id)
    }

    fn devices(&self) -> impl Iterator<Item = &DeviceRec> {
        self.devices.values()
    }

    fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn put_device(&mut self, device: DeviceRec) {
        self.devices.insert(device.id(), device);
    }

    fn remove_device(&mut self, id: DeviceId) {
        self.devices.remove(&id);
    }

    fn member(&self, id: DeviceId, group_id: u32) -> Option<&MemberRec> {
        self.records.get(&(id, group_id))
    }

    fn all_members(&self) -> impl Iterator<Item = &MemberRec> {
        self.records.values()
    }

    fn member_count(&self) -> usize {
        self.records.len()
    }

    fn put_member(&mut self, member: MemberRec) {
        let key = (member.device(), member.group_id());
        self.unindex(key.0, key.1);
        self.records.insert(key, member);
        self.index(key.0, key.1);
    }

    fn remove_member(&mut self, id: DeviceId, group_id: u32) {
        self.unindex(id, group_id);
        self.records.remove(&(id, group_id));
    }

    fn update_member<R>(
        &mut self,
        id: DeviceId,
        group_id: u32,
        f: impl FnOnce(&mut MemberRec) -> R,
    ) -> Option<R> {
        let r = self.records.get_mut(&(id, group_id)).map(f)?;
        self.index_due(id, group_id);
        Some(r)
    }

    fn has_room(&self, _groups: usize, _devices: usize, _members: usize) -> bool {
        true
    }

    fn member_of(&self, id: DeviceId) -> impl Iterator<Item = &MemberRec> {
        self.records.range((id, 0)..=(id, u32::MAX)).map(|(_, r)| r)
    }

    fn members(&self, group_id: u32) -> impl Iterator<Item = &MemberRec> {
        self.members
            .get(&group_id)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(move |id| self.records.get(&(*id, group_id)))
    }

    fn senders(&self, group_id: u32) -> impl Iterator<Item = &MemberRec> {
        self.senders
            .get(&group_id)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(move |id| self.records.get(&(*id, group_id)))
    }

    fn update_members(&mut self, group_id: u32, mut f: impl FnMut(&mut MemberRec)) {
        let ids: Vec<DeviceId> = self
            .members
            .get(&group_id)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(r) = self.records.get_mut(&(id, group_id)) {
                f(r);
            }
            self.index_due(id, group_id);
        }
    }

    fn due_member(&self, now: u64) -> Option<(DeviceId, u32)> {
        self.due
            .first()
            .filter(|(at, _, _)| *at <= now)
            .map(|(_, id, gid)| (*id, *gid))
    }

    fn next_member_time(&self) -> Option<u64> {
        self.due.first().map(|(at, _, _)| *at)
    }

    fn due_group(&self, now: u64) -> Option<u32> {
        self.timers
            .first()
            .filter(|(at, _)| *at <= now)
            .map(|(_, gid)| *gid)
    }

    fn next_group_time(&self) -> Option<u64> {
        self.timers.first().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests;
