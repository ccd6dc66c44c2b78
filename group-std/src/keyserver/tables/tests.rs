//! [`StdTables`]' indexes (members, senders, a device's groups, due bundles, group timers)
//! checked through the [`ServerTables`] trait against a naive recomputation from the records,
//! after seeded random sequences of puts, updates and removals of real records ([`pool`]):
//! groups, devices and (device, group) records; and the same sequences on group-core's
//! [`HeaplessTables`] give the same answers.

use std::collections::{BTreeMap, BTreeSet};

use group_core::keydist::{DeviceId, DeviceRec, GroupRec, HeaplessTables, MemberRec, ServerTables};

use super::StdTables;
use pool::{G, Pool, TestRng};

mod pool;

/// Devices of the heapless tables (more than the pool's ten).
const D: usize = 16;
/// (device, group) records of the heapless tables (the pool has 10 devices in up to 3 groups).
const M: usize = 40;
const STEPS: usize = 400;

/// What the tables answer, or what a naive recomputation from their records says.
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    groups: BTreeSet<u32>,
    devices: BTreeSet<DeviceId>,
    records: BTreeSet<(DeviceId, u32)>,
    member_of: BTreeMap<DeviceId, BTreeSet<u32>>,
    members: BTreeMap<u32, BTreeSet<DeviceId>>,
    senders: BTreeMap<u32, BTreeSet<DeviceId>>,
    next_member_time: Option<u64>,
    next_group_time: Option<u64>,
}

fn id_set<'a>(it: impl Iterator<Item = &'a MemberRec>) -> BTreeSet<DeviceId> {
    it.map(MemberRec::device).collect()
}

/// The group IDs a check asks about: every group, every record's, one nobody uses.
fn gids(t: &impl ServerTables) -> BTreeSet<u32> {
    let mut s: BTreeSet<u32> = t.groups().map(GroupRec::group_id).collect();
    s.extend(t.all_members().map(MemberRec::group_id));
    s.insert(99);
    s
}

/// The device IDs a check asks about: every device, every record's, one nobody uses.
fn dids(t: &impl ServerTables) -> BTreeSet<DeviceId> {
    let mut s: BTreeSet<DeviceId> = t.devices().map(DeviceRec::id).collect();
    s.extend(t.all_members().map(MemberRec::device));
    s.insert(DeviceId(999));
    s
}

/// The indexed answers, through the trait.
fn answers(t: &impl ServerTables) -> Answers {
    let gids = gids(t);
    Answers {
        groups: t.groups().map(GroupRec::group_id).collect(),
        devices: t.devices().map(DeviceRec::id).collect(),
        records: t
            .all_members()
            .map(|m| (m.device(), m.group_id()))
            .collect(),
        member_of: dids(t)
            .into_iter()
            .map(|d| (d, t.member_of(d).map(MemberRec::group_id).collect()))
            .collect(),
        members: gids.iter().map(|&g| (g, id_set(t.members(g)))).collect(),
        senders: gids.iter().map(|&g| (g, id_set(t.senders(g)))).collect(),
        next_member_time: t.next_member_time(),
        next_group_time: t.next_group_time(),
    }
}

/// Every pending membership (at, device, group), from the records alone.
fn naive_due(t: &impl ServerTables) -> BTreeSet<(u64, DeviceId, u32)> {
    let groups: BTreeMap<u32, &GroupRec> = t.groups().map(|g| (g.group_id(), g)).collect();
    t.all_members()
        .filter_map(|m| {
            let at = m.due_at(groups.get(&m.group_id())?)?;
            Some((at, m.device(), m.group_id()))
        })
        .collect()
}

/// Every group timer (at, group), from the records alone.
fn naive_timers(t: &impl ServerTables) -> BTreeSet<(u64, u32)> {
    t.groups()
        .filter_map(|g| {
            let gid = g.group_id();
            let has = t
                .all_members()
                .any(|m| m.group_id() == gid && m.is_member());
            g.timer(|| has).map(|at| (at, gid))
        })
        .collect()
}

