//! One step of the story each: start a light or a switch, settle, send a command, inject a
//! datagram, decommission a light, reboot a switch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::command::{LightCommand, LightingMessage};
use crate::display::Presence;
use crate::node::{SwitchHandle, spawn_light, spawn_switch};
use crate::summary::{CommandSummary, InjectionSummary, SentRecord};

use super::{APPLY_LIMIT, SETTLE_LIMIT, VERDICT_LIMIT, World, fmt_hex};

impl World {
    pub(super) fn start_light(&mut self, i: usize) -> Result<(), String> {
        let dev = self.lights[i].dev.clone();
        let h = spawn_light(i, &self.net, &dev, self.tx.clone())?;
        let l = &mut self.lights[i];
        l.handle = Some(h);
        l.joined_before = self.commands.len();
        self.out.line(&dev.name, "powered on, joining");
        Ok(())
    }

    pub(super) fn start_switch(&mut self, i: usize, commission: bool) -> Result<(), String> {
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
    pub(super) fn settle(&mut self) -> Result<u16, String> {
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
    pub(super) fn command(
        &mut self,
        switch: usize,
        command: LightCommand,
    ) -> Result<usize, String> {
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
    pub(super) fn captured(&mut self, index: usize) -> Result<Vec<u8>, String> {
        let id = self.commands[index].record;
        self.attacker
            .captured(id)
            .ok_or_else(|| format!("the attacker did not capture the record {id}"))
    }

    pub(super) fn captured_now(&mut self, index: usize) -> Result<Vec<u8>, String> {
        self.attacker
            .capture(Duration::from_millis(30))
            .map_err(|e| format!("attacker: {e}"))?;
        self.captured(index)
    }

    /// Injects one datagram and waits for every running light's verdict.
    pub(super) fn inject(
        &mut self,
        attack: &str,
        expected: &str,
        datagram: Vec<u8>,
    ) -> Result<(), String> {
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

    pub(super) fn decommission(&mut self, victim: usize) -> Result<(), String> {
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

    pub(super) fn reboot(&mut self, switch: usize) -> Result<(), String> {
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
}
