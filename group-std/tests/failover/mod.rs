//! The failover scenario's machinery: key-server daemon processes (`dtls-group keyserver`),
//! twenty members as threads on real sockets (a unicast socket to the key servers, a multicast
//! socket on 127.0.0.1, TTL 1), two of them switches sending a record every 100 ms, and what
//! they saw, for the [`ledger`]. Every wait is bounded and fails naming what was missing.
#![allow(dead_code)]

pub mod ledger;

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use group_core::group::OpenError;
use group_core::keydist::{DeviceId, MemberConfig, MemberCredentials, MemberEvent, Role};
use group_core::sequence::MemorySequenceStore;
use group_core::wire::RecordHeader;
use group_std::keyfile;
use group_std::member::MemberRuntime;
use group_std::net::{MulticastConfig, MulticastSocket};
use serde_json::Value;

use ledger::{Ledger, Seen};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");
/// The one group.
pub const GROUP: u32 = 1;
/// Device IDs: 1 and 2 are the switches, 3..=20 the lights.
pub const SWITCHES: [u32; 2] = [1, 2];
/// Every device.
pub const DEVICES: std::ops::RangeInclusive<u32> = 1..=20;
/// How often a switch sends.
const SEND_EVERY: Duration = Duration::from_millis(100);

/// A free UDP port on 127.0.0.1 (bound, read, released).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One key-server daemon: its address, control socket, configuration and process.
pub struct Server {
    pub name: String,
    pub port: u16,
    pub control: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
}