/// The answers recomputed by scanning the records.
fn naive(t: &impl ServerTables) -> Answers {
    let gids = gids(t);
    let scan = |g: u32, sender: bool| -> BTreeSet<DeviceId> {
        t.all_members()
            .filter(|m| m.group_id() == g && m.is_member())
            .filter(|m| !sender || m.sender_id().is_some())
            .map(MemberRec::device)
            .collect()
    };
    Answers {
        groups: t.groups().map(GroupRec::group_id).collect(),
        devices: t.devices().map(DeviceRec::id).collect(),
        records: t
            .all_members()
            .map(|m| (m.device(), m.group_id()))
            .collect(),
        member_of: dids(t)
            .into_iter()
            .map(|d| {
                let gs = t
                    .all_members()
                    .filter(|m| m.device() == d)
                    .map(MemberRec::group_id)
                    .collect();
                (d, gs)
            })
            .collect(),
        members: gids.iter().map(|&g| (g, scan(g, false))).collect(),
        senders: gids.iter().map(|&g| (g, scan(g, true))).collect(),
        next_member_time: naive_due(t).first().map(|e| e.0),
        next_group_time: naive_timers(t).first().map(|e| e.0),
    }
}

/// The times a check asks `due_member` and `due_group` about: around every due time.
fn probe_times(due: &BTreeSet<(u64, DeviceId, u32)>, timers: &BTreeSet<(u64, u32)>) -> Vec<u64> {
    let mut at: BTreeSet<u64> = [0, u64::MAX].into();
    for t in due.iter().map(|e| e.0).chain(timers.iter().map(|e| e.0)) {
        at.extend([t.saturating_sub(1), t, t.saturating_add(1)]);
    }
    at.into_iter().collect()
}

/// Checks `t`'s indexed answers against the naive ones; `ordered`: its due answers are the
/// earliest (StdTables), not just some due one (the trait's defaults, in table order).
fn check(t: &impl ServerTables, ordered: bool, step: usize) {
    let want = naive(t);
    assert_eq!(answers(t), want, "step {step}");
    assert_eq!(t.group_count(), want.groups.len(), "step {step}");
    assert_eq!(t.device_count(), want.devices.len(), "step {step}");
    assert_eq!(t.member_count(), want.records.len(), "step {step}");
    for &(d, g) in &want.records {
        let m = t.member(d, g);
        assert_eq!(
            m.map(|m| (m.device(), m.group_id())),
            Some((d, g)),
            "step {step}"
        );
    }
    for &g in &want.groups {
        assert_eq!(t.group(g).map(GroupRec::group_id), Some(g), "step {step}");
    }
    for &d in &want.devices {
        assert_eq!(t.device(d).map(DeviceRec::id), Some(d), "step {step}");
    }
    let (due, timers) = (naive_due(t), naive_timers(t));
    for now in probe_times(&due, &timers) {
        let got = t.due_member(now);
        let earliest = due.first().filter(|e| e.0 <= now);
        assert_eq!(got.is_some(), earliest.is_some(), "step {step}, now {now}");
        if let Some((id, g)) = got {
            let at = due.iter().find(|e| e.1 == id && e.2 == g).map(|e| e.0);
            assert!(
                at.is_some_and(|at| at <= now),
                "step {step}: ({id:?}, {g}) not due"
            );
            if ordered {
                assert_eq!(Some((id, g)), earliest.map(|e| (e.1, e.2)), "step {step}");
            }
        }
        let got = t.due_group(now);
        let earliest = timers.first().filter(|e| e.0 <= now);
        assert_eq!(got.is_some(), earliest.is_some(), "step {step}, now {now}");
        if let Some(g) = got {
            let at = timers.iter().find(|e| e.1 == g).map(|e| e.0);
            assert!(
                at.is_some_and(|at| at <= now),
                "step {step}: group {g} not due"
            );
            if ordered {
                assert_eq!(Some(g), earliest.map(|e| e.1), "step {step}");
            }
        }
    }
}

/// A record's membership and sender ID: an update may not change them (the trait's contract).
fn shape(m: &MemberRec) -> (bool, Option<u8>) {
    (m.is_member(), m.sender_id())
}

/// A version of `m` from the pool with the same shape, picked by `pick`.
fn variant(pool: &Pool, m: &MemberRec, pick: u64) -> Option<MemberRec> {
    let same: Vec<&MemberRec> = pool.members[&(m.device(), m.group_id())]
        .iter()
        .filter(|v| shape(v) == shape(m))
        .collect();
    let i = usize::try_from(pick % same.len().max(1) as u64).ok()?;
    same.get(i).map(|v| (*v).clone())
}

// A test's list of operations, built once: the size of a group record does not matter here.
#[allow(clippy::large_enum_variant)]
enum Op {
    PutGroup(GroupRec),
    PutDevice(DeviceRec),
    RemoveDevice(DeviceId),
    PutMember(MemberRec),
    RemoveMember(DeviceId, u32),
    /// Replaces a record by a version with the same shape (in-memory fields change).
    Update(DeviceId, u32, u64),
    UpdateMembers(u32, u64),
}

