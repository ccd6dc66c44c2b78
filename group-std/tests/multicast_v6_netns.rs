//! IPv6 multicast between real sockets, inside a network namespace this test creates
//! (`unshare -n`: a private namespace in which the test adds a veth pair, `dg0`/`dg1`; the
//! members join and send on `dg0`). IPv6 multicast on `lo` does not work, and nothing here may
//! leave the machine: the namespace has no other interface. Skipped, with the reason printed,
//! only where a namespace can't be created.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::Command;
use std::time::Duration;

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{Interface, MulticastConfig, MulticastSocket};

const INSIDE: &str = "DTLS_GROUP_TEST_IN_NETNS";

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

fn run_inside() {
    // /sys still shows the host's interfaces inside `unshare -n`; the script passes the index.
    let index = std::env::var("DG_IFINDEX").unwrap();
    let Interface::V6(lo) = Interface::parse(&index).unwrap() else {
        panic!("bad index {index}")
    };
    let mut lights: Vec<_> = (0..3).map(|_| endpoint(None, lo)).collect();
    let mut switch = endpoint(Some(2), lo);
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
    if std::env::var_os(INSIDE).is_some() {
        run_inside();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && ip link set lo up \
         && ip link add dg0 type veth peer name dg1 && ip link set dg0 up && ip link set dg1 up \
         && DG_IFINDEX=$(ip -o link show dg0 | cut -d: -f1) \
         && export DG_IFINDEX && exec '{}' --exact ipv6_multicast_inside_a_private_namespace --nocapture --test-threads=1",
        exe.display()
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .env(INSIDE, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("SKIPPED: can't run unshare to create a network namespace: {e}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && (stderr.contains("unshare failed") || stderr.contains("Operation not permitted"))
    {
        println!("SKIPPED: no permission to create a network namespace: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "inside the namespace:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}
