//! The scripted scenario: a key server, two wall switches and N lights on one multicast group,
//! each a thread driving real sockets; an attacker with a plain UDP socket; a light
//! decommissioned, a light joining late, a switch rebooting.
//!
//! [`run`] sets everything up in a fresh temporary directory (key pairs, the key server's
//! state, the switches' sequence stores), plays the scenario, prints it through a
//! [`Display`], and returns the [`Summary`]. Every wait is bounded; a step that does not
//! happen in time ends the scenario with a failed check, never a hang.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use group_std::control;
use group_std::keyfile;
use group_std::keyserver::{DeviceConfig, GroupConfigFile, KeyServerConfig, KeyServerDaemon};
use group_std::net::MulticastConfig;

use crate::attacker::{self, Attacker};
use crate::command::{LightCommand, LightState, LightingMessage};
use crate::display::{Display, Presence};
use crate::node::{
    self, Device, LightHandle, Network, NodeId, RecordId, Report, SwitchHandle, spawn_light,
    spawn_switch,
};
use crate::summary::{
    AppliedCommand, Check, CommandSummary, InjectionSummary, LightSummary, SentRecord, Summary,
    SwitchSummary,
};

/// Which story to play.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScenarioKind {
    /// Everything: join, commands from both switches, attacks, decommissioning, a late join,
    /// a second attack, a switch reboot.
    Full,
    /// Join, two commands, three attacks, decommissioning.
    Short,
}

impl ScenarioKind {
    /// The name used on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Full => "full",
            ScenarioKind::Short => "short",
        }
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Lights at the start (2 to 32); the full scenario adds one late.
    pub lights: usize,
    /// The story.
    pub scenario: ScenarioKind,
    /// Records carry ECDSA P-256 signatures (source authentication).
    pub signed: bool,
    /// IPv6 on this interface index (inside a namespace: see [`crate::netns`]); IPv4 loopback
    /// if `None`.
    pub ipv6_ifindex: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lights: 8,
            scenario: ScenarioKind::Full,
            signed: false,
            ipv6_ifindex: None,
        }
    }
}

/// Group ID of the lighting group ("LIT").
pub const GROUP_ID: u32 = 0x004c_4954;
/// Delay between a new epoch's bundles and its use (ms): short, for a quick demo.
pub const ACTIVATION_DELAY_MS: u32 = 300;
/// How long the previous epoch stays receivable (ms).
pub const GRACE_MS: u32 = 10_000;

const SETTLE_LIMIT: Duration = Duration::from_secs(15);
const APPLY_LIMIT: Duration = Duration::from_secs(5);
const VERDICT_LIMIT: Duration = Duration::from_secs(5);
const SWITCH_A: usize = 0;
const SWITCH_B: usize = 1;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!(
            "dtls-group-lighting-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).map_err(|e| format!("temp dir {}: {e}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct KeyServerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    control: PathBuf,
}

