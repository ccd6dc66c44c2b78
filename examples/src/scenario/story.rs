//! The story: the scenes in order, and the two rounds of attacks.

use std::time::Duration;

use crate::attacker::{self};
use crate::command::LightCommand;

use super::{SWITCH_A, SWITCH_B, ScenarioKind, World};

impl World {
    pub(super) fn play(&mut self) -> Result<(), String> {
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

    pub(super) fn attack_round_one(
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

    pub(super) fn attack_round_two(&mut self, first: usize, latest: usize) -> Result<(), String> {
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