fn random_op(pool: &Pool, rng: &mut TestRng) -> Op {
    let ids: Vec<DeviceId> = pool.devices.keys().copied().collect();
    let id = ids[rng.below(ids.len())];
    let keys: Vec<(DeviceId, u32)> = pool.members.keys().copied().collect();
    let (mid, mg) = keys[rng.below(keys.len())];
    match rng.below(12) {
        0 | 1 => Op::PutGroup(pool.groups[rng.below(pool.groups.len())].clone()),
        2 => {
            let v = &pool.devices[&id];
            Op::PutDevice(v[rng.below(v.len())].clone())
        }
        3 => Op::RemoveDevice(id),
        4..=6 => {
            let v = &pool.members[&(mid, mg)];
            Op::PutMember(v[rng.below(v.len())].clone())
        }
        7 => Op::RemoveMember(mid, mg),
        8 | 9 => Op::Update(mid, mg, rng.next()),
        _ => Op::UpdateMembers(1 + rng.below(4) as u32, rng.next()),
    }
}

fn apply(t: &mut impl ServerTables, pool: &Pool, op: &Op) {
    match op {
        Op::PutGroup(g) => t.put_group(g.clone()),
        Op::PutDevice(d) => t.put_device(d.clone()),
        Op::RemoveDevice(id) => t.remove_device(*id),
        Op::PutMember(m) => t.put_member(m.clone()),
        Op::RemoveMember(id, g) => t.remove_member(*id, *g),
        Op::Update(id, g, pick) => {
            t.update_member(*id, *g, |m| {
                if let Some(v) = variant(pool, m, *pick) {
                    *m = v;
                }
            });
        }
        Op::UpdateMembers(g, pick) => t.update_members(*g, |m| {
            // Picked by the device, not by the call order: both tables get the same versions.
            if let Some(v) = variant(pool, m, pick ^ u64::from(m.device().0)) {
                *m = v;
            }
        }),
    }
}

#[test]
fn pool_has_the_interesting_records() {
    let pool = pool::pool();
    let all = || pool.members.values().flatten();
    let mut groups_of: BTreeMap<DeviceId, BTreeSet<u32>> = BTreeMap::new();
    for m in all() {
        groups_of
            .entry(m.device())
            .or_default()
            .insert(m.group_id());
    }
    assert!(
        groups_of.values().any(|g| g.len() >= 2),
        "multi-group devices"
    );
    assert!(all().any(|m| !m.is_member()), "admitted, not joined");
    assert!(all().any(|m| m.sender_id().is_some()));
    assert!(all().any(|m| m.is_member() && m.sender_id().is_none()));
    let changed: BTreeSet<u64> = pool.groups.iter().map(GroupRec::changed_at).collect();
    assert!(changed.len() >= 3, "groups changed over time");
    // Some memberships were pending (with a retransmission time), some groups staged an epoch.
    let pending = all().any(|m| {
        pool.groups
            .iter()
            .any(|g| g.group_id() == m.group_id() && m.due_at(g).is_some())
    });
    assert!(pending, "pending memberships");
    assert!(pool.groups.iter().any(|g| g.timer(|| false).is_some()));
}

/// Runs `steps` random operations from `seed` on both tables, checking after each.
fn run(seed: u64, steps: usize) {
    let pool = pool::pool();
    let mut rng = TestRng(seed);
    let mut std_t = StdTables::new();
    let mut heapless = HeaplessTables::<D, G, M>::default();
    let mut busy = [0usize; 3];
    for step in 0..steps {
        let op = random_op(&pool, &mut rng);
        apply(&mut std_t, &pool, &op);
        apply(&mut heapless, &pool, &op);
        check(&std_t, true, step);
        check(&heapless, false, step);
        assert_eq!(answers(&std_t), answers(&heapless), "step {step}");
        let a = answers(&std_t);
        busy[0] += usize::from(a.next_member_time.is_some());
        busy[1] += usize::from(a.next_group_time.is_some());
        busy[2] += usize::from(a.senders.values().any(|s| s.len() >= 2));
    }
    // The sequences went through the states that matter (pending bundles, group timers,
    // several senders in a group) often, not once.
    assert!(
        busy.iter().all(|&n| n >= steps / 4),
        "seed {seed}: {busy:?}"
    );
}

#[test]
fn indexes_match_a_rescan_and_the_heapless_tables() {
    for seed in [1, 2, 3, 0x5eed] {
        run(seed, STEPS);
    }
}
