//! The tokio endpoint on IPv4 loopback multicast: a switch and two lights, bounded in time.
#![cfg(feature = "tokio")]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_std::async_endpoint::AsyncGroupEndpoint;
use group_std::endpoint::Clock;
use group_std::net::{MulticastConfig, MulticastSocket};

/// The port of this test process's groups.
fn port() -> u16 {
    40_000 + (std::process::id() % 20_000) as u16
}

fn endpoint(sid: Option<u8>) -> AsyncGroupEndpoint<MemorySequenceStore> {
    endpoint_on(
        SocketAddrV4::new(Ipv4Addr::new(239, 255, 47, 2), port()),
        5,
        sid,
    )
}

/// An endpoint of group `addr`, epoch 1 keyed from the secret `[secret; 32]`, sending as
/// `sid` if given.
fn endpoint_on(
    addr: SocketAddrV4,
    secret: u8,
    sid: Option<u8>,
) -> AsyncGroupEndpoint<MemorySequenceStore> {
    let keys = native_keys(2, Epoch(1), Suite::AES_128_CCM, &EpochSecret([secret; 32])).unwrap();
    let mut cfg = GroupConfig::new(2);
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    let clock = Clock::new();
    g.install_and_activate(Epoch(1), &keys, clock.now())
        .unwrap();
    let sock = MulticastSocket::open(&MulticastConfig::loopback_v4(addr)).unwrap();
    AsyncGroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock).unwrap()
}

#[tokio::test]
async fn async_switch_and_lights() {
    let mut lights = [endpoint(None), endpoint(None)];
    let mut switch = endpoint(Some(3));
    let first = switch.send(b"on").await.unwrap();
    switch.send(b"off").await.unwrap();
    for light in lights.iter_mut() {
        let mut got = Vec::new();
        while got.len() < 2 {
            let (d, _) = tokio::time::timeout(Duration::from_secs(5), light.recv())
                .await
                .expect("timed out")
                .unwrap();
            got.extend(d.into_iter().map(|r| r.plaintext));
        }
        assert_eq!(got, vec![b"on".to_vec(), b"off".to_vec()]);
    }
    // A replay injected through the switch's socket path is dropped by the lights.
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = port();
    raw.send_to(&first, ("239.255.47.2", port)).unwrap();
    for light in lights.iter_mut() {
        let (d, e) = tokio::time::timeout(Duration::from_secs(5), light.recv())
            .await
            .expect("timed out")
            .unwrap();
        assert!(d.is_empty());
        assert_eq!(e, vec![group_core::record::OpenError::Replay]);
    }
}

/// `send_records` on the tokio endpoint (sendmmsg under `async_io`): 21 records in two
/// batches (16, 5) arrive in order, each in its own datagram, and open.
#[tokio::test]
async fn async_batched_sends_arrive_in_order() {
    // Its own group address: the test above counts what arrives on its group.
    let addr = SocketAddrV4::new(Ipv4Addr::new(239, 255, 47, 3), port());
    let open = |sid: Option<u8>| endpoint_on(addr, 6, sid);
    let mut light = open(None);
    let mut switch = open(Some(4));
    let texts: Vec<Vec<u8>> = (0..21).map(|i| format!("async {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    assert_eq!(switch.send_records(&refs).await.unwrap(), 21);
    let mut got = Vec::new();
    while got.len() < 21 {
        let (d, e) = tokio::time::timeout(Duration::from_secs(5), light.recv())
            .await
            .expect("timed out")
            .unwrap();
        assert!(e.is_empty(), "{e:?}");
        got.extend(d.into_iter().map(|r| r.plaintext));
    }
    assert_eq!(got, texts);
}
