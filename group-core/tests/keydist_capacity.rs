//! Bundle capacity (issue 12, issue 16): a key server admits `MAX_SENDERS` (255, one per sender
//! ID) senders to a group, with or without record signatures; the next sender's join is refused
//! with `CapacityExceeded`. In a group with record signatures each sender's 33-byte key travels
//! with the list: up to `MAX_SIGNING_SENDERS` (24) in the bundle itself, beyond that the bundle
//! carries `SPLIT_BUNDLE_KEYS` and `SenderKeys` parts the rest. Members with room for every
//! sender install the full bundles and open each other's records; members whose group tracks 32
//! senders install 255-sender bundles too (trust-first, no signatures), keep 32 and still open a
//! record from a sender they don't track. A split list: nothing is installed from a part of it,
//! a lost part comes back with the bundle's retransmission, replayed, stale, forged and early
//! parts are refused and counted.
#![cfg(all(
    feature = "psk",
    feature = "keydist-server",
    feature = "keydist-member"
))]

use std::collections::{BTreeMap, VecDeque};

use group_core::keydist::{
    DeviceCredential, DeviceId, Error, GroupSpec, HeaplessTables, KeyServer, MAX_PART_KEYS,
    MAX_SENDERS, MAX_SIGNING_SENDERS, Member, MemberConfig, MemberCredentials, MessageKind, Psk,
    Role, Row, RowVisitor, SPLIT_BUNDLE_KEYS, ServerCredentials, ServerStore, Table,
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
                let mut b = [0x11u8; 32];
                b[30..].copy_from_slice(&(i as u16 + 1).to_be_bytes());
                let k = SigningKey::from_slice(&b).unwrap();
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

/// Up to `MAX_SIGNING_SENDERS` signed senders every key travels in the bundle (the format of
/// before issue 16's split lists): no `SenderKeys` part is sent.
#[cfg(feature = "record-signatures")]
#[test]
fn a_group_with_record_signatures_whose_keys_fit_one_bundle() {
    let (mut net, now) = signed_group(MAX_SIGNING_SENDERS);
    let msgs = rekey_messages(&mut net, now);
    assert_eq!(msgs.len(), MAX_SIGNING_SENDERS);
    assert!(msgs.iter().all(|(_, k, _)| *k == MessageKind::KeyBundle));
    net.pump(Instant(now));
    for (id, _, bytes) in &msgs {
        let (_, m, _) = net.devices.iter_mut().find(|(d, _, _)| d == id).unwrap();
        m.handle_message(Instant(now), bytes).unwrap();
    }
    let now = now + 60_000;
    for (_, m, _) in &mut net.devices {
        m.handle_timeout(Instant(now));
    }
    opens(&mut net, Instant(now + 1), MAX_SIGNING_SENDERS - 1, 0);
}

/// 255 signed senders (members tracking 255): every bundle's list continues in 8 parts; every
/// member installs every key and verifies the records of the first and the last sender.
#[cfg(feature = "record-signatures")]
#[test]
fn a_group_with_record_signatures_holds_255_senders() {
    let (mut net, now) = fill::<255>(true, MAX_SENDERS);
    opens(&mut net, Instant(now.0 + 1), MAX_SENDERS - 1, 0);
    opens(&mut net, Instant(now.0 + 2), 0, MAX_SENDERS - 1);
    opens(&mut net, Instant(now.0 + 3), 128, 7);
    // Every member holds every other sender's key: a record whose signature is another
    // sender's is refused.
    let mut rec = [0u8; 200];
    let n = net.devices[5]
        .1
        .seal(Instant(now.0 + 4), b"capacity", &mut rec)
        .unwrap();
    let last = rec[..n].len() - 1;
    rec[last] ^= 1;
    assert!(
        net.devices[9]
            .1
            .open(Instant(now.0 + 4), &mut rec[..n])
            .is_err()
    );
    for (_, m, _) in &net.devices[..MAX_SENDERS] {
        assert_eq!(m.parts_refused(), 0);
        assert!(!m.is_completing_bundle());
    }
}

/// A signed group of `count` senders whose members have all joined and activated; returns the
/// net and the time.
#[cfg(feature = "record-signatures")]
fn signed_group(count: usize) -> (Net<128>, u64) {
    let mut net = Net::<128>::new(true, count);
    let mut now = 0u64;
    for batch in (0..count).collect::<Vec<_>>().chunks(16) {
        now += 1_000;
        for &i in batch {
            net.devices[i].1.join(Instant(now)).unwrap();
        }
        net.pump(Instant(now));
    }
    now += 60_000;
    for (_, m, _) in &mut net.devices {
        m.handle_timeout(Instant(now));
    }
    net.pump(Instant(now));
    assert!(net.refused.is_empty(), "{:?}", net.refused);
    assert!(net.member_refused.is_empty(), "{:?}", net.member_refused);
    (net, now)
}

/// Rekeys the group and collects what the key server sends: (device, kind, bytes), in order.
#[cfg(feature = "record-signatures")]
fn rekey_messages(net: &mut Net<128>, now: u64) -> Vec<(DeviceId, MessageKind, Vec<u8>)> {
    net.server.rekey(GID, Instant(now), &mut net.rng).unwrap();
    drain(net, now)
}

#[cfg(feature = "record-signatures")]
fn drain(net: &mut Net<128>, now: u64) -> Vec<(DeviceId, MessageKind, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(t) = net
        .server
        .poll_transmit(Instant(now), &mut net.rng, &mut buf)
        .unwrap()
    {
        out.push((t.device_id, t.kind, buf[..t.len].to_vec()));
    }
    out
}

/// Device `i`'s messages among `msgs`.
#[cfg(feature = "record-signatures")]
fn of(
    net: &Net<128>,
    msgs: &[(DeviceId, MessageKind, Vec<u8>)],
    i: usize,
) -> Vec<(MessageKind, Vec<u8>)> {
    let id = net.devices[i].0;
    msgs.iter()
        .filter(|(d, _, _)| *d == id)
        .map(|(_, k, b)| (*k, b.clone()))
        .collect()
}

/// What member `i` sends now (its acknowledgement, if any).
#[cfg(feature = "record-signatures")]
fn acks(net: &mut Net<128>, i: usize, now: u64) -> usize {
    let mut buf = [0u8; 2048];
    let (_, m, rng) = &mut net.devices[i];
    let mut n = 0;
    while m
        .poll_transmit(Instant(now), rng, &mut buf)
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    n
}

/// The bundle of a 41-sender signed group lists every sender with the keys of the first 10;
/// one part carries the other 31. A member given only the bundle installs nothing (no epoch,
/// no senders, no acknowledgement); the part completes it.
#[cfg(feature = "record-signatures")]
#[test]
fn nothing_is_installed_from_a_partial_list() {
    let (mut net, now) = signed_group(41);
    let before = net.devices[0].1.group().unwrap().epochs().highest();
    let msgs = rekey_messages(&mut net, now);
    let mine = of(&net, &msgs, 0);
    let kinds: Vec<_> = mine.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [MessageKind::KeyBundle, MessageKind::SenderKeys]);
    assert!(mine.iter().all(|(_, b)| b.len() <= 1200));
    let m = &mut net.devices[0].1;
    while m.poll_event().is_some() {}
    m.handle_message(Instant(now), &mine[0].1).unwrap();
    assert!(m.is_completing_bundle());
    assert_eq!(
        m.group().unwrap().epochs().highest(),
        before,
        "no epoch installed"
    );
    assert!(
        m.poll_event()
            .is_none_or(|e| !matches!(e, group_core::keydist::MemberEvent::BundleInstalled { .. }))
    );
    assert_eq!(acks(&mut net, 0, now), 0, "nothing acknowledged");
    let m = &mut net.devices[0].1;
    m.handle_message(Instant(now), &mine[1].1).unwrap();
    assert!(!m.is_completing_bundle());
    assert!(m.group().unwrap().epochs().highest() > before);
    assert_eq!(m.group().unwrap().senders().count(), 40);
    assert_eq!(acks(&mut net, 0, now), 1, "acknowledged once complete");
}

