//! The scripted scenario: a key server, two wall switches and N lights on one multicast group,
//! each a thread driving real sockets; an attacker with a plain UDP socket; a light
//! decommissioned, a light joining late, a switch rebooting.
//!
//! [`run`] sets everything up in a fresh temporary directory (key pairs, the key server's
//! state, the switches' sequence stores), plays the scenario, prints it through a
//! [`Display`], and returns the [`Summary`]. Every wait is bounded; a step that does not
//! happen in time ends the scenario with a failed check, never a hang.
//!
//! One file per part: `setup` (the temporary directory, the key server, the world with its
//! keys and nodes), `story` (the scenes in order and the attacks), `steps` (one scene
//! step each: start, settle, command, inject, decommission, reboot), `reports` (what the
//! nodes report, absorbed into the world) and `outcome` (the summary and its checks).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use crate::attacker::Attacker;
use crate::command::LightState;
use crate::display::Display;
use crate::node::{Device, LightHandle, Network, NodeId, RecordId, Report, SwitchHandle};
use crate::summary::{AppliedCommand, CommandSummary, InjectionSummary, SentRecord, Summary};

mod outcome;
mod reports;
mod setup;
mod steps;
mod story;

use setup::{KeyServerHandle, TempDir};

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
    /// Counts one authenticated record (applied, or carrying an invalid command): a verdict,
    /// and whether it was accepted twice or was never sent by a switch.
    fn count_accepted(&mut self, record: RecordId, sent_ids: &HashSet<RecordId>) {
        self.verdicts += 1;
        self.last_verdict = "accepted".into();
        if !self.seen.insert(record) {
            self.accepted_twice += 1;
        }
        if !sent_ids.contains(&record) {
            self.accepted_unknown += 1;
        }
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
