//! Real sockets on IPv4 loopback multicast (interface 127.0.0.1, TTL 1): one switch, three
//! lights. Everything stays on this machine and every wait is bounded.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{MulticastConfig, MulticastSocket};

fn group_addr() -> SocketAddrV4 {
    // A per-process port keeps parallel test runs apart.
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 42, 7), port)
}

fn endpoint(sid: Option<u8>) -> GroupEndpoint<MemorySequenceStore> {
    let keys = native_keys(5, Epoch(1), Suite::AES_128_CCM, &EpochSecret([3; 32])).unwrap();
    let mut cfg = GroupConfig::new(5);
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    let clock = Clock::new();
    g.install_and_activate(Epoch(1), &keys, clock.now())
        .unwrap();
    let sock = MulticastSocket::open(&MulticastConfig::loopback_v4(group_addr())).unwrap();
    GroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock)
}

#[test]
fn lights_receive_switch_commands_and_drop_replays_and_forgeries() {
    let mut lights: Vec<_> = (0..3).map(|_| endpoint(None)).collect();
    let mut switch = endpoint(Some(1));
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker.set_multicast_ttl_v4(1).unwrap();

    let mut sent = Vec::new();
    for cmd in [&b"on"[..], b"dim 40", b"off"] {
        sent.push(switch.send(cmd).unwrap());
    }
    // The attacker replays the first record and injects a modified copy of the last, moved to
    // a fresh sequence number (header and explicit nonce both say 100) so that only
    // authentication can catch it.
    attacker.send_to(&sent[0], group_addr()).unwrap();
    let mut forged = sent[2].clone();
    forged[10] = 100;
    forged[20] = 100;
    attacker.send_to(&forged, group_addr()).unwrap();
    // Garbage too.
    attacker
        .send_to(b"\x17\xfe\xfd garbage", group_addr())
        .unwrap();
    // And a record sealed after the attack, to show the receive loop kept going.
    sent.push(switch.send(b"on").unwrap());

    for light in lights.iter_mut() {
        let got = light.recv_many(4, Duration::from_secs(5)).unwrap();
        let texts: Vec<&[u8]> = got.iter().map(|r| r.plaintext.as_slice()).collect();
        assert_eq!(texts, vec![&b"on"[..], b"dim 40", b"off", b"on"]);
        assert!(got.iter().all(|r| r.sender_id == SenderId(1)));
        // Drain the rest (bounded) so every injected datagram is counted.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while light.group().counters().dropped() < 3 && std::time::Instant::now() < deadline {
            light.recv().unwrap();
        }
        let c = light.group().counters();
        assert_eq!(c.accepted, 4);
        assert_eq!(c.replay, 1, "{c:?}");
        assert_eq!(c.authentication_failed, 1, "{c:?}");
        assert_eq!(c.malformed, 1, "{c:?}");
    }
    // The switch hears its own records (loopback on) and drops them without a clash event.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while switch.group().counters().own_sender_id < 4 && std::time::Instant::now() < deadline {
        switch.recv().unwrap();
    }
    assert_eq!(switch.group().counters().own_sender_id, 4);
    assert_eq!(switch.group_mut().poll_event(), None);
}

/// `send_records` (issue 14: `sendmmsg`, 16 datagrams per system call): 37 records in three
/// batches (16, 16, 5) arrive, each in its own datagram, in order, and open.
#[test]
fn batched_sends_deliver_every_record_in_order() {
    // Its own group address: the test above counts every datagram on its group.
    let addr = SocketAddrV4::new(Ipv4Addr::new(239, 255, 42, 8), group_addr().port());
    let open = |sid: Option<u8>| {
        let keys = native_keys(5, Epoch(1), Suite::AES_128_GCM, &EpochSecret([4; 32])).unwrap();
        let mut cfg = GroupConfig::new(5);
        cfg.own_sender_id = sid.map(SenderId);
        let mut g: Group = Group::new(cfg);
        let clock = Clock::new();
        g.install_and_activate(Epoch(1), &keys, clock.now())
            .unwrap();
        let sock = MulticastSocket::open(&MulticastConfig::loopback_v4(addr)).unwrap();
        GroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock)
    };
    let mut light = open(None);
    let mut switch = open(Some(1));
    let texts: Vec<Vec<u8>> = (0..37).map(|i| format!("batch {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    assert_eq!(switch.send_records(&refs).unwrap(), 37);
    let got = light.recv_many(37, Duration::from_secs(5)).unwrap();
    let got_texts: Vec<&[u8]> = got.iter().map(|r| r.plaintext.as_slice()).collect();
    assert_eq!(got_texts, refs);
    let c = light.group().counters();
    assert_eq!((c.accepted, c.dropped()), (37, 0), "{c:?}");
    // An empty batch sends nothing.
    assert_eq!(switch.send_records(&[]).unwrap(), 0);
}