/// A lost part: the member holds the bundle, the key server retransmits bundle and parts on
/// its timer, the member completes and acknowledges, and the key server stops.
#[cfg(feature = "record-signatures")]
#[test]
fn a_lost_part_is_sent_again_with_the_bundle() {
    let (mut net, now) = signed_group(41);
    let msgs = rekey_messages(&mut net, now);
    let mine = of(&net, &msgs, 0);
    // Every other member gets everything and acknowledges.
    for (id, _, bytes) in &msgs {
        if *id != net.devices[0].0 {
            let (_, m, _) = net.devices.iter_mut().find(|(d, _, _)| d == id).unwrap();
            m.handle_message(Instant(now), bytes).unwrap();
        }
    }
    net.pump(Instant(now));
    // Member 0 gets the bundle, its part is lost.
    net.devices[0]
        .1
        .handle_message(Instant(now), &mine[0].1)
        .unwrap();
    assert!(net.devices[0].1.is_completing_bundle());
    // Retransmission after 1 s: bundle and part again, new counters.
    let later = now + 1_500;
    let again = drain(&mut net, later);
    let again = of(&net, &again, 0);
    let kinds: Vec<_> = again.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [MessageKind::KeyBundle, MessageKind::SenderKeys]);
    for (_, b) in &again {
        net.devices[0].1.handle_message(Instant(later), b).unwrap();
    }
    assert!(!net.devices[0].1.is_completing_bundle());
    assert_eq!(
        net.devices[0]
            .1
            .group()
            .unwrap()
            .epochs()
            .highest()
            .map(|e| e.0),
        net.server.latest_epoch(GID)
    );
    net.pump(Instant(later));
    // Acknowledged: nothing more for member 0, however long we wait.
    let quiet = drain(&mut net, later + 600_000);
    assert!(of(&net, &quiet, 0).is_empty(), "{quiet:?}");
}