impl Server {
    /// Starts `dtls-group keyserver` (`--init` for a new state), logs on stderr at warn.
    pub fn start(&mut self, init: bool) {
        let mut cmd = Command::new(BIN);
        cmd.arg("keyserver")
            .arg("--config")
            .arg(&self.config)
            .arg("--control")
            .arg(&self.control)
            .env("DTLS_GROUP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if init {
            cmd.arg("--init");
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", self.name)));
    }

    /// SIGKILL (no chance to save or say goodbye), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to its process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Whether its process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `dtls-group admin CONTROL[,CONTROL...] REQUEST...`: the JSON answer, or why not.
pub fn admin(controls: &[PathBuf], req: &[&str]) -> Result<Value, String> {
    let list: Vec<String> = controls
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let out = Command::new(BIN)
        .arg("admin")
        .arg(list.join(","))
        .args(req)
        .env("DTLS_GROUP_LOG", "off")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "admin {req:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// What one member saw, shared with the scenario.
#[derive(Default, Debug, Clone)]
pub struct Device {
    pub joined: bool,
    /// The epoch it sends in / last activated.
    pub active: Option<u16>,
    pub removed: bool,
    /// When it last received a record from each switch (by device ID).
    pub last_from: BTreeMap<u32, Instant>,
    /// When each bundle was installed: (time, epoch).
    pub installed: Vec<(Instant, u16)>,
    pub failovers: u64,
    pub followed: u64,
    pub io_errors: u64,
    /// The member's state, its current key server, and the reason of its last refusal.
    pub state: String,
    pub server: Option<SocketAddr>,
    pub refused: u64,
    pub last_refusal: Option<String>,
}

/// What every member saw, and the ledger of the run.
#[derive(Default)]
pub struct Shared {
    pub devices: BTreeMap<u32, Device>,
    pub ledger: Ledger,
}

/// A member thread.
pub struct MemberThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl MemberThread {
    /// Stops it (no leave is sent: as if it were switched off) and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for MemberThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The site: key servers, the addresses members know, the members.
pub struct Site {
    pub dir: PathBuf,
    pub servers: Vec<Server>,
    /// Key-server addresses the members are configured with, in order.
    pub member_servers: Vec<SocketAddr>,
    pub group: SocketAddrV4,
    pub server_key_hex: String,
    pub shared: Arc<Mutex<Shared>>,
    pub members: BTreeMap<u32, MemberThread>,
}

/// The key-server configuration every daemon of the site shares (`listen` differs). `store`
/// ends the top-level keys: `state = "ks.redb"`, or the high-water file and a `[store]` table
/// for PostgreSQL.
fn write_config(dir: &Path, name: &str, port: u16, store: &str, group: SocketAddrV4) -> PathBuf {
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\nserver_key = \"server.key\"\n{store}\n\n\
         [[group]]\nid = {GROUP}\nsuite = \"ccm\"\nmulticast = \"{group}\"\n\
         activation_delay_ms = 200\ngrace_ms = 2000\nrekey_on_join = true\n\n"
    );
    for id in DEVICES {
        let role = if SWITCHES.contains(&id) {
            "sender"
        } else {
            "listener"
        };
        text.push_str(&format!(
            "[[device]]\nid = {id}\nname = \"dev{id}\"\npublic_key = \"dev{id}.pub\"\n\
             role = \"{role}\"\ngroups = [{GROUP}]\n\n"
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

impl Site {
    /// A fresh directory with keys for the server and every device; `stores` gives each
    /// daemon's state line (e.g. `state = "ks.redb"`); `extra` addresses are put before the
    /// daemons' in the members' list (a dead address, to exercise moving on).
    pub fn new(tag: &str, stores: &[String], dead_first: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("dtls-group-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server_key = keyfile::generate(&dir.join("server")).unwrap();
        for id in DEVICES {
            keyfile::generate(&dir.join(format!("dev{id}"))).unwrap();
        }
        let group = SocketAddrV4::new(
            std::net::Ipv4Addr::new(239, 255, 77, (std::process::id() % 200) as u8 + 10),
            free_udp_port(),
        );
        let servers: Vec<Server> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let port = free_udp_port();
                let name = format!("ks{i}");
                Server {
                    config: write_config(&dir, &name, port, store, group),
                    control: dir.join(format!("{name}.sock")),
                    name,
                    port,
                    child: None,
                }
            })
            .collect();
        let mut member_servers: Vec<SocketAddr> = (0..dead_first)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_udp_port())))
            .collect();
        member_servers.extend(
            servers
                .iter()
                .map(|s| SocketAddr::from(([127, 0, 0, 1], s.port))),
        );
        Self {
            dir,
            servers,
            member_servers,
            group,
            server_key_hex: keyfile::public_hex(&server_key),
            shared: Arc::new(Mutex::new(Shared::default())),
            members: BTreeMap::new(),
        }
    }

    /// The index of the server whose status says it is active (a redb server, which has no
    /// standby, is active when it answers), waiting up to `limit`.
    pub fn active(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let roles: Vec<Option<String>> = self
                .servers
                .iter()
                .map(|s| {
                    let a = group_std::control::request(&s.control, "status").ok()?;
                    let v: Value = serde_json::from_str(&a).ok()?;
                    Some(v["role"].as_str().unwrap_or("active").to_owned())
                })
                .collect();
            if let Some(i) = roles.iter().position(|r| r.as_deref() == Some("active")) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no key server active within {limit:?}: roles {roles:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lease as the active server's status shows it (PostgreSQL), into the ledger.
    pub fn note_lease(&self) {
        let s = self.status(Duration::from_secs(20));
        if let (Some(holder), Some(token), Some(generation)) = (
            s["lease"]["holder"].as_str(),
            s["lease"]["token"].as_u64(),
            s["lease"]["generation"].as_u64(),
        ) {
            self.note(Seen::Lease {
                holder: holder.to_owned(),
                token,
                generation,
            });
        }
    }

    /// Every control socket.
    pub fn controls(&self) -> Vec<PathBuf> {
        self.servers.iter().map(|s| s.control.clone()).collect()
    }

    /// The key server's status through `admin` (whichever answers as active), waiting up to
    /// `limit` for one to answer.
    pub fn status(&self, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            match admin(&self.controls(), &["status"]) {
                Ok(v) => return v,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no key server answered status within {limit:?}: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (current, staged) epochs of the group.
    pub fn epochs(&self) -> (u16, Option<u16>) {
        let s = self.status(Duration::from_secs(20));
        let g = &s["groups"][0];
        (
            g["current"].as_u64().unwrap_or(0) as u16,
            g["staged"].as_u64().map(|e| e as u16),
        )
    }

    /// Starts (or restarts, as a fresh runtime that joins) member `id`.
    pub fn start_member(&mut self, id: u32) {
        if let Some(mut old) = self.members.remove(&id) {
            old.stop();
        }
        let role = role_of(id);
        let rt = self.runtime(id, &self.member_servers);
        {
            let mut sh = self.shared.lock().unwrap();
            let d = sh.devices.entry(id).or_default();
            d.joined = false;
            d.active = None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name(format!("dev{id}"))
                .spawn(move || run_member(id, role, rt, &stop, &shared))
                .unwrap()
        };
        self.members.insert(
            id,
            MemberThread {
                stop,
                handle: Some(handle),
            },
        );
    }

    /// A member runtime for device `id` with key-server addresses `servers`, joining.
    pub fn runtime(&self, id: u32, servers: &[SocketAddr]) -> MemberRuntime<MemorySequenceStore> {
        let device_key = keyfile::read_private(&self.dir.join(format!("dev{id}.key"))).unwrap();
        let server_key = keyfile::parse_public(&self.server_key_hex).unwrap();
        let mut mc = MulticastConfig::loopback_v4(self.group);
        mc.read_timeout = Some(Duration::from_millis(20));
        let mcast = MulticastSocket::open(&mc).unwrap();
        MemberRuntime::start_with_servers(
            MemberConfig::new(DeviceId(id), GROUP, role_of(id)),
            MemberCredentials::signed(device_key, server_key),
            MemorySequenceStore::commissioned(),
            servers,
            mcast,
        )
        .unwrap()
    }

    /// A copy of what member `id` saw.
    pub fn device(&self, id: u32) -> Device {
        self.shared
            .lock()
            .unwrap()
            .devices
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `done` holds over the devices' states; fails after `limit` with `what` and
    /// the states.
    pub fn wait(&self, what: &str, limit: Duration, done: impl Fn(&BTreeMap<u32, Device>) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            {
                let sh = self.shared.lock().unwrap();
                if done(&sh.devices) {
                    return;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "deadline ({limit:?}) passed waiting for {what}:\n{}",
                        describe_devices(&sh.devices)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The members' states, one line each (for failure messages).
    pub fn describe(&self) -> String {
        describe_devices(&self.shared.lock().unwrap().devices)
    }

    /// Adds an observation to the ledger.
    pub fn note(&self, s: Seen) {
        self.shared.lock().unwrap().ledger.push(s);
    }

    /// The key server's members with their sender IDs in the current epoch, into the ledger
    /// (call when no epoch is staged).
    pub fn note_server_members(&self) {
        let s = self.status(Duration::from_secs(20));
        let g = &s["groups"][0];
        if !g["staged"].is_null() {
            return;
        }
        let epoch = g["current"].as_u64().unwrap_or(0) as u16;
        for m in g["members"].as_array().into_iter().flatten() {
            self.note(Seen::ServerMember {
                device: m["device"].as_u64().unwrap_or(0) as u32,
                group: GROUP,
                epoch,
                sid: m["sender_id"].as_u64().map(|s| s as u8),
            });
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for m in self.members.values_mut() {
            m.stop();
        }
        for s in &mut self.servers {
            s.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A member's loop: key distribution and group traffic; a switch sends every [`SEND_EVERY`].
fn run_member(
    id: u32,
    role: Role,
    mut rt: MemberRuntime<MemorySequenceStore>,
    stop: &AtomicBool,
    shared: &Mutex<Shared>,
) {
    let mut last_send = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let polled = rt.poll();
        let now = Instant::now();
        let mut sh = shared.lock().unwrap();
        let mut seen = Vec::new();
        let d = sh.devices.entry(id).or_default();
        match polled {
            Ok(p) => {
                for e in &p.events {
                    match e {
                        MemberEvent::BundleInstalled {
                            epoch, sender_id, ..
                        } => {
                            d.installed.push((now, epoch.0));
                            seen.push(Seen::Bundle {
                                device: id,
                                group: GROUP,
                                epoch: epoch.0,
                                sid: sender_id.map(|s| s.0),
                            });
                        }
                        MemberEvent::EpochActivated { epoch }
                        | MemberEvent::Recovered { epoch } => {
                            d.active = Some(epoch.0);
                        }
                        MemberEvent::Removed { .. } => d.removed = true,
                        _ => {}
                    }
                }
                for r in &p.delivered {
                    if let Some(sw) = switch_of(&r.plaintext) {
                        d.last_from.insert(sw, now);
                    }
                    seen.push(Seen::Opened {
                        device: id,
                        epoch: r.epoch.0,
                        sid: r.sender_id.0,
                        seq: r.seq,
                        payload: r.plaintext.clone(),
                    });
                }
                if p.dropped.contains(&OpenError::AuthenticationFailed) {
                    seen.push(Seen::AuthFailed {
                        device: id,
                        epoch: d.active.unwrap_or(0),
                    });
                }
            }
            Err(_) => d.io_errors += 1,
        }
        d.joined = rt.member().is_joined();
        if d.active.is_none() {
            d.active = rt
                .member()
                .group()
                .and_then(|g| g.current_epoch())
                .map(|e| e.0);
        }
        d.failovers = rt.contact().failovers;
        d.state = format!("{:?}", rt.member().state());
        d.server = Some(rt.server());
        d.refused = rt.contact().refused;
        d.last_refusal = rt.contact().last_refusal.clone();
        d.followed = rt.contact().followed;
        if role == Role::Sender && d.joined && now.duration_since(last_send) >= SEND_EVERY {
            last_send = now;
            let text = format!("sw{id} {n}");
            n += 1;
            if let Ok(rec) = rt.send(text.as_bytes())
                && let Ok(h) = RecordHeader::parse(&rec)
            {
                seen.push(Seen::Sealed {
                    device: id,
                    epoch: h.epoch.0,
                    sid: h.sender_id.0,
                    seq: h.seq,
                    payload: text.into_bytes(),
                });
            }
        }
        sh.ledger.extend(seen);
    }
}

/// The members' states, one line each.
fn describe_devices(devs: &BTreeMap<u32, Device>) -> String {
    let lines: Vec<String> = devs
        .iter()
        .map(|(id, d)| {
            format!(
                "dev{id}: {} joined {} active {:?} removed {} server {:?} failovers {} \
                 followed {} refused {} ({:?}) io_errors {}",
                d.state,
                d.joined,
                d.active,
                d.removed,
                d.server,
                d.failovers,
                d.followed,
                d.refused,
                d.last_refusal,
                d.io_errors
            )
        })
        .collect();
    lines.join("\n")
}

/// Switches send, lights listen.
fn role_of(id: u32) -> Role {
    if SWITCHES.contains(&id) {
        Role::Sender
    } else {
        Role::Listener
    }
}

/// The switch that sent `payload` (`sw{id} {n}`).
fn switch_of(payload: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(payload).ok()?;
    s.strip_prefix("sw")?.split(' ').next()?.parse().ok()
}
