//! Group sockets on smoltcp nodes joined by an in-memory Ethernet hub: every frame a node sends
//! is copied to every other node, and each node's smoltcp stack filters by multicast
//! membership as it would on a real segment. No host network is touched.
//!
//! Node 0 sends; nodes 1..=3 listen; a last "intruder" node runs a plain UDP socket (no group
//! layer) that captures what is on the wire and sends replays, tampered copies and forgeries.
//! Addresses are from the documentation ranges (192.0.2.0/24) and link-local IPv6.

use group_core::counters::Event;
use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::{MemorySequenceStore, SequenceStore};
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, Record, SenderId};
use group_embedded::flash::FlashSequenceStore;
use group_embedded::flash::sim::SimNorFlash;
use group_embedded::hub::Hub;
use group_embedded::net::{GroupSocket, RecvError, SendError, core_instant};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

const GROUP_ID: u32 = 0x0107;
const PORT: u16 = 5684;
const V4_GROUP: IpAddress = IpAddress::v4(239, 255, 0, 7);
const V6_GROUP: IpAddress = IpAddress::v6(0xff02, 0, 0, 0, 0, 0, 0x7, 0x1);
const NODES: usize = 5; // 0 sender, 1..=3 listeners, 4 intruder
const INTRUDER: usize = 4;

type TestHub = Hub<NODES, 16, 1514>;
type Flash = SimNorFlash<2, 512, 4>;

fn leak<T: Clone>(v: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![v; n].into_boxed_slice())
}

fn keys(epoch: u16) -> RecordKeys {
    native_keys(
        GROUP_ID,
        Epoch(epoch),
        Suite::AES_128_CCM,
        &EpochSecret([0x42; 32]),
    )
    .unwrap()
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(leak(udp::PacketMetadata::EMPTY, 16), leak(0u8, 8192)),
        udp::PacketBuffer::new(leak(udp::PacketMetadata::EMPTY, 16), leak(0u8, 8192)),
    )
}

struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
}

fn stack(hub: &mut TestHub, index: usize) -> Stack {
    let n = index as u8 + 1;
    let mac = EthernetAddress([0x02, 0, 0, 0, 0, n]);
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = index as u64;
    let mut iface = Interface::new(config, &mut hub.port(index), NetInstant::ZERO);
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(192, 0, 2, n), 24))
            .unwrap();
        a.push(IpCidr::new(
            IpAddress::v6(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(n)),
            64,
        ))
        .unwrap();
    });
    let mut sockets = SocketSet::new(&mut Box::leak(Box::new([SocketStorage::EMPTY; 2]))[..]);
    let handle = sockets.add(udp_socket());
    Stack {
        iface,
        sockets,
        handle,
    }
}

struct Member<S: SequenceStore> {
    stack: Stack,
    socket: GroupSocket<S>,
}

fn member<S: SequenceStore>(
    hub: &mut TestHub,
    index: usize,
    group_addr: IpAddress,
    sid: Option<u8>,
    store: S,
    join: bool,
) -> Member<S> {
    let mut stack = stack(hub, index);
    let mut config = GroupConfig::new(GROUP_ID);
    if let Some(s) = sid {
        config = config.with_sender_id(SenderId(s));
    }
    config.sequence_reserve_step = 4;
    let mut group: Group = Group::new(config);
    group
        .install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let mut socket = GroupSocket::new(
        group,
        store,
        stack.handle,
        IpEndpoint::new(group_addr, PORT),
    );
    if join {
        socket.join(&mut stack.iface, &mut stack.sockets).unwrap();
    } else {
        // Bound to the port but not a member of the group.
        udp_of(&mut stack).bind(PORT).unwrap();
    }
    Member { stack, socket }
}

fn udp_of(stack: &mut Stack) -> &mut udp::Socket<'static> {
    stack.sockets.get_mut::<udp::Socket>(stack.handle)
}

/// The plain intruder: a UDP socket on the group's port, a member of the multicast group at
/// the IP level, without any key.
fn intruder(hub: &mut TestHub, group_addr: IpAddress) -> Stack {
    let mut s = stack(hub, INTRUDER);
    udp_of(&mut s).bind(PORT).unwrap();
    s.iface.join_multicast_group(group_addr).unwrap();
    s
}

