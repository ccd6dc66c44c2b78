//! The run's outcome: per light, per switch, per command and per injected record; the table
//! the demo prints at the end, and the JSON file `--json-summary FILE` writes (the same
//! [`Summary`], serialized with serde_json).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{LightCommand, LightState};
use crate::node::RecordId;

/// The whole run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Signed records.
    pub signed: bool,
    /// Run time in milliseconds.
    pub elapsed_ms: u64,
    /// The lights, in order (the late joiner last).
    pub lights: Vec<LightSummary>,
    /// The switches.
    pub switches: Vec<SwitchSummary>,
    /// Every command a switch sent, in order.
    pub commands: Vec<CommandSummary>,
    /// Every record the attacker injected, in order.
    pub injections: Vec<InjectionSummary>,
    /// The demo's own checks.
    pub checks: Vec<Check>,
    /// Whether every check passed.
    pub ok: bool,
}

/// One light.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LightSummary {
    /// Name (`light-3`).
    pub name: String,
    /// Device ID at the key server.
    pub device_id: u32,
    /// Index into `commands` of the first command sent after it joined.
    pub joined_before_command: usize,
    /// Index into `commands` of the first command sent after it was decommissioned, if it was.
    pub removed_before_command: Option<usize>,
    /// The commands it applied, in order of arrival.
    pub applied: Vec<AppliedCommand>,
    /// Commands it applied after its removal (must be 0).
    pub applied_after_removal: u64,
    /// Records it accepted more than once (must be 0).
    pub accepted_twice: u64,
    /// Records it accepted that no switch sent (must be 0).
    pub accepted_unknown: u64,
    /// Its state at the end.
    pub final_state: LightState,
    /// What it should show: every command sent while it was a member, applied in order.
    pub expected_state: LightState,
    /// How many commands were sent while it was a member.
    pub expected_applied: u64,
    /// Records dropped, by reason (record-layer reasons, and `invalid_command`).
    pub rejected: BTreeMap<String, u64>,
    /// Epochs it held keys for.
    pub epochs: Vec<u16>,
}

/// A command a light applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppliedCommand {
    /// The record that carried it.
    pub record: RecordId,
    /// The switch's transaction number.
    pub txn: u32,
    /// The command.
    pub command: LightCommand,
}

/// One switch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SwitchSummary {
    /// Name.
    pub name: String,
    /// Device ID.
    pub device_id: u32,
    /// Times it was started (2 after a reboot).
    pub boots: u32,
    /// Every record it sent, in order.
    pub sent: Vec<SentRecord>,
    /// Records whose `(epoch, sid, seq)` it had used before (must be 0).
    pub sequence_reused: u64,
}

/// A record a switch sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    /// The switch's boot it was sent in (1 = first power-on).
    pub boot: u32,
    /// The record.
    pub record: RecordId,
}

/// One command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommandSummary {
    /// The switch's name.
    pub switch: String,
    /// Its transaction number.
    pub txn: u32,
    /// The command.
    pub command: LightCommand,
    /// The record that carried it.
    pub record: RecordId,
    /// The record's size in bytes.
    pub record_len: usize,
    /// The lights that were members when it was sent.
    pub members: Vec<String>,
}

/// One injected record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InjectionSummary {
    /// What the attacker did.
    pub attack: String,
    /// The reason every light holding keys should give.
    pub expected: String,
    /// Per light (running when it was injected): the drop reason, or `accepted`.
    pub verdicts: BTreeMap<String, String>,
    /// Lights that dropped it.
    pub rejected: usize,
    /// Lights that accepted it (must be 0).
    pub accepted: usize,
}

/// A check and its outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// Details when it failed.
    pub detail: String,
}

impl Summary {
    /// The final table, one line per light and switch.
    pub fn table(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.push(format!(
            "{:<9} {:>7} {:>8}  {:<11} {:<20} {}",
            "light", "applied", "final", "epochs", "note", "rejected (by reason)"
        ));
        for l in &self.lights {
            let rejected: Vec<String> =
                l.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let epochs: Vec<String> = l.epochs.iter().map(u16::to_string).collect();
            let note = if l.removed_before_command.is_some() {
                "decommissioned"
            } else if l.joined_before_command > 0 {
                "joined late"
            } else {
                ""
            };
            out.push(format!(
                "{:<9} {:>3} /{:>3} {:>8}  {:<11} {:<20} {}",
                l.name,
                l.applied.len(),
                l.expected_applied,
                l.final_state.to_string().trim_end(),
                epochs.join(","),
                note,
                if rejected.is_empty() {
                    "-".to_owned()
                } else {
                    rejected.join(", ")
                }
            ));
        }
        out.push(
            "(applied: commands applied / commands sent while it was a member; final: its state \
             at the end)"
                .to_owned(),
        );
        out.push(String::new());
        for s in &self.switches {
            let seqs: Vec<String> = s
                .sent
                .iter()
                .map(|x| format!("{}:{}/{}", x.record.epoch, x.record.seq, x.boot))
                .collect();
            out.push(format!(
                "{:<9} sent {} records (epoch:seq/boot {}), boots {}, sequence numbers reused {}",
                s.name,
                s.sent.len(),
                seqs.join(" "),
                s.boots,
                s.sequence_reused
            ));
        }
        out
    }

    /// Writes the summary as JSON.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, format!("{text}\n"))
    }

    /// Reads a summary written by [`write_json`](Self::write_json).
    pub fn read_json(path: &std::path::Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}
