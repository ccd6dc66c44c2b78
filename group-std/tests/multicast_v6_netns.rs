//! IPv6 multicast between real sockets, inside a network namespace this test creates
//! (`unshare -n`: a private namespace in which the test adds a veth pair, `dg0`/`dg1`; the
//! members join and send on `dg0`). IPv6 multicast on `lo` does not work, and nothing here may
//! leave the machine: the namespace has no other interface. Skipped, with the reason printed,
//! only where a namespace can't be created.

mod support;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{MulticastConfig, MulticastSocket};

fn endpoint(sid: Option<u8>, ifindex: u32) -> GroupEndpoint<MemorySequenceStore> {
    let keys = native_keys(6, Epoch(1), Suite::AES_128_GCM, &EpochSecret([9; 32])).unwrap();
    let mut cfg = GroupConfig::new(6);
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    let clock = Clock::new();
    g.install_and_activate(Epoch(1), &keys, clock.now())
        .unwrap();
    let group = SocketAddrV6::new("ff02::1:7".parse::<Ipv6Addr>().unwrap(), 40_601, 0, ifindex);
    let sock = MulticastSocket::open(&MulticastConfig::v6(group, ifindex)).unwrap();
    GroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock)
}

fn run_inside(dg0: u32) {
    let mut lights: Vec<_> = (0..3).map(|_| endpoint(None, dg0)).collect();
    let mut switch = endpoint(Some(2), dg0);
    for cmd in [&b"on"[..], b"off"] {
        switch.send(cmd).unwrap();
    }
    for light in lights.iter_mut() {
        let got = light.recv_many(2, Duration::from_secs(5)).unwrap();
        let texts: Vec<&[u8]> = got.iter().map(|r| r.plaintext.as_slice()).collect();
        assert_eq!(texts, vec![&b"on"[..], b"off"]);
        assert!(got.iter().all(|r| r.from.is_ipv6()));
    }
}

#[test]
fn ipv6_multicast_inside_a_private_namespace() {
    support::netns_test("ipv6_multicast_inside_a_private_namespace", run_inside);
}
