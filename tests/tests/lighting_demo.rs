//! The lighting demo end to end, in process: a key server, two switches and eight lights (plus
//! one late joiner) on real multicast sockets; the attacker's records; a decommissioned light;
//! a switch reboot. The assertions recompute what every light should show from the commands
//! the switches sent and compare it with what the light threads reported, and check that no
//! injected record, and no record twice, was ever accepted.
//!
//! IPv4 runs on loopback (TTL 1). The IPv6 run happens inside a network namespace this test
//! creates (`unshare -n` plus a veth pair); it is skipped, with the reason printed, only where
//! namespaces can't be created.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use group_examples::command::LightState;
use group_examples::netns;
use group_examples::node::RecordId;
use group_examples::scenario::{Options, ScenarioKind, run};
use group_examples::summary::{SentRecord, Summary};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn json_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "dtls-group-lighting-test-{}-{tag}.json",
        std::process::id()
    ))
}

/// Runs the demo, writes and re-reads its JSON summary, and checks it; returns it.
fn run_and_check(opts: &Options, tag: &str) -> Summary {
    let out = Captured::default();
    let started = std::time::Instant::now();
    let summary = run(opts, Box::new(out.clone())).expect("setup");
    let elapsed = started.elapsed();
    let path = json_path(tag);
    summary.write_json(&path).unwrap();
    let summary = Summary::read_json(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = out.text();
    if let Err(e) = std::panic::catch_unwind(|| check(&summary, opts)) {
        eprintln!("demo output:\n{text}");
        std::panic::resume_unwind(e);
    }
    assert!(elapsed.as_secs() < 30, "the demo took {elapsed:?}\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    summary
}

fn check(s: &Summary, opts: &Options) {
    let full = opts.scenario == ScenarioKind::Full;
    assert!(s.ok, "the demo's own checks: {:?}", s.checks);
    assert_eq!(s.signed, opts.signed);
    assert_eq!(s.lights.len(), opts.lights + usize::from(full));
    let sent: HashSet<RecordId> = s.commands.iter().map(|c| c.record).collect();
    assert_eq!(sent.len(), s.commands.len(), "two commands in one record");

    // Every light applied exactly the commands sent while it was a member, in order, and
    // shows the state they give.
    for l in &s.lights {
        let mine: Vec<_> = s
            .commands
            .iter()
            .filter(|c| c.members.contains(&l.name))
            .collect();
        let want = mine
            .iter()
            .fold(LightState::default(), |st, c| st.apply(c.command));
        assert_eq!(l.final_state, want, "{}: final state", l.name);
        let got: Vec<RecordId> = l.applied.iter().map(|a| a.record).collect();
        let expected: Vec<RecordId> = mine.iter().map(|c| c.record).collect();
        assert_eq!(got, expected, "{}: applied records", l.name);
        for (a, c) in l.applied.iter().zip(&mine) {
            assert_eq!((a.command, a.txn), (c.command, c.txn), "{}", l.name);
        }
        // No record accepted twice, and nothing that no switch sent.
        let unique: HashSet<RecordId> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "{}: a record accepted twice",
            l.name
        );
        assert!(
            unique.is_subset(&sent),
            "{}: accepted a foreign record",
            l.name
        );
        assert_eq!((l.accepted_twice, l.accepted_unknown), (0, 0), "{}", l.name);
        // Members followed the rekey that shut the decommissioned light out.
        let min_epochs = if l.removed_before_command.is_some() {
            1
        } else {
            2
        };
        assert!(
            l.epochs.len() >= min_epochs,
            "{}: epochs {:?}",
            l.name,
            l.epochs
        );
    }

    // Exactly one light was decommissioned; it applied nothing sent after that, and it did get
    // (and drop) the later commands.
    let removed: Vec<_> = s
        .lights
        .iter()
        .filter(|l| l.removed_before_command.is_some())
        .collect();
    assert_eq!(removed.len(), 1);
    let gone = removed[0];
    let cut = gone.removed_before_command.unwrap();
    let later: Vec<RecordId> = s.commands[cut..].iter().map(|c| c.record).collect();
    assert!(!later.is_empty(), "no command after the removal");
    assert!(
        gone.applied.iter().all(|a| !later.contains(&a.record)),
        "{} applied a command after its removal",
        gone.name
    );
    assert_eq!(gone.applied.len(), cut);
    assert_eq!(gone.applied_after_removal, 0);
    assert!(
        // No key for them: the new epoch's (unknown_epoch), or none at all once the removal
        // notice dropped its keys (not_joined).
        ["unknown_epoch", "not_joined"]
            .iter()
            .map(|r| gone.rejected.get(*r).copied().unwrap_or(0))
            .sum::<u64>()
            >= later.len() as u64,
        "{}: {:?}",
        gone.name,
        gone.rejected
    );
    // Every light there from the start applied those later commands.
    for l in s
        .lights
        .iter()
        .filter(|l| l.removed_before_command.is_none() && l.joined_before_command == 0)
    {
        let got: HashSet<RecordId> = l.applied.iter().map(|a| a.record).collect();
        assert!(later.iter().all(|r| got.contains(r)), "{}", l.name);
    }

    // Every injected record was dropped by every light running at that moment, for the
    // expected reason by every light that held keys.
    assert!(s.injections.len() >= if full { 10 } else { 3 });
    for i in &s.injections {
        assert_eq!(i.accepted, 0, "{}: {:?}", i.attack, i.verdicts);
        assert!(
            i.verdicts.len() >= opts.lights,
            "{}: {:?}",
            i.attack,
            i.verdicts
        );
        assert_eq!(
            i.rejected,
            i.verdicts.len(),
            "{}: {:?}",
            i.attack,
            i.verdicts
        );
        for (light, v) in &i.verdicts {
            assert_ne!(v, "accepted", "{light} accepted: {}", i.attack);
            assert_ne!(v, "no verdict", "{light} never saw: {}", i.attack);
            if *light != gone.name {
                assert_eq!(v, &i.expected, "{light}: {}", i.attack);
            }
        }
    }
    let reasons: HashSet<&str> = s.injections.iter().map(|i| i.expected.as_str()).collect();
    assert!(reasons.contains("replay") && reasons.contains("authentication_failed"));

    // No switch used a (epoch, sid, seq) twice, reboot included.
    for sw in &s.switches {
        let ids: HashSet<RecordId> = sw.sent.iter().map(|x| x.record).collect();
        assert_eq!(
            ids.len(),
            sw.sent.len(),
            "{} reused a sequence number",
            sw.name
        );
        assert_eq!(sw.sequence_reused, 0);
    }
    if full {
        // The late joiner got none of the commands sent before it joined.
        let late = s.lights.last().unwrap();
        assert!(late.joined_before_command > 0);
        assert!(!late.applied.is_empty());
        let before: Vec<RecordId> = s.commands[..late.joined_before_command]
            .iter()
            .map(|c| c.record)
            .collect();
        assert!(late.applied.iter().all(|a| !before.contains(&a.record)));
        // Switch A rebooted and sent again, in an (epoch, sid) under which it never reached a
        // number it had used before.
        let a = &s.switches[0];
        assert_eq!(a.boots, 2);
        let (first, second): (Vec<&SentRecord>, Vec<&SentRecord>) =
            a.sent.iter().partition(|x| x.boot == 1);
        assert!(!first.is_empty() && !second.is_empty());
        for r in second.iter().map(|x| x.record) {
            assert!(
                first
                    .iter()
                    .map(|x| x.record)
                    .all(|f| (f.epoch, f.sid) != (r.epoch, r.sid) || f.seq < r.seq),
                "{r} after the reboot"
            );
        }
        assert!(reasons.contains("nonce_mismatch") && reasons.contains("unknown_epoch"));
        assert!(reasons.contains("malformed"));
    }
}

#[test]
fn full_scenario_on_ipv4_loopback() {
    run_and_check(&Options::default(), "full");
}

#[test]
fn short_scenario_with_signed_records() {
    let s = run_and_check(
        &Options {
            scenario: ScenarioKind::Short,
            signed: true,
            lights: 4,
            ..Options::default()
        },
        "signed",
    );
    // Records carry a 64-byte signature.
    assert!(
        s.commands.iter().all(|c| c.record_len > 100),
        "{:?}",
        s.commands
    );
}

const IPV6_SUMMARY: &str = "DTLS_GROUP_TEST_LIGHTING_V6_SUMMARY";

#[test]
fn short_scenario_on_ipv6_in_a_private_namespace() {
    if let Some(ifindex) = netns::inside() {
        let opts = Options {
            scenario: ScenarioKind::Short,
            ipv6_ifindex: Some(ifindex),
            ..Options::default()
        };
        let s = run_and_check(&opts, "v6");
        assert_eq!(s.family, "ipv6");
        s.write_json(&PathBuf::from(std::env::var(IPV6_SUMMARY).unwrap()))
            .unwrap();
        return;
    }
    if let Err(reason) = netns::probe() {
        println!("SKIPPED: can't create a network namespace: {reason}");
        return;
    }
    let path = json_path("v6-outer");
    let _ = std::fs::remove_file(&path);
    let exe = std::env::current_exe().unwrap();
    let args: Vec<std::ffi::OsString> = [
        "--exact",
        "short_scenario_on_ipv6_in_a_private_namespace",
        "--nocapture",
        "--test-threads=1",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let outcome = netns::run_with_env(&exe, &args, &[(IPV6_SUMMARY, path.as_os_str())]);
    match outcome {
        netns::Outcome::Unavailable(reason) => {
            println!("SKIPPED: can't create a network namespace: {reason}");
        }
        netns::Outcome::Ran(status) => {
            assert!(status.success(), "inside the namespace: {status}");
            // The run inside really happened and passed.
            let s = Summary::read_json(&path).expect("summary from inside the namespace");
            std::fs::remove_file(&path).unwrap();
            assert!(s.ok);
            assert_eq!(s.family, "ipv6");
        }
    }
}
