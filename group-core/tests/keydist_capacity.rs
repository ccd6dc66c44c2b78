//! Bundle capacity (issue 12, issue 16): a key server admits `MAX_SENDERS` (255, one per sender
//! ID) senders to a group without record signatures and `MAX_SIGNING_SENDERS` (24) to one with
//! them (each bundle entry then carries a 33-byte key and the bundle must fit
//! `MAX_MESSAGE_LEN`); the next sender's join is refused with `CapacityExceeded`. Members with
//! room for every sender install the full bundles and open each other's records; members whose
//! group tracks 32 senders install 255-sender bundles too (trust-first, no signatures), keep 32
//! and still open a record from a sender they don't track.
#![cfg(all(
    feature = "psk",
    feature = "keydist-server",
    feature = "keydist-member"
))]

use std::collections::{BTreeMap, VecDeque};

use group_core::keydist::{
    DeviceCredential, DeviceId, Error, GroupSpec, HeaplessTables, KeyServer, MAX_SENDERS,
    MAX_SIGNING_SENDERS, Member, MemberConfig, MemberCredentials, Psk, Role, Row, RowVisitor,
    ServerCredentials, ServerStore, Table,
};
use group_core::sequence::{MemorySequenceStore, StoreError};
use group_core::suite::Suite;
use group_core::time::Instant;
use p256::ecdsa::SigningKey;
use rand_core::{TryCryptoRng, TryRng};

const GID: u32 = 9;
type Device<const N: usize> = Member<MemorySequenceStore, N, 2>;
/// 256 devices, one group, 256 (device, group) records.
type Server = KeyServer<MapStore, 1, HeaplessTables<256, 1, 256>>;

/// An unbounded in-memory store (the fixed-size `MemoryServerStore` can't hold 256 devices).
#[derive(Default)]
struct MapStore(BTreeMap<(Table, u64), Vec<u8>>);

impl ServerStore for MapStore {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        for ((t, k), v) in &self.0 {
            visit(*t, *k, v)?;
        }
        Ok(!self.0.is_empty())
    }
    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
        for r in rows {
            match r.value {
                Some(v) => self.0.insert((r.table, r.key), v.to_vec()),
                None => self.0.remove(&(r.table, r.key)),
            };
        }
        Ok(())
    }
}

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

struct Net<const N: usize> {
    server: Box<Server>,
    rng: TestRng,
    devices: Vec<(DeviceId, Device<N>, TestRng)>,
    refused: Vec<(DeviceId, Error)>,
    /// Server messages a member refused.
    member_refused: Vec<(DeviceId, Error)>,
}

impl<const N: usize> Net<N> {
    fn new(signed: bool, count: usize) -> Self {
        Self::with_spec(signed, false, count)
    }

    fn with_spec(signed: bool, strict: bool, count: usize) -> Self {
        let server_key = SigningKey::from_slice(&[0x5a; 32]).unwrap();
        let server_public = *server_key.verifying_key();
        let mut server = Box::new(
            Server::open(ServerCredentials::new(server_key), MapStore::default()).unwrap(),
        );
        let mut rng = TestRng(1);
        let spec = GroupSpec::new(GID, Suite::AES_128_CCM_8);
        let spec = if signed { spec.with_signatures() } else { spec };
        let spec = if strict {
            spec.with_strict_admission()
        } else {
            spec
        };
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
                let psk = Psk((i as u128 + 1).to_le_bytes());
                (
                    MemberCredentials::Psk(psk.clone()),
                    DeviceCredential::Psk(psk),
                )
            };
            server.admit_device(id, cred, Role::Sender, &[GID]).unwrap();
            let m = Device::<N>::new(
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
            member_refused: Vec::new(),
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
                if let Err(e) = m.handle_message(now, &buf[..t.len]) {
                    self.member_refused.push((t.device_id, e));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the exchange did not settle");
    }
}

/// Admits `capacity + 1` senders, 16 at a time, into a group (with or without record
/// signatures) and lets every epoch activate; the last join is refused with `CapacityExceeded`.
fn fill<const N: usize>(signed: bool, capacity: usize) -> (Net<N>, Instant) {
    let mut net = Net::<N>::new(signed, capacity + 1);
    // Devices ask 16 at a time (the key server keeps 16 join challenges outstanding; it
    // answers each member with its newest bundle, so a batch costs one bundle per member, not
    // one per member and join); the requests reach the key server in device order, so the
    // last device is the one over capacity.
    let mut now = 0u64;
    for batch in (0..=capacity).collect::<Vec<_>>().chunks(16) {
        now += 1_000;
        for &i in batch {
            net.devices[i].1.join(Instant(now)).unwrap();
        }
        net.pump(Instant(now));
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
            (capacity - 1).min(N),
            "every other sender listed, as many as the table holds"
        );
    }
    assert!(!net.devices[capacity].1.is_joined());
    assert!(net.member_refused.is_empty(), "{:?}", net.member_refused);
    (net, Instant(now))
}

