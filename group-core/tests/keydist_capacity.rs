//! Bundle capacity (issue 12): a key server admits `MAX_SENDERS` (32) senders to a group without
//! record signatures and `MAX_SIGNING_SENDERS` (24) to one with them (each bundle entry then
//! carries a 33-byte key and the bundle must fit `MAX_MESSAGE_LEN`); the next sender's join is
//! refused with `CapacityExceeded`, and members with room for 32 senders install the full
//! bundles and open each other's records.
#![cfg(all(
    feature = "psk",
    feature = "keydist-server",
    feature = "keydist-member"
))]

use std::collections::VecDeque;

use group_core::keydist::{
    DeviceCredential, DeviceId, Error, GroupSpec, HeaplessTables, KeyServer, MAX_SENDERS,
    MAX_SIGNING_SENDERS, Member, MemberConfig, MemberCredentials, MemoryServerStore, Psk, Role,
    ServerCredentials,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use p256::ecdsa::SigningKey;
use rand_core::{TryCryptoRng, TryRng};

const GID: u32 = 9;
type Device = Member<MemorySequenceStore, 32, 2>;
type Server = KeyServer<MemoryServerStore, 1, HeaplessTables<40, 1>>;

/// Deterministic test generator (splitmix64).
struct TestRng(u64);

impl TryRng for TestRng {
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
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

struct Net {
    server: Server,
    rng: TestRng,
    devices: Vec<(DeviceId, Device, TestRng)>,
    refused: Vec<(DeviceId, Error)>,
}

impl Net {
    fn new(signed: bool, count: usize) -> Self {
        let server_key = SigningKey::from_slice(&[0x5a; 32]).unwrap();
        let server_public = *server_key.verifying_key();
        let mut server =
            Server::open(ServerCredentials::new(server_key), MemoryServerStore::new()).unwrap();
        let mut rng = TestRng(1);
        let spec = GroupSpec::new(GID, Suite::AES_128_CCM_8);
        let spec = if signed { spec.with_signatures() } else { spec };
        server.create_group(spec, Instant(0), &mut rng).unwrap();
        let mut devices = Vec::new();
        for i in 0..count {
            let id = DeviceId(100 + i as u32);
            let (creds, cred) = if signed {
                let k = SigningKey::from_slice(&[i as u8 + 1; 32]).unwrap();
                (
                    MemberCredentials::signed(k.clone(), server_public),
                    DeviceCredential::public_key(k.verifying_key()),
                )
            } else {
                let psk = Psk([i as u8 + 1; 16]);
                (
                    MemberCredentials::Psk(psk.clone()),
                    DeviceCredential::Psk(psk),
                )
            };
            server.admit_device(id, cred, Role::Sender, &[GID]).unwrap();
            let m = Device::new(
                MemberConfig::new(id, GID, Role::Sender),
                creds,
                MemorySequenceStore::commissioned(),
            );
            devices.push((id, m, TestRng(1000 + i as u64)));
        }
        Self {
            server,
            rng,
            devices,
            refused: Vec::new(),
        }
    }

    /// Delivers every message both ways until nothing moves.
    fn pump(&mut self, now: Instant) {
        let mut to_server: VecDeque<(DeviceId, Vec<u8>)> = VecDeque::new();
        for _ in 0..200 {
            let mut buf = [0u8; 2048];
            for (id, m, rng) in &mut self.devices {
                while let Some(n) = m.poll_transmit(now, rng, &mut buf).unwrap() {
                    to_server.push_back((*id, buf[..n].to_vec()));
                }
            }
            let mut moved = !to_server.is_empty();
            while let Some((from, bytes)) = to_server.pop_front() {
                if let Err(e) = self.server.handle_message(now, &mut self.rng, &bytes) {
                    self.refused.push((from, e));
                }
            }
            while let Some(t) = self
                .server
                .poll_transmit(now, &mut self.rng, &mut buf)
                .unwrap()
            {
                moved = true;
                let (_, m, _) = self
                    .devices
                    .iter_mut()
                    .find(|(id, _, _)| *id == t.device_id)
                    .unwrap();
                m.handle_message(now, &buf[..t.len]).unwrap();
            }
            if !moved {
                return;
            }
        }
        panic!("the exchange did not settle");
    }
}

fn fill(signed: bool, capacity: usize) {
    let mut net = Net::new(signed, capacity + 1);
    let mut now = 0u64;
    for i in 0..=capacity {
        now += 1_000;
        let t = Instant(now);
        net.devices[i].1.join(t).unwrap();
        net.pump(t);
    }
    // Let the last epoch activate everywhere.
    now += 60_000;
    for (_, m, _) in &mut net.devices {
        m.handle_timeout(Instant(now));
    }
    net.pump(Instant(now));
    let last = DeviceId(100 + capacity as u32);
    assert!(
        net.refused
            .iter()
            .any(|(d, e)| *d == last && *e == Error::CapacityExceeded),
        "the sender over capacity was refused: {:?}",
        net.refused
    );
    assert!(
        net.refused.iter().all(|(d, _)| *d == last),
        "only it: {:?}",
        net.refused
    );
    assert_eq!(net.server.members(GID).count(), capacity);
    let epoch = net.server.latest_epoch(GID);
    for (_, m, _) in &net.devices[..capacity] {
        assert!(m.is_joined());
        let g = m.group().unwrap();
        assert_eq!(g.current_epoch().map(|e| e.0), epoch);
        assert_eq!(
            g.senders().count(),
            capacity - 1,
            "every other sender listed"
        );
    }
    assert!(!net.devices[capacity].1.is_joined());
    // The newest sender's record opens at the first.
    let mut rec = [0u8; 200];
    let t = Instant(now + 1);
    let n = net.devices[capacity - 1]
        .1
        .seal(t, b"capacity", &mut rec)
        .unwrap();
    let d = net.devices[0].1.open(t, &mut rec[..n]).unwrap();
    assert_eq!(d.plaintext, b"capacity");
}

#[test]
fn a_group_without_record_signatures_holds_32_senders() {
    assert_eq!(MAX_SENDERS, 32);
    fill(false, MAX_SENDERS);
}

#[cfg(feature = "record-signatures")]
#[test]
fn a_group_with_record_signatures_holds_as_many_senders_as_a_bundle_fits() {
    fill(true, MAX_SIGNING_SENDERS);
}
