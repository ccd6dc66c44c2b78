//! Setting the world up: a temporary directory, the key server in its own thread, and the
//! world's keys, devices, lights, switches and attacker.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self};
use std::thread::JoinHandle;
use std::time::Duration;

use group_std::control;
use group_std::keyfile;
use group_std::keyserver::{
    DEFAULT_JOIN_UPDATE_DELAY_MS, DeviceConfig, GroupConfigFile, KeyServerConfig, KeyServerDaemon,
};
use group_std::net::MulticastConfig;

use crate::attacker::Attacker;
use crate::command::LightState;
use crate::display::Display;
use crate::node::{Device, Network};

use super::{
    ACTIVATION_DELAY_MS, GRACE_MS, GROUP_ID, Light, Options, ScenarioKind, Switch, World, free_port,
};

pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> Result<Self, String> {
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

pub(super) struct KeyServerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    control: PathBuf,
}

impl KeyServerHandle {
    pub(super) fn start(cfg: KeyServerConfig, control: PathBuf) -> Result<Self, String> {
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

    pub(super) fn request(&self, line: &str) -> Result<serde_json::Value, String> {
        let answer = control::request(&self.control, line)
            .map_err(|e| format!("key server control socket: {e}"))?;
        serde_json::from_str(&answer).map_err(|e| format!("key server answer {answer:?}: {e}"))
    }

    pub(super) fn shutdown(&mut self) {
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
impl World {
    pub(super) fn new(
        opts: &Options,
        out: Box<dyn Write + Send>,
        dir: &Path,
    ) -> Result<Self, String> {
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
            store: Default::default(),
            join_update_delay_ms: DEFAULT_JOIN_UPDATE_DELAY_MS,
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
}
