//! Real records for the table tests: a key server (on [`StdTables`]) runs joins, a rekey and a
//! revocation with four groups and ten devices, and every version of every record it holds
//! along the way is kept (no members, pending, acknowledged, staged epochs, scheduled
//! rotations, senders and listeners, devices admitted to one to three groups, (device, group)
//! records with and without a membership).

use std::collections::BTreeMap;

use group_core::keydist::{
    DeviceCredential, DeviceId, DeviceRec, GroupRec, GroupSpec, KeyServer, Member, MemberConfig,
    MemberCredentials, MemberRec, Role, ServerCredentials, ServerTables,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use p256::ecdsa::SigningKey;

use crate::keyserver::MemRowStore;
use crate::keyserver::StdTables;

/// Groups of the heapless tables (and groups per transaction of the server).
pub(super) const G: usize = 4;
type Srv = KeyServer<MemRowStore, G, StdTables, 65536>;

/// Seeded splitmix64 (NOT a CSPRNG): the tests and the records are the same on every run.
#[derive(Clone)]
pub(super) struct TestRng(pub(super) u64);

impl TestRng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}

/// Every version seen of every record.
pub(super) struct Pool {
    pub(super) groups: Vec<GroupRec>,
    pub(super) devices: BTreeMap<DeviceId, Vec<DeviceRec>>,
    pub(super) members: BTreeMap<(DeviceId, u32), Vec<MemberRec>>,
}

impl Pool {
    fn snap(&mut self, server: &Srv) {
        self.groups.extend(server.tables().groups().cloned());
        for d in server.tables().devices() {
            self.devices.entry(d.id()).or_default().push(d.clone());
        }
        for m in server.tables().all_members() {
            self.members
                .entry((m.device(), m.group_id()))
                .or_default()
                .push(m.clone());
        }
    }
}

fn device_key(id: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[0] = 0x01;
    b[1] = 0x7b;
    b[28..].copy_from_slice(&id.to_be_bytes());
    SigningKey::from_slice(&b).unwrap()
}

type Members = BTreeMap<(u32, u32), Member<MemorySequenceStore>>;

/// Moves messages until quiet (or `deliver` is off: the server's messages are polled, so its
/// retransmission timers move, but dropped), snapshotting after every server step.
fn pump(server: &mut Srv, members: &mut Members, now: Instant, deliver: bool, pool: &mut Pool) {
    let mut rng = TestRng(now.0);
    let mut buf = [0u8; 1500];
    for _ in 0..64 {
        let mut moved = false;
        for m in members.values_mut() {
            while let Some(n) = m.poll_transmit(now, &mut rng, &mut buf).unwrap() {
                let _ = server.handle_message(now, &mut rng, &buf[..n]);
                pool.snap(server);
                moved = true;
            }
        }
        while let Some(t) = server.poll_transmit(now, &mut rng, &mut buf).unwrap() {
            pool.snap(server);
            moved |= deliver;
            if deliver {
                for ((_, id), m) in members.iter_mut() {
                    if *id == t.device_id.0 {
                        let _ = m.handle_message(now, &buf[..t.len]);
                    }
                }
            }
        }
        if !moved {
            return;
        }
    }
}

/// Runs the scenario and returns the records it went through.
pub(super) fn pool() -> Pool {
    let mut pool = Pool {
        groups: Vec::new(),
        devices: BTreeMap::new(),
        members: BTreeMap::new(),
    };
    let server_key = SigningKey::from_slice(&[0x44; 32]).unwrap();
    let mut rng = TestRng(16);
    let mut server = Srv::open(
        ServerCredentials::new(server_key.clone()),
        MemRowStore::new(),
    )
    .unwrap();
    let t0 = Instant(1_000);
    let specs = [
        GroupSpec::new(1, Suite::AES_128_CCM).with_activation_delay_ms(0),
        GroupSpec::new(2, Suite::AES_128_CCM)
            .with_activation_delay_ms(700)
            .with_rotation_interval_ms(20_000),
        GroupSpec::new(3, Suite::AES_128_CCM).with_rotation_interval_ms(9_000),
        // Nobody joins group 4: a rotation interval without members is no timer.
        GroupSpec::new(4, Suite::AES_128_CCM).with_rotation_interval_ms(5_000),
    ];
    for spec in specs {
        server.create_group(spec, t0, &mut rng).unwrap();
    }
    let mut members = Members::new();
    for id in 1..=10u32 {
        let key = device_key(id);
        let role = if id % 3 == 0 {
            Role::Listener
        } else {
            Role::Sender
        };
        let groups: Vec<u32> = (1..=3).filter(|g| (id + g) % 4 != 0).collect();
        server
            .admit_device(
                DeviceId(id),
                DeviceCredential::public_key(key.verifying_key()),
                role,
                &groups,
            )
            .unwrap();
        pool.snap(&server);
        for g in groups {
            let mut m = Member::new(
                MemberConfig::new(DeviceId(id), g, role),
                MemberCredentials::signed(key.clone(), *server_key.verifying_key()),
                MemorySequenceStore::commissioned(),
            );
            m.join(t0).unwrap();
            members.insert((g, id), m);
        }
        // Every third device's bundles are lost once: pending, with a retransmission timer.
        let now = Instant(t0.0 + u64::from(id) * 10);
        pump(&mut server, &mut members, now, id % 3 != 1, &mut pool);
    }
    let t1 = Instant(4_000);
    server.rekey(2, t1, &mut rng).unwrap();
    pool.snap(&server);
    pump(&mut server, &mut members, t1, false, &mut pool);
    pump(&mut server, &mut members, Instant(4_500), true, &mut pool);
    let t2 = Instant(6_000);
    server.revoke_device(DeviceId(4), t2, &mut rng).unwrap();
    pool.snap(&server);
    pump(&mut server, &mut members, t2, true, &mut pool);
    pool
}