/// Sender `from`'s record opens at member `at`.
fn opens<const N: usize>(net: &mut Net<N>, now: Instant, from: usize, at: usize) {
    let mut rec = [0u8; 200];
    let n = net.devices[from]
        .1
        .seal(now, b"capacity", &mut rec)
        .unwrap();
    let d = net.devices[at].1.open(now, &mut rec[..n]).unwrap();
    assert_eq!(d.plaintext, b"capacity");
}

#[test]
fn a_group_without_record_signatures_holds_255_senders() {
    assert_eq!(MAX_SENDERS, 255);
    let (mut net, now) = fill::<255>(false, MAX_SENDERS);
    // The newest sender's record opens at the first, and the first's at the newest.
    opens(&mut net, Instant(now.0 + 1), MAX_SENDERS - 1, 0);
    opens(&mut net, Instant(now.0 + 2), 0, MAX_SENDERS - 1);
}

#[test]
fn members_tracking_32_senders_install_255_sender_bundles() {
    let (mut net, now) = fill::<32>(false, MAX_SENDERS);
    // Member 0 tracks 32 of the 254 others; a record of one it doesn't track opens all the
    // same (trust-first admission), and that sender is tracked from then on.
    let sid_of = |net: &Net<32>, i: usize| {
        net.devices[i]
            .1
            .group()
            .unwrap()
            .config()
            .own_sender_id
            .unwrap()
    };
    let untracked = (1..MAX_SENDERS)
        .find(|&i| {
            let sid = sid_of(&net, i);
            net.devices[0]
                .1
                .group()
                .unwrap()
                .senders()
                .all(|s| s.sender_id != sid)
        })
        .expect("a sender member 0 does not track");
    let sid = sid_of(&net, untracked);
    opens(&mut net, Instant(now.0 + 1), untracked, 0);
    let g = net.devices[0].1.group().unwrap();
    assert!(g.senders().any(|s| s.sender_id == sid));
    assert_eq!(g.senders().count(), 32);
}

#[cfg(feature = "record-signatures")]
#[test]
fn a_group_with_record_signatures_holds_as_many_senders_as_a_bundle_fits() {
    let (mut net, now) = fill::<32>(true, MAX_SIGNING_SENDERS);
    opens(&mut net, Instant(now.0 + 1), MAX_SIGNING_SENDERS - 1, 0);
}

/// Under strict admission a member's table is the list of who may send: a member tracking 32
/// senders refuses a bundle listing more (`CapacityExceeded`, nothing changes: it keeps the
/// epoch it had), while the key server admits them.
#[test]
fn members_tracking_32_senders_refuse_longer_lists_under_strict_admission() {
    let mut net = Net::<32>::with_spec(false, true, 40);
    let mut now = 0u64;
    for batch in (0..40).collect::<Vec<_>>().chunks(16) {
        now += 1_000;
        for &i in batch {
            net.devices[i].1.join(Instant(now)).unwrap();
        }
        net.pump(Instant(now));
    }
    assert!(net.refused.is_empty(), "{:?}", net.refused);
    assert_eq!(net.server.members(GID).count(), 40);
    assert!(!net.member_refused.is_empty());
    assert!(
        net.member_refused
            .iter()
            .all(|(_, e)| *e == Error::CapacityExceeded),
        "{:?}",
        net.member_refused
    );
    // The first 32 joined with lists that fit and still hold the epoch of the last one.
    let newest = net.server.latest_epoch(GID);
    let first = net.devices[0]
        .1
        .group()
        .unwrap()
        .current_epoch()
        .map(|e| e.0);
    assert!(first.is_some() && first < newest, "{first:?} {newest:?}");
}