/// Polls every stack until the hub is quiet.
fn pump(hub: &mut TestHub, stacks: &mut [(usize, &mut Stack)], now_ms: i64) {
    for round in 0.. {
        assert!(round < 50, "network did not settle");
        for (i, s) in stacks.iter_mut() {
            s.iface.poll(
                NetInstant::from_millis(now_ms),
                &mut hub.port(*i),
                &mut s.sockets,
            );
        }
        if stacks.iter().all(|(i, _)| hub.pending(*i) == 0)
            && stacks.iter_mut().all(|(_, s)| udp_of(s).send_queue() == 0)
        {
            break;
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone)]
struct Got {
    sid: u8,
    seq: u64,
    text: Vec<u8>,
}

/// Drains a member's socket: deliveries and drop reasons.
fn drain<S: SequenceStore>(m: &mut Member<S>, now: Instant) -> (Vec<Got>, Vec<OpenError>) {
    let mut got = Vec::new();
    let mut dropped = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(d) = m.socket.recv(&mut m.stack.sockets, now, &mut buf).unwrap() {
        for r in d {
            match r {
                Ok(d) => got.push(Got {
                    sid: d.sender_id.0,
                    seq: d.seq,
                    text: d.plaintext.to_vec(),
                }),
                Err(e) => dropped.push(e),
            }
        }
    }
    (got, dropped)
}

/// Everything the intruder's socket captured.
fn capture(s: &mut Stack) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok((data, _)) = udp_of(s).recv() {
        out.push(data.to_vec());
    }
    out
}

fn group_of(a: IpAddress) -> IpEndpoint {
    IpEndpoint::new(a, PORT)
}