impl KeyServerHandle {
    fn start(cfg: KeyServerConfig, control: PathBuf) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = control.clone();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("key-server".into())
            .spawn(move || {
                // A new installation: a fresh state database (`init`).
                let mut daemon = match KeyServerDaemon::start(&cfg, Some(&path), true) {
                    Ok(d) => {
                        let _ = ready_tx.send(Ok(()));
                        d
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("key server: {e}")));
                        return;
                    }
                };
                let _ = daemon.run(|| flag.load(Ordering::Relaxed));
            })
            .map_err(|e| format!("key server thread: {e}"))?;
        let mut h = Self {
            stop,
            thread: Some(thread),
            control,
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(h),
            Ok(Err(e)) => {
                h.shutdown();
                Err(e)
            }
            Err(_) => {
                h.shutdown();
                Err("key server did not start".into())
            }
        }
    }

    fn request(&self, line: &str) -> Result<serde_json::Value, String> {
        let answer = control::request(&self.control, line)
            .map_err(|e| format!("key server control socket: {e}"))?;
        serde_json::from_str(&answer).map_err(|e| format!("key server answer {answer:?}: {e}"))
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KeyServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Light {
    dev: Device,
    handle: Option<LightHandle>,
    joined_before: usize,
    removed_before: Option<usize>,
    removed_notice: bool,
    state: LightState,
    expected: LightState,
    expected_applied: u64,
    applied: Vec<AppliedCommand>,
    seen: HashSet<RecordId>,
    applied_after_removal: u64,
    accepted_twice: u64,
    accepted_unknown: u64,
    rejected: BTreeMap<String, u64>,
    epochs: BTreeSet<u16>,
    active: Option<u16>,
    verdicts: u64,
    last_verdict: String,
}

impl Light {
    fn running(&self) -> bool {
        self.handle.is_some()
    }
    fn member(&self) -> bool {
        self.running() && self.removed_before.is_none()
    }
}

struct Switch {
    dev: Device,
    store: PathBuf,
    handle: Option<SwitchHandle>,
    boots: u32,
    txn: u32,
    sid: Option<u8>,
    active: Option<u16>,
    sent: Vec<SentRecord>,
    sequence_reused: u64,
    announced: bool,
}

struct World {
    opts: Options,
    out: Display,
    net: Network,
    tx: Sender<(NodeId, Report)>,
    rx: Receiver<(NodeId, Report)>,
    ks: KeyServerHandle,
    attacker: Attacker,
    lights: Vec<Light>,
    switches: Vec<Switch>,
    commands: Vec<CommandSummary>,
    sent_ids: HashSet<RecordId>,
    injections: Vec<InjectionSummary>,
    /// Records of each command, by command index (for the attacker's narration).
    records: Vec<Vec<u8>>,
    failures: Vec<String>,
}

fn free_port(ip: std::net::IpAddr) -> Result<u16, String> {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| format!("free port: {e}"))?;
    s.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn fmt_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the scenario, printing to `out`; returns the summary (its `ok` says whether every
/// check passed). `Err` only if the setup failed (keys, sockets, key server).
pub fn run(opts: &Options, out: Box<dyn Write + Send>) -> Result<Summary, String> {
    if !(2..=32).contains(&opts.lights) {
        return Err(format!("lights: {} (2 to 32)", opts.lights));
    }
    let dir = TempDir::new()?;
    let mut world = World::new(opts, out, &dir.0)?;
    let result = world.play();
    if let Err(e) = &result {
        world.out.line("demo", &format!("STOPPED: {e}"));
        world.failures.push(e.clone());
    }
    world.stop_all();
    let summary = world.summary(result.err());
    world.print_summary(&summary);
    Ok(summary)
}

impl World {
    fn new(opts: &Options, out: Box<dyn Write + Send>, dir: &Path) -> Result<Self, String> {
        let mut out = Display::new(out);
        // Addresses: the group and the key server stay on this machine.
        static RUN: AtomicU32 = AtomicU32::new(0);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let salt = (std::process::id() ^ run.wrapping_mul(7919)) % 250;
        let (mcast, server) = match opts.ipv6_ifindex {
            None => {
                let ip = Ipv4Addr::new(239, 255, 77, u8::try_from(salt + 1).unwrap_or(1));
                let port = free_port(Ipv4Addr::UNSPECIFIED.into())?;
                let mut cfg = MulticastConfig::loopback_v4(SocketAddrV4::new(ip, port));
                cfg.read_timeout = Some(Duration::from_millis(20));
                let ks = SocketAddr::new(
                    Ipv4Addr::LOCALHOST.into(),
                    free_port(Ipv4Addr::LOCALHOST.into())?,
                );
                (cfg, ks)
            }
            Some(ifindex) => {
                let ip = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x4c49, 0x5400 + salt as u16);
                let port = free_port(Ipv6Addr::UNSPECIFIED.into())?;
                let mut cfg = MulticastConfig::v6(SocketAddrV6::new(ip, port, 0, ifindex), ifindex);
                cfg.read_timeout = Some(Duration::from_millis(20));
                let ks = SocketAddr::new(
                    Ipv6Addr::LOCALHOST.into(),
                    free_port(Ipv6Addr::LOCALHOST.into())?,
                );
                (cfg, ks)
            }
        };
        // Key pairs, as `dtls-group keygen` writes them.
        let keygen = |name: &str| -> Result<Device, String> {
            keyfile::generate(&dir.join(name)).map_err(|e| format!("keygen {name}: {e}"))?;
            Ok(Device {
                name: name.to_owned(),
                id: 0,
                key_file: dir.join(format!("{name}.key")),
            })
        };
        let server_pub =
            keyfile::generate(&dir.join("server")).map_err(|e| format!("keygen server: {e}"))?;
        let mut devices = Vec::new();
        for (i, name) in ["switch-a", "switch-b"].iter().enumerate() {
            let mut d = keygen(name)?;
            d.id = u32::try_from(i + 1).unwrap_or(0);
            devices.push(d);
        }
        let total = opts.lights + usize::from(opts.scenario == ScenarioKind::Full);
        for i in 0..total {
            let mut d = keygen(&format!("light-{}", i + 1))?;
            d.id = u32::try_from(i + 3).unwrap_or(0);
            devices.push(d);
        }
        let cfg = KeyServerConfig {
            listen: server,
            state: dir.join("keyserver.redb"),
            server_key: dir.join("server.key"),
            groups: vec![GroupConfigFile {
                id: GROUP_ID,
                suite: "ccm".into(),
                multicast: Some(mcast.group),
                admission: "trust-first".into(),
                signatures: opts.signed,
                grace_ms: GRACE_MS,
                activation_delay_ms: ACTIVATION_DELAY_MS,
                rotation_interval_ms: 0,
                rekey_on_join: true,
            }],
            devices: devices
                .iter()
                .map(|d| DeviceConfig {
                    id: d.id,
                    name: d.name.clone(),
                    public_key: dir.join(format!("{}.pub", d.name)).display().to_string(),
                    role: if d.name.starts_with("switch") {
                        "sender".into()
                    } else {
                        "listener".into()
                    },
                    groups: vec![GROUP_ID],
                })
                .collect(),
        };
        let family = if opts.ipv6_ifindex.is_some() {
            "IPv6, inside a private network namespace (veth dg0, hop limit 1)"
        } else {
            "IPv4 loopback, TTL 1"
        };
        out.plain(&format!(
            "dtls-group lighting demo: scenario {}, 1 key server, 2 wall switches, {} lights{}",
            opts.scenario.name(),
            opts.lights,
            if opts.scenario == ScenarioKind::Full {
                " (+1 joining later)"
            } else {
                ""
            }
        ));
        out.plain(&format!(
            "group {:#x} on {} ({family}); key server on {}; AES-128-CCM, {}; new keys activate {} ms after they are sent",
            GROUP_ID,
            mcast.group,
            server,
            if opts.signed {
                "records signed (ECDSA P-256)"
            } else {
                "records not signed"
            },
            ACTIVATION_DELAY_MS
        ));
        out.plain(
            "each node is a thread with its own sockets; times are seconds since the start. \
             Light row: * changed, x decommissioned, -- not joined yet.",
        );
        let ks = KeyServerHandle::start(cfg, dir.join("keyserver.sock"))?;
        out.line(
            "keyserver",
            &format!("running (fresh state, {} devices admitted)", devices.len()),
        );
        let attacker = Attacker::open(&mcast).map_err(|e| format!("attacker socket: {e}"))?;
        let net = Network {
            mcast,
            server,
            server_key_hex: keyfile::public_hex(&server_pub),
            group_id: GROUP_ID,
        };
        let (tx, rx) = mpsc::channel();
        let mut lights = Vec::new();
        let mut switches = Vec::new();
        for d in devices {
            if d.name.starts_with("switch") {
                switches.push(Switch {
                    store: dir.join(format!("{}.seq", d.name)),
                    dev: d,
                    handle: None,
                    boots: 0,
                    txn: 0,
                    sid: None,
                    active: None,
                    sent: Vec::new(),
                    sequence_reused: 0,
                    announced: false,
                });
            } else {
                out.add_light();
                lights.push(Light {
                    dev: d,
                    handle: None,
                    joined_before: 0,
                    removed_before: None,
                    removed_notice: false,
                    state: LightState::default(),
                    expected: LightState::default(),
                    expected_applied: 0,
                    applied: Vec::new(),
                    seen: HashSet::new(),
                    applied_after_removal: 0,
                    accepted_twice: 0,
                    accepted_unknown: 0,
                    rejected: BTreeMap::new(),
                    epochs: BTreeSet::new(),
                    active: None,
                    verdicts: 0,
                    last_verdict: String::new(),
                });
            }
        }
        Ok(Self {
            opts: opts.clone(),
            out,
            net,
            tx,
            rx,
            ks,
            attacker,
            lights,
            switches,
            commands: Vec::new(),
            sent_ids: HashSet::new(),
            injections: Vec::new(),
            records: Vec::new(),
            failures: Vec::new(),
        })
    }

    // ---- the story ----------------------------------------------------------------------------

    fn play(&mut self) -> Result<(), String> {
        let n = self.opts.lights;
        let full = self.opts.scenario == ScenarioKind::Full;
        let victim = n / 2;

        self.out.heading("1. The lights and the wall switches join");
        self.out.plain(
            "   Each device proves its identity to the key server (ECDSA P-256) and receives the \
             group key for the current epoch, sealed to its own key.",
        );
        for i in 0..n {
            self.start_light(i)?;
        }
        self.start_switch(SWITCH_A, true)?;
        self.start_switch(SWITCH_B, true)?;
        let epoch = self.settle()?;
        self.out.print_row();

        self.out
            .heading("2. Switch A turns the group on and dims it; switch B turns it off");
        self.out.plain(
            "   One multicast record per command; every light authenticates it and applies it.",
        );
        let on = self.command(SWITCH_A, LightCommand::On)?;
        let dim = self.command(SWITCH_A, LightCommand::Dim { level: 40 })?;
        let off = self.command(SWITCH_B, LightCommand::Off)?;

        self.out.heading("3. An attacker on the network");
        self.out.plain(
            "   A plain UDP socket on the same link, without keys: it captured every record so \
             far and now replays, modifies and forges records. Every light must drop each one.",
        );
        let captured = self
            .attacker
            .capture(Duration::from_millis(50))
            .map_err(|e| format!("attacker: {e}"))?;
        self.out.line(
            "attacker",
            &format!("has captured {captured} records from the group"),
        );
        self.attack_round_one(on, dim, off, epoch, full)?;

        if full {
            self.out.heading("4. Switch B recalls a scene");
            self.command(SWITCH_B, LightCommand::Scene { id: 2 })?;
        }

        let victim_name = self.lights[victim].dev.name.clone();
        self.out.heading(&format!(
            "{}. {victim_name} is decommissioned",
            if full { 5 } else { 4 }
        ));
        self.out.plain(
            "   The operator revokes it at the key server, which hands a new epoch key to every \
             remaining member (forward secrecy): the removed light can't read what follows.",
        );
        self.decommission(victim)?;
        let after = self.command(SWITCH_A, LightCommand::Dim { level: 70 })?;
        if !full {
            let _ = after;
            return Ok(());
        }

        self.out.heading("6. A new light joins");
        self.out.plain(
            "   It gets a fresh epoch key nobody has used (backward secrecy): it can't read \
             anything sent before it joined.",
        );
        let late = n;
        self.start_light(late)?;
        self.settle()?;
        self.out.print_row();
        let latest = self.command(SWITCH_B, LightCommand::On)?;

        self.out.heading("7. The attacker tries again");
        self.attack_round_two(on, latest)?;

        self.out.heading("8. Switch A reboots");
        self.out.plain(
            "   Its runtime is dropped (sockets, keys, counters: gone); only its sequence store \
             file survives. It rejoins and must never reuse a sequence number under a key.",
        );
        self.reboot(SWITCH_A)?;
        self.command(SWITCH_A, LightCommand::Dim { level: 25 })?;
        self.command(SWITCH_A, LightCommand::Scene { id: 3 })?;
        Ok(())
    }

    fn attack_round_one(
        &mut self,
        on: usize,
        dim: usize,
        off: usize,
        epoch: u16,
        full: bool,
    ) -> Result<(), String> {
        let signed = self.opts.signed;
        let on_rec = self.captured(on)?;
        let dim_rec = self.captured(dim)?;
        let off_rec = self.captured(off)?;
        let on_id = self.commands[on].record;
        let off_id = self.commands[off].record;
        let dim_id = self.commands[dim].record;
        self.inject(
            &format!("replays switch A's \"On\" record ({on_id}) unchanged"),
            "replay",
            on_rec.clone(),
        )?;
        // CCM encrypts in counter mode: flipping a ciphertext bit flips the plaintext bit.
        // The command variant is the payload byte after the version and the txn varint.
        let off_txn = self.commands[off].txn;
        let variant_at = 1 + postcard_varint_len(off_txn);
        let turned_on = attacker::rewrite(
            &attacker::flip(&off_rec, variant_at, 0x01),
            None,
            None,
            Some(off_id.seq + 1000),
            true,
        );
        self.inject(
            "turns switch B's \"Off\" record into \"On\" (flips one ciphertext bit) and renumbers \
             it (seq + 1000 in header and nonce) so it is not a replay",
            "authentication_failed",
            turned_on,
        )?;
        let forged_len = on_rec.len().saturating_sub(attacker::CIPHERTEXT_OFFSET);
        let body = self.attacker.noise(forged_len);
        let sid_a = on_id.sid;
        self.inject(
            &format!(
                "forges a record from switch A (sid {sid_a}, epoch {epoch}, seq 500) with random \
                 ciphertext and tag"
            ),
            "authentication_failed",
            attacker::forge(epoch, sid_a, 500, &body),
        )?;
        if !full {
            return Ok(());
        }
        self.inject(
            &format!(
                "renumbers switch A's \"Dim\" record ({dim_id}) to seq {} in the header only \
                 (its nonce still says seq {})",
                dim_id.seq + 50,
                dim_id.seq
            ),
            "nonce_mismatch",
            attacker::rewrite(&dim_rec, None, None, Some(dim_id.seq + 50), false),
        )?;
        self.inject(
            "poses as a new sender (sid 200) with a copy of the \"Dim\" record, header and nonce \
             rewritten",
            if signed {
                "unknown_sender"
            } else {
                "authentication_failed"
            },
            attacker::rewrite(&dim_rec, None, Some(200), Some(0), true),
        )?;
        self.inject(
            &format!(
                "sends the \"On\" record as if in a future epoch ({})",
                epoch + 7
            ),
            "unknown_epoch",
            attacker::rewrite(&on_rec, Some(epoch + 7), None, None, true),
        )?;
        let truncated = on_rec
            .get(..on_rec.len().saturating_sub(10))
            .unwrap_or(&[])
            .to_vec();
        self.inject(
            "sends the \"On\" record with its last 10 bytes cut off",
            "malformed",
            truncated,
        )?;
        self.inject(
            &format!("replays switch B's \"Off\" record ({off_id}) unchanged"),
            "replay",
            off_rec,
        )?;
        Ok(())
    }

    fn attack_round_two(&mut self, first: usize, latest: usize) -> Result<(), String> {
        let first_rec = self.captured_now(first)?;
        let latest_rec = self.captured_now(latest)?;
        let first_id = self.commands[first].record;
        let latest_id = self.commands[latest].record;
        self.inject(
            &format!(
                "replays the very first \"On\" record ({first_id}): members retired that \
                 epoch's key since, and the new light never had it"
            ),
            "unknown_epoch",
            first_rec,
        )?;
        self.inject(
            &format!("replays the latest \"On\" record ({latest_id}), new light included"),
            "replay",
            latest_rec,
        )?;
        Ok(())
    }

    // ---- steps --------------------------------------------------------------------------------

    fn start_light(&mut self, i: usize) -> Result<(), String> {
        let dev = self.lights[i].dev.clone();
        let h = spawn_light(i, &self.net, &dev, self.tx.clone())?;
        let l = &mut self.lights[i];
        l.handle = Some(h);
        l.joined_before = self.commands.len();
        self.out.line(&dev.name, "powered on, joining");
        Ok(())
    }

    fn start_switch(&mut self, i: usize, commission: bool) -> Result<(), String> {
        let s = &self.switches[i];
        let h = spawn_switch(i, &self.net, &s.dev, &s.store, commission, self.tx.clone())?;
        let s = &mut self.switches[i];
        s.handle = Some(h);
        s.boots += 1;
        s.active = None;
        s.announced = false;
        let name = s.dev.name.clone();
        self.out.line(
            &name,
            if commission {
                "powered on (new sequence store), joining"
            } else {
                "powered on again (same sequence store file), joining"
            },
        );
        Ok(())
    }

    /// Waits until the key server lists exactly the running members, none pending, nothing
    /// staged, and every member uses the current epoch; returns it.
    fn settle(&mut self) -> Result<u16, String> {
        let mut want: Vec<u64> = self
            .lights
            .iter()
            .filter(|l| l.member())
            .map(|l| u64::from(l.dev.id))
            .chain(
                self.switches
                    .iter()
                    .filter(|s| s.handle.is_some())
                    .map(|s| u64::from(s.dev.id)),
            )
            .collect();
        want.sort_unstable();
        let deadline = Instant::now() + SETTLE_LIMIT;
        let epoch = loop {
            let s = self.ks.request("status")?;
            let g = &s["groups"][0];
            let members = g["members"].as_array().cloned().unwrap_or_default();
            let mut have: Vec<u64> = members
                .iter()
                .filter_map(|m| m["device"].as_u64())
                .collect();
            have.sort_unstable();
            if have == want
                && members.iter().all(|m| m["pending"] == false)
                && g["staged"].is_null()
                && let Some(e) = g["current"].as_u64().and_then(|e| u16::try_from(e).ok())
            {
                break e;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the key server did not settle (want members {want:?}): {s}"
                ));
            }
            self.pump_for(Duration::from_millis(40));
        };
        self.wait("every member to use the current epoch", SETTLE_LIMIT, |w| {
            w.lights
                .iter()
                .filter(|l| l.member())
                .all(|l| l.active >= Some(epoch))
                && w.switches
                    .iter()
                    .filter(|s| s.handle.is_some())
                    .all(|s| s.active >= Some(epoch))
        })?;
        let lights = self.lights.iter().filter(|l| l.member()).count();
        let switches = self.switches.iter().filter(|s| s.handle.is_some()).count();
        let sids: Vec<String> = self
            .switches
            .iter()
            .filter_map(|s| s.sid.map(|sid| format!("{} sid {sid}", s.dev.name)))
            .collect();
        self.out.line(
            "keyserver",
            &format!(
                "epoch {epoch} is current: {lights} lights and {switches} switches hold its key ({})",
                sids.join(", ")
            ),
        );
        Ok(epoch)
    }

    /// Sends a command; waits until every member light applied it and every decommissioned
    /// light dropped it. Returns its index.
    fn command(&mut self, switch: usize, command: LightCommand) -> Result<usize, String> {
        let s = &mut self.switches[switch];
        s.txn += 1;
        let message = LightingMessage::new(s.txn, command);
        let name = s.dev.name.clone();
        let boot = s.boots;
        let handle = s.handle.as_ref().ok_or(format!("{name} is off"))?;
        let before: Vec<u64> = self.lights.iter().map(|l| l.verdicts).collect();
        let sent = handle.send(message, APPLY_LIMIT)?;
        let s = &mut self.switches[switch];
        if s.sent.iter().any(|x| x.record == sent.id) {
            s.sequence_reused += 1;
        }
        s.sent.push(SentRecord {
            boot,
            record: sent.id,
        });
        self.sent_ids.insert(sent.id);
        let index = self.commands.len();
        let mut members = Vec::new();
        for l in self.lights.iter_mut().filter(|l| l.member()) {
            l.expected = l.expected.apply(command);
            l.expected_applied += 1;
            members.push(l.dev.name.clone());
        }
        self.commands.push(CommandSummary {
            switch: name.clone(),
            txn: message.txn,
            command,
            record: sent.id,
            record_len: sent.record.len(),
            members,
        });
        self.records.push(sent.record.clone());
        self.out.line(
            &name,
            &format!(
                "sends {command} (txn {}, payload {}) in a {}-byte record: {}",
                message.txn,
                fmt_hex(&message.encode()),
                sent.record.len(),
                sent.id
            ),
        );
        let id = sent.id;
        self.wait(
            &format!("every light to apply {command}"),
            APPLY_LIMIT,
            |w| {
                w.lights.iter().enumerate().all(|(i, l)| {
                    if l.member() {
                        l.seen.contains(&id)
                    } else if l.running() {
                        l.verdicts > before[i]
                    } else {
                        true
                    }
                })
            },
        )?;
        self.out.flush_row();
        for i in 0..self.lights.len() {
            let l = &self.lights[i];
            if l.running() && !l.member() {
                let text = format!(
                    "can't follow it (decommissioned, no key): dropped as {}",
                    l.last_verdict
                );
                let name = l.dev.name.clone();
                self.out.line(&name, &text);
            }
        }
        Ok(index)
    }

    /// A command's record as the attacker captured it.
    fn captured(&mut self, index: usize) -> Result<Vec<u8>, String> {
        let id = self.commands[index].record;
        self.attacker
            .captured(id)
            .ok_or_else(|| format!("the attacker did not capture the record {id}"))
    }

    fn captured_now(&mut self, index: usize) -> Result<Vec<u8>, String> {
        self.attacker
            .capture(Duration::from_millis(30))
            .map_err(|e| format!("attacker: {e}"))?;
        self.captured(index)
    }

    /// Injects one datagram and waits for every running light's verdict.
    fn inject(&mut self, attack: &str, expected: &str, datagram: Vec<u8>) -> Result<(), String> {
        let before: Vec<u64> = self.lights.iter().map(|l| l.verdicts).collect();
        self.out.line("attacker", attack);
        self.attacker
            .inject(&datagram)
            .map_err(|e| format!("attacker: {e}"))?;
        let waited = self.wait("every light's verdict", VERDICT_LIMIT, |w| {
            w.lights
                .iter()
                .enumerate()
                .all(|(i, l)| !l.running() || l.verdicts > before[i])
        });
        let mut verdicts = BTreeMap::new();
        let mut tally: BTreeMap<String, usize> = BTreeMap::new();
        let (mut rejected, mut accepted, mut running) = (0, 0, 0);
        let mut unexpected = Vec::new();
        let mut keyless = Vec::new();
        for (i, l) in self.lights.iter().enumerate() {
            if !l.running() {
                continue;
            }
            running += 1;
            let v = if l.verdicts > before[i] {
                l.last_verdict.clone()
            } else {
                "no verdict".to_owned()
            };
            if v == "accepted" {
                accepted += 1;
            } else if v != "no verdict" {
                rejected += 1;
            }
            if l.member() {
                if v != expected {
                    unexpected.push(format!("{}: {v}", l.dev.name));
                }
                *tally.entry(v.clone()).or_default() += 1;
            } else {
                keyless.push(format!("{} (decommissioned, no keys): {v}", l.dev.name));
            }
            verdicts.insert(l.dev.name.clone(), v);
        }
        let mut reasons: Vec<String> = tally.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        reasons.extend(keyless);
        let verdict = if accepted == 0 && rejected == running && unexpected.is_empty() {
            "as expected".to_owned()
        } else {
            format!("UNEXPECTED (wanted {expected}: {})", unexpected.join(", "))
        };
        self.out.line(
            "lights",
            &format!(
                "{rejected}/{running} dropped it: {} — {verdict}",
                reasons.join(", ")
            ),
        );
        self.injections.push(InjectionSummary {
            attack: attack.to_owned(),
            expected: expected.to_owned(),
            verdicts,
            rejected,
            accepted,
        });
        waited
    }

    fn decommission(&mut self, victim: usize) -> Result<(), String> {
        let id = self.lights[victim].dev.id;
        let name = self.lights[victim].dev.name.clone();
        self.out
            .line("operator", &format!("revokes {name} (device {id})"));
        let answer = self.ks.request(&format!("revoke {id}"))?;
        if answer["revoked"].as_u64() != Some(u64::from(id)) {
            return Err(format!("revoke {id}: {answer}"));
        }
        self.lights[victim].removed_before = Some(self.commands.len());
        self.out.set_presence(victim, Presence::Removed);
        self.settle()?;
        // The notice is best effort; the new epoch is what locks the light out.
        let _ = self.wait("the removal notice", Duration::from_secs(3), |w| {
            w.lights[victim].removed_notice
        });
        Ok(())
    }

    fn reboot(&mut self, switch: usize) -> Result<(), String> {
        let name = self.switches[switch].dev.name.clone();
        let last = self.switches[switch].sent.last().map(|x| x.record);
        let stored = self.switches[switch]
            .handle
            .as_ref()
            .and_then(SwitchHandle::stored);
        if let (Some(last), Some(st)) = (last, stored) {
            self.out.line(
                &name,
                &format!(
                    "last record sent: {last}; its sequence store ({}) reserves epoch {} sid {} up \
                     to seq {}",
                    self.switches[switch]
                        .store
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    st.epoch.0,
                    st.sender_id.0,
                    st.reserved_until
                ),
            );
        }
        if let Some(mut h) = self.switches[switch].handle.take() {
            h.stop();
        }
        self.out.line(
            &name,
            "power cut: runtime, keys and counters gone; the store file stays",
        );
        self.start_switch(switch, false)?;
        let epoch = self.settle()?;
        let sid = self.switches[switch].sid.unwrap_or(0);
        let note = match stored {
            Some(st) if st.epoch.0 == epoch => format!(
                "it resumes at seq {}, above every number it may have used",
                st.reserved_until
            ),
            Some(st) => format!(
                "a key it never sent under, so it starts at seq 0 there (handed epoch {} again, \
                 it would resume at seq {})",
                st.epoch.0, st.reserved_until
            ),
            None => "a key it never sent under".to_owned(),
        };
        self.out.line(
            &name,
            &format!("back with sid {sid} in epoch {epoch}: {note}"),
        );
        Ok(())
    }

    // ---- reports ------------------------------------------------------------------------------

    fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&World) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            if Instant::now() > deadline {
                return Err(format!("timed out after {limit:?} waiting for {what}"));
            }
            self.pump(Duration::from_millis(15));
        }
        // Reports already queued belong to the display too.
        while let Some((node, report)) = node::recv(&self.rx, Duration::ZERO) {
            self.absorb(node, report);
        }
        Ok(())
    }

    fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump(end.saturating_duration_since(Instant::now()));
        }
    }

    fn pump(&mut self, limit: Duration) {
        match node::recv(&self.rx, limit.min(Duration::from_millis(15))) {
            Some((node, report)) => self.absorb(node, report),
            None => self.out.flush_row(),
        }
    }

    fn absorb(&mut self, node: NodeId, report: Report) {
        match node {
            NodeId::Light(i) => self.absorb_light(i, report),
            NodeId::Switch(i) => self.absorb_switch(i, report),
        }
    }

    fn absorb_light(&mut self, i: usize, report: Report) {
        let Some(l) = self.lights.get_mut(i) else {
            return;
        };
        let name = l.dev.name.clone();
        match report {
            Report::Installed {
                epoch,
                activate_in_ms,
                ..
            } => {
                let first = l.epochs.is_empty();
                l.epochs.insert(epoch);
                if first {
                    self.out.line(
                        &name,
                        &format!("joined: key for epoch {epoch} (current in {activate_in_ms} ms)"),
                    );
                    self.out.set_presence(i, Presence::Member);
                }
            }
            Report::Activated { epoch } => {
                l.epochs.insert(epoch);
                l.active = l.active.max(Some(epoch));
            }
            Report::Removed { reason } => {
                l.removed_notice = true;
                self.out.line(
                    &name,
                    &format!("removed by the key server ({reason}): group keys erased"),
                );
            }
            Report::Applied {
                record,
                message,
                state,
            } => {
                l.verdicts += 1;
                l.last_verdict = "accepted".into();
                if !l.seen.insert(record) {
                    l.accepted_twice += 1;
                }
                if !self.sent_ids.contains(&record) {
                    l.accepted_unknown += 1;
                }
                if l.removed_before.is_some() {
                    l.applied_after_removal += 1;
                }
                l.applied.push(AppliedCommand {
                    record,
                    txn: message.txn,
                    command: message.command,
                });
                l.state = state;
                self.out.set_state(i, state);
            }
            Report::Invalid { record, why } => {
                l.verdicts += 1;
                l.last_verdict = "accepted".into();
                if !l.seen.insert(record) {
                    l.accepted_twice += 1;
                }
                if !self.sent_ids.contains(&record) {
                    l.accepted_unknown += 1;
                }
                *l.rejected.entry("invalid_command".into()).or_default() += 1;
                self.out
                    .line(&name, &format!("ignored a command: {why} ({record})"));
            }
            Report::Rejected { reason, .. } => {
                l.verdicts += 1;
                l.last_verdict = reason.to_owned();
                *l.rejected.entry(reason.to_owned()).or_default() += 1;
            }
            Report::Failed { error } => {
                self.failures.push(format!("{name}: {error}"));
                self.out.line(&name, &format!("FAILED: {error}"));
            }
        }
    }

    fn absorb_switch(&mut self, i: usize, report: Report) {
        let Some(s) = self.switches.get_mut(i) else {
            return;
        };
        let name = s.dev.name.clone();
        match report {
            Report::Installed {
                epoch,
                sid,
                activate_in_ms,
            } => {
                s.sid = sid.or(s.sid);
                if !s.announced {
                    s.announced = true;
                    self.out.line(
                        &name,
                        &format!(
                            "joined: sender ID {}, key for epoch {epoch} (current in {activate_in_ms} ms)",
                            sid.map_or("none".into(), |x| x.to_string())
                        ),
                    );
                }
            }
            Report::Activated { epoch } => s.active = s.active.max(Some(epoch)),
            Report::Removed { reason } => {
                self.out.line(&name, &format!("removed ({reason})"));
            }
            Report::Failed { error } => {
                self.failures.push(format!("{name}: {error}"));
                self.out.line(&name, &format!("FAILED: {error}"));
            }
            Report::Applied { .. } | Report::Invalid { .. } | Report::Rejected { .. } => {}
        }
    }

    fn stop_all(&mut self) {
        for s in &mut self.switches {
            if let Some(mut h) = s.handle.take() {
                h.stop();
            }
        }
        // Drain what the lights still report, then stop them.
        while let Some((node, report)) = node::recv(&self.rx, Duration::from_millis(30)) {
            self.absorb(node, report);
        }
        for l in &mut self.lights {
            if let Some(mut h) = l.handle.take() {
                h.stop();
            }
            // A stopped light no longer counts as running; keep what it reported.
        }
        while let Some((node, report)) = node::recv(&self.rx, Duration::ZERO) {
            self.absorb(node, report);
        }
        self.out.flush_row();
        self.ks.shutdown();
    }

    // ---- summary ------------------------------------------------------------------------------

    fn summary(&self, error: Option<String>) -> Summary {
        let full = self.opts.scenario == ScenarioKind::Full;
        let lights: Vec<LightSummary> = self
            .lights
            .iter()
            .filter(|l| !l.epochs.is_empty() || !l.applied.is_empty() || l.verdicts > 0)
            .map(|l| LightSummary {
                name: l.dev.name.clone(),
                device_id: l.dev.id,
                joined_before_command: l.joined_before,
                removed_before_command: l.removed_before,
                applied: l.applied.clone(),
                applied_after_removal: l.applied_after_removal,
                accepted_twice: l.accepted_twice,
                accepted_unknown: l.accepted_unknown,
                final_state: l.state,
                expected_state: l.expected,
                expected_applied: l.expected_applied,
                rejected: l.rejected.clone(),
                epochs: l.epochs.iter().copied().collect(),
            })
            .collect();
        let switches: Vec<SwitchSummary> = self
            .switches
            .iter()
            .map(|s| SwitchSummary {
                name: s.dev.name.clone(),
                device_id: s.dev.id,
                boots: s.boots,
                sent: s.sent.clone(),
                sequence_reused: s.sequence_reused,
            })
            .collect();
        let mut checks = Vec::new();
        let mut check = |name: &str, bad: Vec<String>| {
            checks.push(Check {
                name: name.to_owned(),
                ok: bad.is_empty(),
                detail: bad.join("; "),
            });
        };
        check(
            "the scenario ran to the end",
            error.into_iter().chain(self.failures.clone()).collect(),
        );
        check(
            "every light shows the state the commands sent to it give",
            lights
                .iter()
                .filter(|l| l.final_state != l.expected_state)
                .map(|l| {
                    format!(
                        "{}: shows {}, expected {}",
                        l.name, l.final_state, l.expected_state
                    )
                })
                .collect(),
        );
        check(
            "every light applied exactly the commands sent while it was a member",
            lights
                .iter()
                .filter(|l| l.applied.len() as u64 != l.expected_applied)
                .map(|l| {
                    format!(
                        "{}: applied {}, expected {}",
                        l.name,
                        l.applied.len(),
                        l.expected_applied
                    )
                })
                .collect(),
        );
        check(
            "a decommissioned light applied nothing after its removal",
            lights
                .iter()
                .filter(|l| l.applied_after_removal > 0)
                .map(|l| format!("{}: {}", l.name, l.applied_after_removal))
                .collect(),
        );
        check(
            "every injected record was dropped by every running light",
            self.injections
                .iter()
                .filter(|i| i.accepted > 0 || i.rejected < i.verdicts.len())
                .map(|i| format!("{}: {:?}", i.attack, i.verdicts))
                .collect(),
        );
        check(
            "lights holding keys dropped each injected record for the expected reason",
            self.injections
                .iter()
                .flat_map(|i| {
                    i.verdicts
                        .iter()
                        .filter(|(name, v)| {
                            *v != &i.expected
                                && self
                                    .lights
                                    .iter()
                                    .any(|l| &&l.dev.name == name && l.removed_before.is_none())
                        })
                        .map(move |(name, v)| format!("{name}: {v} for {}", i.attack))
                })
                .collect(),
        );
        check(
            "no light accepted a record twice",
            lights
                .iter()
                .filter(|l| l.accepted_twice > 0)
                .map(|l| format!("{}: {}", l.name, l.accepted_twice))
                .collect(),
        );
        check(
            "no light accepted a record no switch sent",
            lights
                .iter()
                .filter(|l| l.accepted_unknown > 0)
                .map(|l| format!("{}: {}", l.name, l.accepted_unknown))
                .collect(),
        );
        check(
            "no switch used a sequence number twice (across reboots)",
            switches
                .iter()
                .filter(|s| s.sequence_reused > 0)
                .map(|s| format!("{}: {}", s.name, s.sequence_reused))
                .collect(),
        );
        if full {
            check(
                "switch A rebooted and kept sending",
                switches
                    .first()
                    .filter(|s| s.boots != 2 || !s.sent.iter().any(|x| x.boot == 2))
                    .map(|s| format!("{}: boots {}, sent {:?}", s.name, s.boots, s.sent))
                    .into_iter()
                    .collect(),
            );
        }
        let ok = checks.iter().all(|c| c.ok);
        Summary {
            scenario: self.opts.scenario.name().to_owned(),
            family: if self.opts.ipv6_ifindex.is_some() {
                "ipv6".into()
            } else {
                "ipv4".into()
            },
            signed: self.opts.signed,
            elapsed_ms: u64::try_from(self.out.elapsed().as_millis()).unwrap_or(u64::MAX),
            lights,
            switches,
            commands: self.commands.clone(),
            injections: self.injections.clone(),
            checks,
            ok,
        }
    }

    fn print_summary(&mut self, s: &Summary) {
        self.out.heading("Summary");
        for line in s.table() {
            self.out.plain(format!("   {line}").trim_end());
        }
        self.out.plain("");
        for c in &s.checks {
            self.out.plain(&format!(
                "   [{}] {}{}",
                if c.ok { "ok" } else { "FAILED" },
                c.name,
                if c.ok {
                    String::new()
                } else {
                    format!(": {}", c.detail)
                }
            ));
        }
        self.out.plain(&format!(
            "\n{} in {:.1} s",
            if s.ok {
                "all checks passed"
            } else {
                "SOME CHECKS FAILED"
            },
            s.elapsed_ms as f64 / 1000.0
        ));
    }
}

/// Bytes of `v` as a postcard varint.
fn postcard_varint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}
