//! Unbounded live records for the key server ([`StdTables`]): groups and devices in ordered
//! maps, with indexes so that nothing the key server does per message scans every device:
//! the members of each group, the pending memberships by the time their bundle is due, and
//! the groups by their next timer (activation or scheduled rotation).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use group_core::keydist::{DeviceId, DeviceRec, GroupRec, ServerTables};

/// The key server's live records, without a capacity: devices may be in up to `G` groups each.
#[derive(Default)]
pub struct StdTables<const G: usize> {
    groups: BTreeMap<u32, GroupRec>,
    devices: BTreeMap<DeviceId, DeviceRec<G>>,
    members: HashMap<u32, BTreeSet<DeviceId>>,
    /// The members of each group that hold a sender ID in it.
    senders: HashMap<u32, BTreeSet<DeviceId>>,
    due: BTreeSet<(u64, DeviceId, u32)>,
    due_of: HashMap<(DeviceId, u32), u64>,
    timers: BTreeSet<(u64, u32)>,
    timer_of: HashMap<u32, u64>,
}

impl<const G: usize> std::fmt::Debug for StdTables<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdTables")
            .field("groups", &self.groups.len())
            .field("devices", &self.devices.len())
            .field("pending", &self.due.len())
            .finish_non_exhaustive()
    }
}

impl<const G: usize> StdTables<G> {
    /// Empty tables.
    pub fn new() -> Self {
        Self {
            groups: BTreeMap::new(),
            devices: BTreeMap::new(),
            members: HashMap::new(),
            senders: HashMap::new(),
            due: BTreeSet::new(),
            due_of: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
        }
    }

    /// Re-reads when membership (`id`, `gid`) is due (if it is pending).
    fn index_member(&mut self, id: DeviceId, gid: u32) {
        if let Some(at) = self.due_of.remove(&(id, gid)) {
            self.due.remove(&(at, id, gid));
        }
        let groups = &self.groups;
        let at = self.devices.get(&id).and_then(|d| {
            d.due_at(|g| groups.get(&g))
                .find(|(g, _)| *g == gid)
                .map(|(_, at)| at)
        });
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

    /// Drops device `id` from the indexes of groups `gids`.
    fn unindex_device(&mut self, id: DeviceId, gids: &[u32]) {
        for &gid in gids {
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
    }

    /// Adds device `id` to the indexes of the groups it is a member of.
    fn index_device(&mut self, id: DeviceId) {
        let gids: Vec<(u32, bool)> = self
            .devices
            .get(&id)
            .map(|d| {
                d.member_of()
                    .map(|g| (g, d.sender_in(g).is_some()))
                    .collect()
            })
            .unwrap_or_default();
        for (gid, sender) in gids {
            if sender {
                self.senders.entry(gid).or_default().insert(id);
            }
            let set = self.members.entry(gid).or_default();
            let first = set.is_empty();
            set.insert(id);
            if first {
                self.index_timer(gid);
            }
            self.index_member(id, gid);
        }
    }

    fn gids_of(&self, id: DeviceId) -> Vec<u32> {
        self.devices
            .get(&id)
            .map(|d| d.member_of().collect())
            .unwrap_or_default()
    }
}

impl<const G: usize> ServerTables<G> for StdTables<G> {
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
            self.index_member(id, gid);
        }
    }

    fn device(&self, id: DeviceId) -> Option<&DeviceRec<G>> {
        self.devices.get(&id)
    }

    fn update_device<R>(
        &mut self,
        id: DeviceId,
        f: impl FnOnce(&mut DeviceRec<G>) -> R,
    ) -> Option<R> {
        let r = self.devices.get_mut(&id).map(f)?;
        for gid in self.gids_of(id) {
            self.index_member(id, gid);
        }
        Some(r)
    }

    fn devices(&self) -> impl Iterator<Item = &DeviceRec<G>> {
        self.devices.values()
    }

    fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn put_device(&mut self, device: DeviceRec<G>) {
        let id = device.id();
        let old = self.gids_of(id);
        self.unindex_device(id, &old);
        self.devices.insert(id, device);
        self.index_device(id);
    }

    fn remove_device(&mut self, id: DeviceId) {
        let old = self.gids_of(id);
        self.unindex_device(id, &old);
        self.devices.remove(&id);
    }

    fn has_room(&self, _groups: usize, _devices: usize) -> bool {
        true
    }

    fn members(&self, group_id: u32) -> impl Iterator<Item = &DeviceRec<G>> {
        self.members
            .get(&group_id)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|id| self.devices.get(id))
    }

    fn senders(&self, group_id: u32) -> impl Iterator<Item = &DeviceRec<G>> {
        self.senders
            .get(&group_id)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|id| self.devices.get(id))
    }

    fn update_members(&mut self, group_id: u32, mut f: impl FnMut(&mut DeviceRec<G>)) {
        let ids: Vec<DeviceId> = self
            .members
            .get(&group_id)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(d) = self.devices.get_mut(&id) {
                f(d);
            }
            for gid in self.gids_of(id) {
                self.index_member(id, gid);
            }
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