fn one_sender_three_listeners(group_addr: IpAddress) {
    let mut hub = Box::new(TestHub::new());
    let hub = &mut *hub;
    let mut sender = member(
        hub,
        0,
        group_addr,
        Some(1),
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut l1 = member(
        hub,
        1,
        group_addr,
        None,
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut l2 = member(
        hub,
        2,
        group_addr,
        None,
        MemorySequenceStore::commissioned(),
        true,
    );
    // Node 3 is bound to the port but never joins the group: its stack filters the traffic.
    let mut l3 = member(
        hub,
        3,
        group_addr,
        None,
        MemorySequenceStore::commissioned(),
        false,
    );
    let mut spy = intruder(hub, group_addr);
    let now = Instant(10);
    macro_rules! pump_all {
        ($t:expr) => {
            pump(
                hub,
                &mut [
                    (0, &mut sender.stack),
                    (1, &mut l1.stack),
                    (2, &mut l2.stack),
                    (3, &mut l3.stack),
                    (INTRUDER, &mut spy),
                ],
                $t,
            )
        };
    }
    pump_all!(10);
    let messages: [&[u8]; 5] = [b"on", b"dim 40", b"dim 80", b"colour warm", b"off"];
    let mut scratch = [0u8; 256];
    for m in messages {
        let len = sender
            .socket
            .send(&mut sender.stack.sockets, now, m, &mut scratch)
            .unwrap();
        assert_eq!(len, 13 + 8 + m.len() + 16);
    }
    assert_eq!(sender.socket.stats().datagrams_sent, 5);
    pump_all!(20);
    let expected: Vec<Got> = messages
        .iter()
        .zip(0u64..)
        .map(|(m, seq)| Got {
            sid: 1,
            seq,
            text: m.to_vec(),
        })
        .collect();
    for l in [&mut l1, &mut l2] {
        let (got, dropped) = drain(l, now);
        assert_eq!(got, expected);
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(l.socket.counters().accepted, 5);
        assert_eq!(l.socket.stats().datagrams_received, 5);
    }
    let (got, _) = drain(&mut l3, now);
    assert!(got.is_empty(), "a non-member received group traffic");
    assert_eq!(l3.socket.stats().datagrams_received, 0);
    assert_eq!(sender.socket.counters().sealed, 5);

    // What the intruder saw on the wire: five records, plaintext nowhere in them.
    let wire = capture(&mut spy);
    assert_eq!(wire.len(), 5);
    for (w, m) in wire.iter().zip(messages) {
        let view = Record::new_checked(&w[..]).unwrap();
        assert_eq!(view.header().sender_id, SenderId(1));
        assert!(!w.windows(m.len()).any(|x| x == m), "plaintext on the wire");
    }

    // Replays of every captured datagram: dropped and counted by both listeners.
    for w in &wire {
        udp_of(&mut spy)
            .send_slice(w, group_of(group_addr))
            .unwrap();
    }
    // Tampered copies of the last record, moved to a fresh sequence number (50) so that the
    // replay window does not catch them first:
    // - seq in the header and the explicit nonce both changed: authentication fails;
    // - the same with one ciphertext bit flipped: authentication fails;
    // - seq changed in the header only: the strict nonce profile refuses it;
    // - one bit of the epoch flipped: epoch 0 is not held.
    let fresh = |nonce_too: bool, flip: Option<usize>| {
        let mut t = wire[4].clone();
        t[6..11].copy_from_slice(&[0, 0, 0, 0, 50]);
        if nonce_too {
            t[16..21].copy_from_slice(&[0, 0, 0, 0, 50]);
        }
        if let Some(at) = flip {
            t[at] ^= 0x01;
        }
        t
    };
    let mut epoch_flip = wire[4].clone();
    epoch_flip[4] ^= 0x01;
    let tampered = [
        fresh(true, None),
        fresh(true, Some(13 + 8)),
        fresh(false, None),
        epoch_flip,
    ];
    // A forgery: a record sealed under another secret, with a fresh sequence number.
    let mut forger_group: Group =
        Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(1)));
    let bad_keys = native_keys(
        GROUP_ID,
        Epoch(1),
        Suite::AES_128_CCM,
        &EpochSecret([0x66; 32]),
    )
    .unwrap();
    forger_group
        .install_and_activate(Epoch(1), &bad_keys, now)
        .unwrap();
    let mut forged = [0u8; 64];
    let mut fs = MemorySequenceStore::commissioned();
    fs.save(&group_core::sequence::StoredSequence {
        epoch: Epoch(1),
        sender_id: SenderId(1),
        reserved_until: 100,
    })
    .unwrap();
    let flen = forger_group
        .seal(now, &mut fs, b"unlock", &mut forged)
        .unwrap();
    for t in tampered.iter().chain([forged[..flen].to_vec()].iter()) {
        udp_of(&mut spy)
            .send_slice(t, group_of(group_addr))
            .unwrap();
    }
    // Garbage that is not a record.
    udp_of(&mut spy)
        .send_slice(b"\x17\xfe\xfd\x00", group_of(group_addr))
        .unwrap();
    pump_all!(30);
    for l in [&mut l1, &mut l2] {
        let (got, dropped) = drain(l, now);
        assert!(
            got.is_empty(),
            "forged or replayed record delivered: {got:?}"
        );
        let c = *l.socket.counters();
        assert_eq!(c.replay, 5, "{c:?}");
        // Two tampered copies and the forged record.
        assert_eq!(c.authentication_failed, 3, "{c:?}");
        assert_eq!(c.nonce_mismatch, 1, "{c:?}");
        assert_eq!(c.unknown_epoch, 1, "{c:?}");
        assert_eq!(c.malformed, 1, "{c:?}");
        assert_eq!(c.accepted, 5);
        assert_eq!(dropped.len(), 11);
        assert_eq!(c.dropped(), 11);
    }
    // The authentication failures are counted against the epoch key.
    assert_eq!(
        l1.socket
            .group()
            .epochs()
            .current()
            .unwrap()
            .auth_failures(),
        3
    );
}

#[test]
fn ipv4_multicast_one_sender_three_listeners_replays_and_forgeries_dropped() {
    one_sender_three_listeners(V4_GROUP);
}

#[test]
fn ipv6_multicast_one_sender_three_listeners_replays_and_forgeries_dropped() {
    one_sender_three_listeners(V6_GROUP);
}

