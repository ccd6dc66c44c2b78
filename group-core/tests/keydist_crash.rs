//! The key server loses power at every point of a scripted run: right after each save to its
//! store (whatever the call that made the save would have emitted is lost) and right after each
//! message it emits (before the next save). After each crash it restarts from the store; the run must still converge, and over every bundle emitted
//! before and after the crash no epoch carries two secrets, no (epoch, sender ID) goes to two
//! devices, and server counters strictly increase.

mod keydist_support;

use group_core::keydist::{DeviceId, GroupSpec, Role};
use group_core::suite::Suite;
use keydist_support::{NetParams, Sim};

const GID: u32 = 77;

struct Outcome {
    saves: u64,
    points: u64,
    crashes: usize,
    epochs: Vec<u16>,
    bundles: usize,
    challenges: usize,
}

/// The script. `crash_at` counts durable events (saves and emissions) after the setup.
fn run(psk: bool, crash_at: Option<u64>) -> Outcome {
    let mut sim = Sim::new(3, NetParams::PERFECT, GID);
    sim.psk_mode = psk;
    sim.create_group(
        GroupSpec::new(GID, Suite::AES_128_CCM_8)
            .with_activation_delay_ms(300)
            .with_grace_ms(1_000)
            .with_rotation_interval_ms(20_000),
    );
    let n1 = sim.add_device(1, Role::Sender);
    let n2 = sim.add_device(2, Role::Sender);
    let n3 = sim.add_device(3, Role::Sender);
    let n4 = sim.add_device(4, Role::Listener);
    let n5 = sim.add_device(5, Role::Sender);
    let setup = sim.server.as_ref().unwrap().store().saves();
    sim.events = 0;
    sim.crash_at = crash_at;

    let join = |sim: &mut Sim, i: usize| {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    };
    for i in [n1, n2, n3, n4] {
        join(&mut sim, i);
    }
    sim.run_until(120_000, "joined", |s| s.converged(&[n1, n2, n3, n4]));
    let now = sim.now();
    sim.nodes[n2].member.leave(now).unwrap();
    sim.run_until(120_000, "left", |s| {
        s.converged(&[n1, n3, n4])
            && s.server
                .as_ref()
                .unwrap()
                .membership(DeviceId(2), GID)
                .is_none()
    });
    join(&mut sim, n5);
    sim.run_until(120_000, "5 joined", |s| s.converged(&[n1, n3, n4, n5]));
    let e = sim.current_epoch();
    let now = sim.now();
    sim.nodes[n1].member.request_rekey(now).unwrap();
    sim.run_until(120_000, "rekeyed", |s| {
        s.converged(&[n1, n3, n4, n5]) && s.current_epoch() > e
    });
    let e = sim.current_epoch();
    sim.reboot(n3, true);
    join(&mut sim, n3);
    sim.run_until(120_000, "3 recovered", |s| {
        s.converged(&[n1, n3, n4, n5]) && s.current_epoch() > e
    });
    join(&mut sim, n2);
    sim.run_until(120_000, "2 rejoined", |s| {
        s.converged(&[n1, n2, n3, n4, n5])
    });
    sim.revoke(DeviceId(4));
    sim.run_until(120_000, "4 revoked", |s| {
        s.converged(&[n1, n2, n3, n5])
            && s.server
                .as_ref()
                .unwrap()
                .membership(DeviceId(4), GID)
                .is_none()
    });
    let e = sim.current_epoch();
    sim.run_until(60_000, "rotated", |s| {
        s.converged(&[n1, n2, n3, n5]) && s.current_epoch() > e
    });
    // Traffic works in the end.
    let rec = sim.seal(n5, b"still fine").unwrap();
    for i in [n1, n2, n3] {
        assert_eq!(sim.open(i, &rec).unwrap(), b"still fine");
    }
    assert!(
        sim.tap.violations.is_empty(),
        "crash at {crash_at:?}: {:?}",
        sim.tap.violations
    );
    let mut epochs: Vec<u16> = sim.tap.secrets.keys().map(|(_, e)| *e).collect();
    epochs.sort();
    Outcome {
        saves: sim.server.as_ref().unwrap().store().saves() - setup,
        points: sim.events,
        crashes: sim.crashes,
        epochs,
        bundles: sim.tap.counters.len(),
        challenges: sim.tap.challenges,
    }
}

fn crash_at(psk: bool, step: usize) {
    let clean = run(psk, None);
    assert_eq!(clean.crashes, 0);
    // Emissions: bundles and notices (with counters) and join challenges.
    assert_eq!(
        clean.points,
        clean.saves + clean.bundles as u64 + clean.challenges as u64
    );
    let points: Vec<u64> = (1..=clean.points).step_by(step).collect();
    for &k in &points {
        let o = run(psk, Some(k));
        assert_eq!(o.crashes, 1, "crash point {k} not reached");
    }
    eprintln!(
        "{}: clean run {} saves, {} server messages, epochs {:?}; crashed and recovered at {} of {} points",
        if psk { "psk" } else { "signed" },
        clean.saves,
        clean.bundles,
        clean.epochs,
        points.len(),
        clean.points
    );
}

/// Every crash point, with PSK devices (the key server's logic is the same in both modes; PSK
/// keeps the debug-build run short).
#[cfg(feature = "psk")]
#[test]
fn crash_after_every_save_and_emission_psk() {
    crash_at(true, 1);
}

/// Every crash point, with signed devices (the workspace optimises the P-256 crates in debug
/// builds, which keeps this short).
#[test]
fn crash_after_every_save_and_emission_signed() {
    crash_at(false, 1);
}
