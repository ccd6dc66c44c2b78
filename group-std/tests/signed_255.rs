//! A group with record signatures and 255 senders, end to end (issue 16): the `dtls-group
//! keyserver` daemon (a process, redb state) and 255 std members (`MemberRuntime`, threads on
//! real sockets: unicast to the daemon on 127.0.0.1, IPv4 multicast on 127.0.0.1, TTL 1). Every
//! member's bundle lists 255 senders and continues in `SenderKeys` parts; every member must
//! install the whole list (the members track 255), agree on the epoch, and open the signed
//! records of the first and the last sender; a 256th sender is not admitted. Every wait is
//! bounded.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use group_core::keydist::{DeviceId, MAX_SENDERS, MemberConfig, MemberCredentials, Role};
use group_core::sequence::MemorySequenceStore;
use group_std::keyfile;
use group_std::member::MemberRuntime;
use group_std::net::{MulticastConfig, MulticastSocket};

const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");
const GROUP: u32 = 1;
/// Devices 1..=255 fill the group; device 256 is one sender too many.
const DEVICES: u32 = MAX_SENDERS as u32 + 1;
/// Members started at a time (each start changes the sender list for everyone).
const BATCH: u32 = 64;
/// The whole run.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a member thread reports.
#[derive(Clone, Default, Debug)]
struct Seen {
    joined: bool,
    epoch: Option<u16>,
    senders: usize,
    /// Plaintexts delivered, by sender ID.
    from: Vec<(u8, Vec<u8>)>,
    refused: u64,
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct MemberThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for MemberThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn write_config(dir: &Path, port: u16, group: SocketAddrV4) -> PathBuf {
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\nserver_key = \"server.key\"\nstate = \"ks.redb\"\n\n\
         [[group]]\nid = {GROUP}\nsuite = \"ccm\"\nmulticast = \"{group}\"\nsignatures = true\n\
         activation_delay_ms = 200\ngrace_ms = 5000\nrekey_on_join = true\n\n"
    );
    for id in 1..=DEVICES {
        text.push_str(&format!(
            "[[device]]\nid = {id}\nname = \"dev{id}\"\npublic_key = \"dev{id}.pub\"\n\
             role = \"sender\"\ngroups = [{GROUP}]\n\n"
        ));
    }
    let path = dir.join("ks.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs member `id` until stopped; `send` asks it to send one record (once joined).
#[allow(clippy::too_many_arguments)]
fn spawn_member(
    id: u32,
    dir: &Path,
    server_key_hex: &str,
    server: SocketAddr,
    group: SocketAddrV4,
    seen: Arc<Mutex<Vec<Seen>>>,
    send: Arc<AtomicBool>,
) -> MemberThread {
    let device_key = keyfile::read_private(&dir.join(format!("dev{id}.key"))).unwrap();
    let server_key = keyfile::parse_public(server_key_hex).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("dev{id}"))
            .stack_size(1 << 20)
            .spawn(move || {
                let mut mc = MulticastConfig::loopback_v4(group);
                mc.read_timeout = Some(Duration::from_millis(20));
                let mcast = MulticastSocket::open(&mc).unwrap();
                let mut rt = MemberRuntime::start_with_servers(
                    MemberConfig::new(DeviceId(id), GROUP, Role::Sender),
                    MemberCredentials::signed(device_key, server_key),
                    MemorySequenceStore::commissioned(),
                    &[server],
                    mcast,
                )
                .unwrap();
                let i = id as usize - 1;
                while !stop.load(Ordering::Relaxed) {
                    let polled = rt.poll().unwrap();
                    let m = rt.member();
                    let ready = m.is_joined()
                        && m.group().is_some_and(|g| g.current_epoch().is_some());
                    if ready && send.swap(false, Ordering::Relaxed) {
                        let _ = rt.send(format!("hello from {id}").as_bytes());
                    }
                    let m = rt.member();
                    let mut s = seen.lock().unwrap();
                    let e = &mut s[i];
                    e.joined = m.is_joined();
                    e.epoch = m.group().and_then(|g| g.current_epoch()).map(|e| e.0);
                    e.senders = m.group().map_or(0, |g| g.senders().count());
                    e.refused = rt.contact().refused;
                    for r in polled.delivered {
                        e.from.push((r.sender_id.0, r.plaintext));
                    }
                }
            })
            .unwrap()
    };
    MemberThread {
        stop,
        handle: Some(handle),
    }
}

