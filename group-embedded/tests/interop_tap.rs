//! Interop: a smoltcp node (this crate's `GroupSocket`) and a group-std node (the Linux kernel's
//! UDP stack, `group_std::endpoint::GroupEndpoint`) exchange group records over IPv4
//! multicast, through a TAP device.
//!
//! Everything happens inside a private network namespace the test creates (`unshare -n`): it
//! adds a TAP device `dgtap0` with 192.0.2.1/24 on the kernel side; smoltcp opens the TAP and
//! uses 192.0.2.2. Nothing can leave the machine: the namespace has no other interface.
//! Skipped, with the reason printed, only where a namespace or a TAP device can't be created.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::wire::{Epoch, SenderId};
use group_embedded::net::{GroupSocket, core_instant};
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{Interface as StdInterface, MulticastConfig, MulticastSocket};
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Medium, TunTapInterface, wait};
use smoltcp::socket::udp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

const INSIDE: &str = "DTLS_GROUP_TEST_IN_TAP_NETNS";
const TEST: &str = "smoltcp_and_linux_nodes_exchange_records_through_a_tap";
const TAP: &str = "dgtap0";
const GROUP_ID: u32 = 0x0107;
const PORT: u16 = 40_611;
const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 0, 7);

fn keys() -> RecordKeys {
    native_keys(
        GROUP_ID,
        Epoch(1),
        Suite::AES_128_CCM,
        &EpochSecret([0x42; 32]),
    )
    .unwrap()
}

fn leak<T: Clone>(v: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![v; n].into_boxed_slice())
}

fn run_inside() {
    let start = StdInstant::now();
    let now = || NetInstant::from_millis(start.elapsed().as_millis() as i64);

    // The Linux node (group-std), sender ID 1, on the kernel side of the TAP.
    let clock = Clock::new();
    let mut g: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(1)));
    g.install_and_activate(Epoch(1), &keys(), clock.now())
        .unwrap();
    let cfg = MulticastConfig {
        group: SocketAddr::V4(SocketAddrV4::new(GROUP_V4, PORT)),
        interface: StdInterface::V4(Ipv4Addr::new(192, 0, 2, 1)),
        loopback: false,
        ttl: 1,
        reuse: true,
        read_timeout: Some(Duration::from_millis(100)),
    };
    let mut linux = GroupEndpoint::new(
        MulticastSocket::open(&cfg).unwrap(),
        g,
        MemorySequenceStore::commissioned(),
        clock,
    );

    // The smoltcp node, sender ID 2, on the TAP itself.
    let mut tap = TunTapInterface::new(TAP, Medium::Ethernet).unwrap();
    let fd = tap.as_raw_fd();
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([
        0x02, 0, 0, 0, 0, 0x02,
    ])));
    config.random_seed = 2;
    let mut iface = Interface::new(config, &mut tap, now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(192, 0, 2, 2), 24))
            .unwrap()
    });
    let mut sockets = SocketSet::new(&mut Box::leak(Box::new([SocketStorage::EMPTY; 1]))[..]);
    let handle = sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(leak(udp::PacketMetadata::EMPTY, 8), leak(0u8, 4096)),
        udp::PacketBuffer::new(leak(udp::PacketMetadata::EMPTY, 8), leak(0u8, 4096)),
    ));
    let mut g: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(2)));
    g.install_and_activate(Epoch(1), &keys(), core_instant(now()))
        .unwrap();
    let mut node = GroupSocket::new(
        g,
        MemorySequenceStore::commissioned(),
        handle,
        IpEndpoint::new(IpAddress::Ipv4(GROUP_V4), PORT),
    );
    node.join(&mut iface, &mut sockets).unwrap();
    iface.poll(now(), &mut tap, &mut sockets);
    // The kernel turns the TAP's carrier on only after a process attached to it, through its
    // link watcher (up to a second later); until then it drops what is sent on the link.
    wait_for_carrier();

    // Linux → smoltcp.
    for m in [&b"from linux 1"[..], b"from linux 2"] {
        linux.send(m).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = StdInstant::now() + Duration::from_secs(5);
    while got.len() < 2 && StdInstant::now() < deadline {
        wait(fd, Some(smoltcp::time::Duration::from_millis(50))).unwrap();
        iface.poll(now(), &mut tap, &mut sockets);
        while let Some(d) = node
            .recv(&mut sockets, core_instant(now()), &mut buf)
            .unwrap()
        {
            for r in d {
                let r = r.unwrap();
                got.push((r.sender_id, r.seq, r.plaintext.to_vec()));
            }
        }
    }
    assert_eq!(
        got,
        vec![
            (SenderId(1), 0, b"from linux 1".to_vec()),
            (SenderId(1), 1, b"from linux 2".to_vec())
        ]
    );

    // smoltcp → Linux.
    let mut scratch = [0u8; 128];
    for m in [&b"from smoltcp 1"[..], b"from smoltcp 2"] {
        node.send(&mut sockets, core_instant(now()), m, &mut scratch)
            .unwrap();
    }
    for _ in 0..10 {
        iface.poll(now(), &mut tap, &mut sockets);
        if sockets.get::<udp::Socket>(handle).send_queue() == 0 {
            break;
        }
    }
    let received = linux.recv_many(2, Duration::from_secs(5)).unwrap();
    let texts: Vec<(u8, u64, &[u8])> = received
        .iter()
        .map(|r| (r.sender_id.0, r.seq, r.plaintext.as_slice()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (2, 0, &b"from smoltcp 1"[..]),
            (2, 1, &b"from smoltcp 2"[..])
        ]
    );
    assert!(
        received
            .iter()
            .all(|r| r.from.ip() == Ipv4Addr::new(192, 0, 2, 2))
    );
    println!("interop: 2 records Linux -> smoltcp, 2 records smoltcp -> Linux");
}

fn wait_for_carrier() {
    let deadline = StdInstant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-o", "link", "show", TAP])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        if line.contains("LOWER_UP") && line.contains("state UP") {
            return;
        }
        assert!(
            StdInstant::now() < deadline,
            "{TAP} has no carrier after 5 s: {line}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn smoltcp_and_linux_nodes_exchange_records_through_a_tap() {
    if std::env::var_os(INSIDE).is_some() {
        run_inside();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ip link set lo up && ip tuntap add dev {TAP} mode tap \
         && ip addr add 192.0.2.1/24 dev {TAP} && ip link set {TAP} up \
         && exec '{}' --exact {TEST} --nocapture --test-threads=1",
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && (stderr.contains("unshare failed")
            || stderr.contains("Operation not permitted")
            || stderr.contains("ioctl(TUNSETIFF)"))
    {
        println!("SKIPPED: no network namespace or TAP device here: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "inside the namespace:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("interop: 2 records Linux -> smoltcp, 2 records smoltcp -> Linux"),
        "{stdout}"
    );
}
