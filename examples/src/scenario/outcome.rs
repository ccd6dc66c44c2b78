//! The summary of a run and its checks, and how it is printed.

use crate::summary::{Check, LightSummary, Summary, SwitchSummary};

use super::{ScenarioKind, World};

impl World {
    pub(super) fn summary(&self, error: Option<String>) -> Summary {
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

    pub(super) fn print_summary(&mut self, s: &Summary) {
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
