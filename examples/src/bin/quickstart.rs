//! Quick start: one switch and three lights share a group key, in memory.
//!
//! A key server picks a secret for epoch 1; every member derives the same record keys from it
//! with the native key schedule. The switch (sender ID 1) seals three commands; each light
//! opens every record. Then an attacker replays a captured record and flips one bit of
//! another: every light drops both and says why. Each light's counters are printed at the end.
//!
//! Run: `cargo run -p group-examples --bin quickstart` (exit status 0 when everything
//! happened as described).

use std::process::ExitCode;

use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const GROUP_ID: u32 = 0x00_4c_49_54; // "LIT"
const EPOCH: Epoch = Epoch(1);
const SWITCH: SenderId = SenderId(1);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints a record's parts: header (type, version, epoch, sender ID, seq, length), explicit
/// nonce, and ciphertext with its tag.
fn show(record: &[u8]) {
    let field = |r: std::ops::Range<usize>| hex(&record[r]);
    println!(
        "  type {} ver {} epoch {} sid {} seq {} len {} | explicit nonce {} | ciphertext+tag {}",
        field(0..1),
        field(1..3),
        field(3..5),
        field(5..6),
        field(6..11),
        field(11..13),
        field(13..21),
        field(21..record.len())
    );
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("quickstart: unexpected outcome: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let now = Instant(0);

    // 1. The key server's secret for epoch 1 (fixed here; a key server draws it at random).
    let secret = EpochSecret([0x42; 32]);
    let suite = Suite::AES_128_CCM;
    let keys = native_keys(GROUP_ID, EPOCH, suite, &secret).map_err(|e| e.to_string())?;
    println!("group {GROUP_ID:#x}, epoch {}, suite {suite:?}", EPOCH.0);

    // 2. The switch sends as sender ID 1; the lights only listen.
    let mut switch: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SWITCH));
    switch
        .install_and_activate(EPOCH, &keys, now)
        .map_err(|e| e.to_string())?;
    let mut lights: Vec<(&str, Group)> = ["kitchen", "hall", "porch"]
        .into_iter()
        .map(|name| (name, Group::new(GroupConfig::new(GROUP_ID))))
        .collect();
    for (_, light) in &mut lights {
        light
            .install_and_activate(EPOCH, &keys, now)
            .map_err(|e| e.to_string())?;
    }

    // The switch reserves its sequence numbers in durable storage before it uses them
    // (in memory here; a file or flash page on a device).
    let mut store = MemorySequenceStore::commissioned();

    // 3. Three commands, each sealed once and delivered to every light.
    let mut captured = Vec::new();
    for command in ["on", "dim 40", "off"] {
        let mut buf = [0u8; 128];
        let len = switch
            .seal(now, &mut store, command.as_bytes(), &mut buf)
            .map_err(|e| e.to_string())?;
        let record = &buf[..len];
        println!("\nswitch seals {command:?}: a {len}-byte record");
        show(record);
        for (name, light) in &mut lights {
            let mut copy = record.to_vec();
            let d = light.open(now, &mut copy).map_err(|e| e.to_string())?;
            println!(
                "  {name:8} accepts seq {} from sender {}: {:?}",
                d.seq,
                d.sender_id.0,
                String::from_utf8_lossy(d.plaintext)
            );
            if d.plaintext != command.as_bytes() || d.sender_id != SWITCH {
                return Err(format!("{name} delivered the wrong record"));
            }
        }
        captured.push(record.to_vec());
    }

    // 4. An attacker replays the captured "on" record.
    println!("\nattacker replays the \"on\" record");
    for (name, light) in &mut lights {
        let mut copy = captured[0].clone();
        expect_drop(name, light.open(now, &mut copy).err(), OpenError::Replay)?;
    }

    // 5. An attacker flips one ciphertext bit of a fresh "on" record before the lights see it.
    let mut buf = [0u8; 128];
    let len = switch
        .seal(now, &mut store, b"on", &mut buf)
        .map_err(|e| e.to_string())?;
    let first_ciphertext_byte = switch.payload_offset().map_err(|e| e.to_string())?;
    buf[first_ciphertext_byte] ^= 0x01;
    println!("\nattacker flips one ciphertext bit of a new \"on\" record");
    for (name, light) in &mut lights {
        let mut copy = buf[..len].to_vec();
        let got = light.open(now, &mut copy).err();
        expect_drop(name, got, OpenError::AuthenticationFailed)?;
    }

    // 6. What each light counted.
    println!("\ncounters");
    for (name, light) in &lights {
        let c = light.counters();
        let drops: Vec<String> = c
            .drop_reasons()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        println!(
            "  {name:8} accepted={} dropped={} ({})",
            c.accepted,
            c.dropped(),
            drops.join(", ")
        );
        if c.accepted != 3 || c.replay != 1 || c.authentication_failed != 1 || c.dropped() != 2 {
            return Err(format!("{name} counted {c:?}"));
        }
    }
    println!("  switch   sealed={}", switch.counters().sealed);
    Ok(())
}

fn expect_drop(name: &str, got: Option<OpenError>, want: OpenError) -> Result<(), String> {
    match got {
        Some(e) if e == want => {
            println!("  {name:8} drops it: {e} ({})", e.reason());
            Ok(())
        }
        Some(e) => Err(format!("{name} dropped it as {e}, expected {want}")),
        None => Err(format!("{name} accepted it")),
    }
}
