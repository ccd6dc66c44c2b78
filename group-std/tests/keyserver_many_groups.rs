//! One device in many groups through the real key server (issue 16): admitted to 1,001
//! groups (more than one transaction stages), joined to 1,000 of them with real members, and
//! each join commits the same rows whatever number of groups the device is already in (its
//! group's row and its (device, group) row: never the device's row). Then revoked: every
//! record of it is gone and each group it was in is rekeyed.

use std::collections::BTreeMap;

use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    Role, ServerCredentials, ServerTables,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use group_std::keyserver::{MemRowStore, StdTables, TXN_GROUPS};
use p256::ecdsa::SigningKey;

type Srv = KeyServer<MemRowStore, TXN_GROUPS, StdTables, 65536>;

const GROUPS: u32 = 1_001;
const JOINED: u32 = 1_000;

/// Seeded splitmix64 (NOT a CSPRNG: a test).
struct TestRng(u64);
impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for TestRng {}

/// Runs one member's join to the end (request, challenge, answer, bundle, ack). Returns the
/// rows and commits the server wrote while it handled the answer to the challenge (the
/// commit that makes the membership).
fn join(server: &mut Srv, m: &mut Member<MemorySequenceStore>, now: Instant) -> (u64, u64) {
    let mut rng = TestRng(now.0);
    let mut buf = [0u8; 1500];
    m.join(now).unwrap();
    let mut join_cost = None;
    for _ in 0..16 {
        let mut moved = false;
        while let Some(n) = m.poll_transmit(now, &mut rng, &mut buf).unwrap() {
            let (r0, c0) = (server.store().rows_written(), server.store().commits());
            let got = server.handle_message(now, &mut rng, &buf[..n]).unwrap();
            let cost = (
                server.store().rows_written() - r0,
                server.store().commits() - c0,
            );
            if got.is_fresh() && join_cost.is_none() {
                join_cost = Some(cost);
            }
            moved = true;
        }
        while let Some(t) = server.poll_transmit(now, &mut rng, &mut buf).unwrap() {
            let _ = m.handle_message(now, &buf[..t.len]);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(m.is_joined(), "the member joined");
    join_cost.expect("a fresh join request")
}

#[test]
fn a_device_in_a_thousand_groups_joins_each_at_the_same_cost() {
    let server_key = SigningKey::from_slice(&[0x44; 32]).unwrap();
    let mut rng = TestRng(7);
    let mut server = Srv::open(
        ServerCredentials::new(server_key.clone()),
        MemRowStore::new(),
    )
    .unwrap();
    let t0 = Instant(1_000);
    for g in 1..=GROUPS {
        let spec = GroupSpec::new(g, Suite::AES_128_CCM).with_activation_delay_ms(0);
        server.create_group(spec, t0, &mut rng).unwrap();
    }
    let key = SigningKey::from_slice(&[0x17; 32]).unwrap();
    let id = DeviceId(42);
    let all: Vec<u32> = (1..=GROUPS).collect();
    let c0 = server.store().commits();
    server
        .admit_device(
            id,
            DeviceCredential::public_key(key.verifying_key()),
            Role::Sender,
            &all,
        )
        .unwrap();
    // More groups than one transaction stages: several commits, each at most TXN_GROUPS
    // (device, group) rows.
    assert!(server.store().commits() - c0 >= u64::from(GROUPS) / TXN_GROUPS as u64);
    assert_eq!(server.device_groups(id).count(), GROUPS as usize);
    assert_eq!(server.tables().member_count(), GROUPS as usize);

    let mut costs = BTreeMap::new();
    let mut now = t0;
    for g in 1..=JOINED {
        let mut m = Member::new(
            MemberConfig::new(id, g, Role::Sender),
            MemberCredentials::signed(key.clone(), *server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        );
        now = Instant(now.0 + 10);
        costs.insert(g, join(&mut server, &mut m, now));
        assert_eq!(
            server.membership(id, g),
            Some(Some(1)),
            "sender 1 in group {g}"
        );
    }
    // The first join and the thousandth cost the same rows: the group's and the (device,
    // group) record (and the counters' row when a block of counters is reserved).
    let first = costs[&1];
    for (g, c) in &costs {
        assert!(c.0 <= 3 && c.1 <= 2, "join to group {g} wrote {c:?}");
        assert!(
            c.0 <= first.0 + 1,
            "join to group {g} wrote {c:?}, the first {first:?}"
        );
    }
    assert!(costs.values().filter(|c| **c == first).count() >= (JOINED as usize) / 2);

    // A restart reads the same records back.
    let store = server.into_store();
    let mut server = Srv::open(ServerCredentials::new(server_key), store).unwrap();
    assert_eq!(server.device_groups(id).count(), GROUPS as usize);
    assert_eq!(server.members(JOINED).count(), 1);

    // Revoked: every record of it goes, each joined group gets a new epoch.
    let before: Vec<u16> = (1..=JOINED)
        .map(|g| server.latest_epoch(g).unwrap())
        .collect();
    server
        .revoke_device(id, Instant(now.0 + 100), &mut rng)
        .unwrap();
    assert_eq!(server.device_count(), 0);
    assert_eq!(server.tables().member_count(), 0);
    for g in 1..=JOINED {
        assert_eq!(
            server.latest_epoch(g),
            Some(before[g as usize - 1] + 1),
            "group {g} rekeyed"
        );
        assert_eq!(server.members(g).count(), 0);
    }
    assert_eq!(
        server.latest_epoch(JOINED + 1),
        Some(1),
        "not joined: no rekey"
    );
}
