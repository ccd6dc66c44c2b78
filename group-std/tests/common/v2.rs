//! A key-server state of record format 2 (issue 16's first records, before the (device, group)
//! records): the counters row says format 2 and each device row holds the groups it may join
//! and its memberships inline. The structs are those of group-core's format 2
//! (`DeviceRec<G>` and `Membership` of that format, field for field, postcard encoding; a
//! `heapless::Vec` encodes as a `Vec` does), so the rows are the bytes that code wrote. The
//! group rows are unchanged since and come from a real key server.

use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Role, ServerCredentials, ServerStore,
    ServerTables, Table,
};
use group_core::suite::Suite;
use group_core::time::Instant;
use group_std::keyserver::{MemRowStore, StdTables};
use serde::Serialize;

/// `Meta` of format 2.
#[derive(Serialize)]
struct Meta {
    format: u8,
    counter_reserved: u64,
}

/// `Membership` of format 2 (inside its device's row).
#[derive(Serialize)]
struct Membership {
    group_id: u32,
    role: Role,
    sender_id: Option<u8>,
    since: u64,
    acked: u64,
    acked_epoch: u16,
    join_nonce: Option<[u8; 16]>,
}

/// `DeviceRec<G>` of format 2.
#[derive(Serialize)]
struct DeviceRec {
    id: DeviceId,
    credential: DeviceCredential,
    role: Role,
    groups: Vec<u32>,
    last_join_nonce: Option<[u8; 16]>,
    memberships: Vec<Membership>,
}

/// The server key of the state.
pub fn server_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x44; 32]).unwrap()
}

/// Device 5's key.
pub fn device_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x55; 32]).unwrap()
}

/// The rows of a format-2 state (`format` in its counters row): groups 1 to 3; device 5
/// (sender) may join 1, 2 and 3 and is a member of 1 (sender ID 1) and 3 (sender ID 2, its
/// bundle acknowledged); device 6 (listener) may join 2 and is a member of it.
pub fn rows(format: u8) -> Vec<(Table, u64, Vec<u8>)> {
    type Srv = KeyServer<MemRowStore, 4, StdTables, 65536>;
    let mut s = Srv::open(ServerCredentials::new(server_key()), MemRowStore::new()).unwrap();
    let mut rng = group_std::keyfile::os_rng();
    for g in 1..=3 {
        s.create_group(GroupSpec::new(g, Suite::AES_128_CCM), Instant(1), &mut rng)
            .unwrap();
    }
    let mut out = Vec::new();
    s.into_store()
        .load(&mut |t, k, v| {
            if t == Table::Groups {
                out.push((t, k, v.to_vec()));
            }
            Ok(())
        })
        .unwrap();
    let m = |group_id, role, sender_id, acked| Membership {
        group_id,
        role,
        sender_id,
        since: 2,
        acked,
        acked_epoch: u16::from(acked > 0),
        join_nonce: (acked == 0).then_some([group_id as u8; 16]),
    };
    let d5 = DeviceRec {
        id: DeviceId(5),
        credential: DeviceCredential::public_key(device_key().verifying_key()),
        role: Role::Sender,
        groups: vec![1, 2, 3],
        last_join_nonce: Some([3; 16]),
        memberships: vec![
            m(1, Role::Sender, Some(1), 0),
            m(3, Role::Sender, Some(2), 9),
        ],
    };
    let d6 = DeviceRec {
        id: DeviceId(6),
        credential: DeviceCredential::public_key(
            p256::ecdsa::SigningKey::from_slice(&[0x66; 32])
                .unwrap()
                .verifying_key(),
        ),
        role: Role::Listener,
        groups: vec![2],
        last_join_nonce: Some([2; 16]),
        memberships: vec![m(2, Role::Listener, None, 0)],
    };
    let meta = Meta {
        format,
        counter_reserved: 128,
    };
    out.push((Table::Counters, 0, postcard::to_stdvec(&meta).unwrap()));
    out.push((Table::Devices, 5, postcard::to_stdvec(&d5).unwrap()));
    out.push((Table::Devices, 6, postcard::to_stdvec(&d6).unwrap()));
    out
}

/// Checks a key server opened from the migrated state: the same devices, groups and
/// memberships, sender IDs kept.
pub fn check<St: ServerStore>(s: &KeyServer<St, 32, StdTables, 65536>) {
    assert_eq!((s.group_count(), s.device_count()), (3, 2));
    let groups = |d| {
        let mut g: Vec<u32> = s.device_groups(DeviceId(d)).collect();
        g.sort_unstable();
        g
    };
    assert_eq!(groups(5), [1, 2, 3]);
    assert_eq!(groups(6), [2]);
    assert_eq!(s.membership(DeviceId(5), 1), Some(Some(1)));
    assert_eq!(s.membership(DeviceId(5), 2), None, "admitted, not a member");
    assert_eq!(s.membership(DeviceId(5), 3), Some(Some(2)));
    assert_eq!(s.membership(DeviceId(6), 2), Some(None), "a listener");
    assert_eq!(s.members(2).count(), 1);
    assert!(s.is_pending(DeviceId(5), 1), "unacknowledged: pending");
    assert_eq!(s.tables().member_count(), 4);
}
