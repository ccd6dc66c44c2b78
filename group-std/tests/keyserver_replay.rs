//! Issue 10, finding 4: a replayed signed device message must not re-point where the key
//! server daemon sends that device's bundles. A device joins from one loopback socket; an
//! attacker replays its captured acknowledgement (and join requests) from another; the next
//! bundle still goes to the device's socket, and the daemon counts the replay. Loopback only;
//! every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use group_core::keydist::{
    DeviceId, Member, MemberConfig, MemberCredentials, Message, Role, parse,
};
use group_core::sequence::MemorySequenceStore;
use group_core::time::Instant;
use group_std::keyfile::{self, os_rng};
use group_std::keyserver::{KeyServerConfig, KeyServerDaemon};

const GID: u32 = 5;

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dtls-group-keyserver-replay-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Datagrams waiting on `sock` (non-blocking drain).
fn drain(sock: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn kinds(datagrams: &[Vec<u8>]) -> Vec<String> {
    datagrams
        .iter()
        .map(|d| match parse(d) {
            Ok(pm) => format!("{:?}", pm.message.kind()),
            Err(e) => format!("unparsable: {e}"),
        })
        .collect()
}

#[test]
fn a_replayed_ack_from_another_address_does_not_redirect_bundles() {
    let dir = temp_dir();
    let server_pub = keyfile::generate(&dir.join("server")).unwrap();
    keyfile::generate(&dir.join("light")).unwrap();
    let device_key = keyfile::read_private(&dir.join("light.key")).unwrap();
    let port = free_port();
    let cfg_path = dir.join("ks.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\n\
             [[group]]\nid = {GID}\nsuite = \"ccm\"\nactivation_delay_ms = 0\n\n\
             [[device]]\nid = 1\nname = \"light\"\npublic_key = \"light.pub\"\n\
             role = \"sender\"\ngroups = [{GID}]\n"
        ),
    )
    .unwrap();
    let cfg = KeyServerConfig::load(&cfg_path).unwrap();
    let mut daemon = KeyServerDaemon::start(&cfg, None, true).unwrap();
    let server_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let device = UdpSocket::bind("127.0.0.1:0").unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&device, &attacker] {
        s.set_nonblocking(true).unwrap();
    }
    let mut member: Member<MemorySequenceStore> = Member::new(
        MemberConfig::new(DeviceId(1), GID, Role::Sender),
        MemberCredentials::signed(device_key, server_pub),
        MemorySequenceStore::commissioned(),
    );
    let t0 = StdInstant::now();
    let now = || Instant(t0.elapsed().as_millis() as u64);
    let mut rng = os_rng();
    member.join(now()).unwrap();

    // Join, with everything the device sends captured.
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = StdInstant::now() + Duration::from_secs(20);
    let mut acked = false;
    while !acked {
        assert!(StdInstant::now() < deadline, "the device did not join");
        while let Some(n) = member.poll_transmit(now(), &mut rng, &mut buf).unwrap() {
            if matches!(parse(&buf[..n]).unwrap().message, Message::Ack(_)) {
                acked = true;
            }
            captured.push(buf[..n].to_vec());
            device.send_to(&buf[..n], server_addr).unwrap();
        }
        daemon.step().unwrap();
        for d in drain(&device) {
            let _ = member.handle_message(now(), &d);
        }
        member.handle_timeout(now());
    }
    // Let the ack arrive.
    for _ in 0..5 {
        daemon.step().unwrap();
    }
    assert!(member.is_joined());
    assert!(!daemon.active_server().unwrap().is_pending(DeviceId(1), GID));
    let ack = captured
        .iter()
        .rfind(|b| matches!(parse(b).unwrap().message, Message::Ack(_)))
        .unwrap()
        .clone();

    // The attacker replays the captured ack, and every captured join request, from its own
    // address.
    let replays_before = daemon.active_server().unwrap().replays();
    attacker.send_to(&ack, server_addr).unwrap();
    for _ in 0..5 {
        daemon.step().unwrap();
    }
    assert!(
        daemon.active_server().unwrap().replays() > replays_before,
        "the replayed ack was not counted"
    );
    for b in captured
        .iter()
        .filter(|b| matches!(parse(b).unwrap().message, Message::JoinRequest(_)))
    {
        attacker.send_to(b, server_addr).unwrap();
        for _ in 0..3 {
            daemon.step().unwrap();
        }
    }
    // (Join challenges answering the attacker's replays go to the attacker: harmless.)
    let to_attacker = drain(&attacker);
    assert!(
        kinds(&to_attacker).iter().all(|k| k == "JoinChallenge"),
        "the attacker got {:?}",
        kinds(&to_attacker)
    );
    let _ = drain(&device);

    // The next bundle goes to the device, not to the attacker.
    let epoch = daemon.rekey(GID).unwrap();
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(StdInstant::now() < deadline, "no bundle reached the device");
        daemon.step().unwrap();
        got.extend(drain(&device));
    }
    assert_eq!(kinds(&got), vec!["KeyBundle".to_string()]);
    member.handle_message(now(), &got[0]).unwrap();
    assert_eq!(
        member.group().unwrap().epochs().highest().map(|e| e.0),
        Some(epoch)
    );
    let to_attacker = drain(&attacker);
    assert!(
        !kinds(&to_attacker).iter().any(|k| k == "KeyBundle"),
        "a bundle went to the replayer's address: {:?}",
        kinds(&to_attacker)
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