/// Parts replayed (within the bundle being completed and after it), parts of an older bundle
/// (an older epoch), forged parts and a part before its bundle are refused with typed errors,
/// counted, and change nothing; the genuine parts complete the bundle.
#[cfg(feature = "record-signatures")]
#[test]
fn replayed_stale_forged_and_early_parts_are_refused_and_counted() {
    // 80 senders: the bundle carries 10 keys, parts 32 + 32 + 5.
    let (mut net, now) = signed_group(80);
    let old = rekey_messages(&mut net, now);
    let old = of(&net, &old, 0);
    assert_eq!(old.len(), 4);
    let first_part_keys = 79 - SPLIT_BUNDLE_KEYS;
    assert!(first_part_keys > 2 * MAX_PART_KEYS);
    let new = rekey_messages(&mut net, now + 10);
    let new = of(&net, &new, 0);
    let kinds: Vec<_> = new.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            MessageKind::KeyBundle,
            MessageKind::SenderKeys,
            MessageKind::SenderKeys,
            MessageKind::SenderKeys
        ]
    );
    let t = Instant(now + 20);
    let before = net.devices[0].1.group().unwrap().epochs().highest();
    let m = &mut net.devices[0].1;
    let mut refused = 0;
    let mut refuse = |m: &mut Device<128>, bytes: &[u8], want: Error| {
        assert_eq!(m.handle_message(t, bytes), Err(want));
        refused += 1;
        assert_eq!(m.parts_refused(), refused);
    };
    // A part before its bundle.
    refuse(m, &new[1].1, Error::Stale);
    // The older bundle, then its own part is fine but the newer bundle replaces it; a part of
    // the older bundle (older epoch) is refused.
    m.handle_message(t, &old[0].1).unwrap();
    m.handle_message(t, &old[1].1).unwrap();
    m.handle_message(t, &new[0].1).unwrap();
    refuse(m, &old[2].1, Error::Stale);
    // A forged part: one key byte changed.
    let mut forged = new[1].1.clone();
    forged[40] ^= 0x01;
    refuse(m, &forged, Error::BadSignature);
    // Genuine first part, then the same part again.
    m.handle_message(t, &new[1].1).unwrap();
    refuse(m, &new[1].1, Error::Replayed);
    assert!(m.is_completing_bundle());
    assert_eq!(m.group().unwrap().epochs().highest(), before);
    m.handle_message(t, &new[3].1).unwrap();
    m.handle_message(t, &new[2].1).unwrap(); // reordered: fine
    assert!(!m.is_completing_bundle());
    assert_eq!(
        m.group().unwrap().epochs().highest().map(|e| e.0),
        net.server.latest_epoch(GID)
    );
    assert_eq!(m.group().unwrap().senders().count(), 79);
    // After completion: a replayed part (and a replayed bundle) are refused.
    refuse(m, &new[2].1, Error::Replayed);
    assert_eq!(m.handle_message(t, &new[0].1), Err(Error::Replayed));
    assert_eq!(m.parts_refused(), refused);
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