#[test]
fn several_records_in_one_datagram_and_a_malformed_tail() {
    let mut hub = Box::new(TestHub::new());
    let hub = &mut *hub;
    let mut l1 = member(
        hub,
        1,
        V4_GROUP,
        None,
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut spy = intruder(hub, V4_GROUP);
    let now = Instant(5);
    // A second member (sid 9) seals three records offline; the intruder port carries them.
    let mut g: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(9)));
    g.install_and_activate(Epoch(1), &keys(1), now).unwrap();
    let mut st = MemorySequenceStore::commissioned();
    let mut datagram = Vec::new();
    for m in [&b"a"[..], b"bb", b"ccc"] {
        let mut b = [0u8; 64];
        let n = g.seal(now, &mut st, m, &mut b).unwrap();
        datagram.extend_from_slice(&b[..n]);
    }
    datagram.extend_from_slice(&[0x17, 0xfe]);
    udp_of(&mut spy)
        .send_slice(&datagram, group_of(V4_GROUP))
        .unwrap();
    pump(hub, &mut [(1, &mut l1.stack), (INTRUDER, &mut spy)], 5);
    let (got, dropped) = drain(&mut l1, now);
    assert_eq!(
        got.iter().map(|g| g.text.clone()).collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
    );
    assert_eq!(got.iter().map(|g| g.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(dropped.len(), 1);
    assert!(matches!(dropped[0], OpenError::Malformed(_)));
    assert_eq!(l1.socket.stats().datagrams_received, 1);
}

#[test]
fn unicast_to_the_port_and_oversized_datagrams_are_not_group_traffic() {
    let mut hub = Box::new(TestHub::new());
    let hub = &mut *hub;
    let mut l1 = member(
        hub,
        1,
        V4_GROUP,
        None,
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut spy = intruder(hub, V4_GROUP);
    // Unicast to node 1's own address on the group's port: not group traffic.
    let to_l1 = IpEndpoint::new(IpAddress::v4(192, 0, 2, 2), PORT);
    udp_of(&mut spy).send_slice(b"hello", to_l1).unwrap();
    for t in [0, 100, 1200, 2400] {
        pump(hub, &mut [(1, &mut l1.stack), (INTRUDER, &mut spy)], t);
    }
    let (got, dropped) = drain(&mut l1, Instant(0));
    assert!(got.is_empty() && dropped.is_empty());
    assert_eq!(l1.socket.stats().not_to_group, 1);
    // A datagram larger than the receive buffer: dropped and counted, not cut and parsed.
    udp_of(&mut spy)
        .send_slice(&[0x17; 1000], group_of(V4_GROUP))
        .unwrap();
    pump(hub, &mut [(1, &mut l1.stack), (INTRUDER, &mut spy)], 3000);
    let mut small = [0u8; 100];
    assert_eq!(
        l1.socket
            .recv(&mut l1.stack.sockets, Instant(0), &mut small)
            .unwrap_err(),
        RecvError::Truncated
    );
    assert_eq!(l1.socket.stats().truncated, 1);
    assert_eq!(l1.socket.counters().dropped(), 0);
}

#[test]
fn a_listener_cannot_send_and_a_full_queue_spends_nothing() {
    let mut hub = Box::new(TestHub::new());
    let hub = &mut *hub;
    let mut l1 = member(
        hub,
        1,
        V4_GROUP,
        None,
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut scratch = [0u8; 128];
    assert_eq!(
        l1.socket
            .send(&mut l1.stack.sockets, Instant(0), b"x", &mut scratch)
            .unwrap_err(),
        SendError::Seal(group_core::record::SealError::NotASender)
    );
    let mut s = member(
        hub,
        0,
        V4_GROUP,
        Some(2),
        MemorySequenceStore::commissioned(),
        true,
    );
    // Fill the send queue without polling: 16 packet slots.
    let mut sent = 0;
    let err = loop {
        match s
            .socket
            .send(&mut s.stack.sockets, Instant(0), b"x", &mut scratch)
        {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, SendError::QueueFull);
    assert_eq!(sent, 16);
    // Nothing was sealed for the refused send: the next number is still `sent`.
    assert_eq!(
        s.socket.group().next_send_seq(),
        Some((Epoch(1), sent as u64))
    );
    assert_eq!(s.socket.stats().send_failures, 1);
    assert_eq!(s.socket.counters().sealed, 16);
}

/// The sender reboots (RAM lost, flash kept) between two bursts; listeners keep their state.
fn reboot_scenario<S: SequenceStore>(
    mut make_store: impl FnMut(Option<S>) -> S,
) -> (Vec<Got>, Vec<OpenError>) {
    let mut hub = Box::new(TestHub::new());
    let hub = &mut *hub;
    let mut sender = member(hub, 0, V4_GROUP, Some(3), make_store(None), true);
    let mut l1 = member(
        hub,
        1,
        V4_GROUP,
        None,
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut scratch = [0u8; 128];
    for m in [&b"one"[..], b"two", b"three", b"four", b"five", b"six"] {
        sender
            .socket
            .send(&mut sender.stack.sockets, Instant(1), m, &mut scratch)
            .unwrap();
    }
    pump(hub, &mut [(0, &mut sender.stack), (1, &mut l1.stack)], 1);
    let (first, dropped) = drain(&mut l1, Instant(1));
    assert_eq!(first.len(), 6);
    assert!(dropped.is_empty());

    // Power cycle: the node is rebuilt from scratch; only the store's medium survives.
    let (_, store) = sender.socket.into_parts();
    let store = make_store(Some(store));
    let mut sender = member(hub, 0, V4_GROUP, Some(3), store, true);
    for m in [&b"seven"[..], b"eight"] {
        sender
            .socket
            .send(&mut sender.stack.sockets, Instant(2), m, &mut scratch)
            .unwrap();
    }
    pump(hub, &mut [(0, &mut sender.stack), (1, &mut l1.stack)], 2);
    drain(&mut l1, Instant(2))
}

#[test]
fn sequence_numbers_survive_a_reboot_through_the_flash_store() {
    let (got, dropped) = reboot_scenario::<FlashSequenceStore<Flash>>(|old| match old {
        None => {
            let mut flash = Flash::new();
            FlashSequenceStore::commission_at_factory(&mut flash, 0, 2).unwrap();
            FlashSequenceStore::open(flash, 0, 2).unwrap().0
        }
        Some(s) => FlashSequenceStore::open(s.into_inner(), 0, 2).unwrap().0,
    });
    assert!(dropped.is_empty(), "{dropped:?}");
    // K = 4: six records used 0..=5 and reserved up to 8; after the reboot the sender
    // resumes at 8.
    assert_eq!(got.iter().map(|g| g.seq).collect::<Vec<_>>(), vec![8, 9]);
    assert_eq!(got[1].text, b"eight");
}

#[test]
fn without_persistence_a_rebooted_sender_is_dropped_as_a_replay() {
    // The negative control: a store that forgets (a fresh commissioned store after the
    // reboot) makes the sender reuse numbers 0 and 1; listeners drop them as replays.
    let (got, dropped) =
        reboot_scenario::<MemorySequenceStore>(|_| MemorySequenceStore::commissioned());
    assert!(got.is_empty());
    assert_eq!(dropped, vec![OpenError::Replay, OpenError::Replay]);
}

#[test]
fn events_surface_through_the_socket() {
    let mut hub = Box::new(TestHub::new());
    let hub = &mut *hub;
    let mut l1 = member(
        hub,
        1,
        V4_GROUP,
        Some(5),
        MemorySequenceStore::commissioned(),
        true,
    );
    let mut spy = intruder(hub, V4_GROUP);
    // Another member holding sid 5 too: a sender-ID clash.
    let mut g: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(5)));
    g.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let mut b = [0u8; 64];
    let n = g
        .seal(
            Instant(0),
            &mut MemorySequenceStore::commissioned(),
            b"x",
            &mut b,
        )
        .unwrap();
    udp_of(&mut spy)
        .send_slice(&b[..n], group_of(V4_GROUP))
        .unwrap();
    pump(hub, &mut [(1, &mut l1.stack), (INTRUDER, &mut spy)], 0);
    let (got, dropped) = drain(&mut l1, Instant(0));
    assert!(got.is_empty());
    assert_eq!(dropped, vec![OpenError::OwnSenderId]);
    assert_eq!(
        l1.socket.poll_event(),
        Some(Event::PossibleSenderIdClash {
            epoch: Epoch(1),
            seq: 0
        })
    );
    assert_eq!(l1.socket.poll_event(), None);
    assert_eq!(core_instant(NetInstant::from_millis(1234)), Instant(1234));
    assert_eq!(core_instant(NetInstant::from_millis(-5)), Instant(0));
}