/// Waits until `done` holds over what the members saw, or fails with `what`.
fn wait(
    seen: &Mutex<Vec<Seen>>,
    what: &str,
    deadline: Instant,
    done: impl Fn(&[Seen]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        {
            let s = seen.lock().unwrap();
            if done(&s) {
                return start.elapsed();
            }
            if Instant::now() >= deadline {
                let missing: Vec<_> = s
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !e.joined)
                    .map(|(i, _)| i + 1)
                    .take(20)
                    .collect();
                panic!(
                    "deadline passed waiting for {what}; not joined (first 20): {missing:?}; \
                     epochs: {:?}",
                    s.iter().map(|e| e.epoch).collect::<std::collections::BTreeSet<_>>()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_signed_group_of_255_senders_through_the_daemon() {
    let deadline = Instant::now() + RUN_LIMIT;
    let dir = std::env::temp_dir().join(format!("dtls-group-signed255-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server_key = keyfile::generate(&dir.join("server")).unwrap();
    let server_key_hex = keyfile::public_hex(&server_key);
    for id in 1..=DEVICES {
        keyfile::generate(&dir.join(format!("dev{id}"))).unwrap();
    }
    let port = free_udp_port();
    let group = SocketAddrV4::new(
        std::net::Ipv4Addr::new(239, 255, 78, (std::process::id() % 200) as u8 + 10),
        free_udp_port(),
    );
    let config = write_config(&dir, port, group);
    let _daemon = Daemon(
        Command::new(BIN)
            .arg("keyserver")
            .arg("--config")
            .arg(&config)
            .arg("--control")
            .arg(dir.join("ks.sock"))
            .arg("--init")
            .env("DTLS_GROUP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let seen = Arc::new(Mutex::new(vec![Seen::default(); DEVICES as usize]));
    let sends: Vec<Arc<AtomicBool>> = (0..DEVICES).map(|_| Arc::default()).collect();
    let mut members = Vec::new();
    let started = Instant::now();
    // 255 senders, 64 at a time.
    let mut next = 1;
    while next <= MAX_SENDERS as u32 {
        let end = (next + BATCH - 1).min(MAX_SENDERS as u32);
        for id in next..=end {
            members.push(spawn_member(
                id,
                &dir,
                &server_key_hex,
                server,
                group,
                seen.clone(),
                sends[id as usize - 1].clone(),
            ));
        }
        let took = wait(&seen, &format!("members 1..={end} joined"), deadline, |s| {
            s[..end as usize].iter().all(|e| e.joined)
        });
        eprintln!("members 1..={end} joined {took:?} after their start");
        next = end + 1;
    }
    // Everyone in one epoch with every other sender's key installed.
    let took = wait(
        &seen,
        "all 255 in one epoch with 254 senders each",
        deadline,
        |s| {
            let first = s[0].epoch;
            first.is_some()
                && s[..MAX_SENDERS]
                    .iter()
                    .all(|e| e.epoch == first && e.senders == MAX_SENDERS - 1)
        },
    );
    eprintln!(
        "all 255 members in one epoch, 254 senders each, {took:?} later ({:?} in all)",
        started.elapsed()
    );
    // The 256th sender is refused: it never gets a bundle.
    members.push(spawn_member(
        DEVICES,
        &dir,
        &server_key_hex,
        server,
        group,
        seen.clone(),
        sends[DEVICES as usize - 1].clone(),
    ));
    std::thread::sleep(Duration::from_secs(3));
    assert!(!seen.lock().unwrap()[DEVICES as usize - 1].joined);
    // Signed records of the first and the last sender reach everyone.
    sends[0].store(true, Ordering::Relaxed);
    sends[MAX_SENDERS - 1].store(true, Ordering::Relaxed);
    let took = wait(
        &seen,
        "the records of senders 1 and 255 at every member",
        deadline,
        |s| {
            s[..MAX_SENDERS].iter().enumerate().all(|(i, e)| {
                let got = |text: &str| e.from.iter().any(|(_, p)| p == text.as_bytes());
                (i == 0 || got("hello from 1")) && (i == MAX_SENDERS - 1 || got("hello from 255"))
            })
        },
    );
    eprintln!("records of senders 1 and 255 at all members after {took:?}");
    let s = seen.lock().unwrap();
    // The senders' sids as the records carried them: two different ones.
    let sids: std::collections::BTreeSet<u8> = s[1..MAX_SENDERS - 1]
        .iter()
        .flat_map(|e| e.from.iter().map(|(sid, _)| *sid))
        .collect();
    assert_eq!(sids.len(), 2, "{sids:?}");
    drop(s);
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
}
