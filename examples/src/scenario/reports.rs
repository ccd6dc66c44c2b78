//! What the nodes report, absorbed into the world; waiting for it, bounded; stopping.

use std::time::{Duration, Instant};

use crate::display::Presence;
use crate::node::{self, NodeId, Report};
use crate::summary::AppliedCommand;

use super::World;

impl World {
    pub(super) fn wait(
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

    pub(super) fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump(end.saturating_duration_since(Instant::now()));
        }
    }

    pub(super) fn pump(&mut self, limit: Duration) {
        match node::recv(&self.rx, limit.min(Duration::from_millis(15))) {
            Some((node, report)) => self.absorb(node, report),
            None => self.out.flush_row(),
        }
    }

    pub(super) fn absorb(&mut self, node: NodeId, report: Report) {
        match node {
            NodeId::Light(i) => self.absorb_light(i, report),
            NodeId::Switch(i) => self.absorb_switch(i, report),
        }
    }

    pub(super) fn absorb_light(&mut self, i: usize, report: Report) {
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
                l.count_accepted(record, &self.sent_ids);
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
                l.count_accepted(record, &self.sent_ids);
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

    pub(super) fn absorb_switch(&mut self, i: usize, report: Report) {
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

    pub(super) fn stop_all(&mut self) {
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
}
