//! Join storms (feature `psk`, for speed: the key server's scheduling is the same in both
//! modes). When many senders join at once (a building powering up), every join changes the
//! group's sender list; with [`KeyServer::set_join_update_delay_ms`] the members' updates are
//! shared by the joins of one delay instead of one bundle per member per join, and no member
//! waits longer than the delay for the newest list.
#![cfg(feature = "psk")]

mod keydist_support;

use group_core::keydist::{GroupSpec, KeyServer, MemoryServerStore, Role};
use group_core::suite::Suite;
use keydist_support::{NetParams, Sim};

const GID: u32 = 9;
/// Senders joining in the storm (with the stable sender, within the members' 16 senders).
const STORM: u32 = 12;

/// Bundles the listener (device 2) received, in all.
fn bundles_to_listener(sim: &Sim) -> usize {
    sim.tap
        .bundles
        .iter()
        .filter(|((d, _), _)| *d == 2)
        .map(|(_, n)| *n)
        .sum()
}

/// A stable sender (1) and listener (2) join; then `STORM` senders join, `spacing_ms` apart.
/// Returns the bundles the listener received while the first half of the storm joined, and
/// during the whole storm until every member acknowledged the final list.
fn storm(delay_ms: u64, spacing_ms: u64, rekey_on_join: bool) -> (usize, usize) {
    let mut sim = Sim::new(3, NetParams::PERFECT, GID);
    sim.psk_mode = true;
    sim.create_group(
        GroupSpec::new(GID, Suite::AES_128_CCM)
            .with_activation_delay_ms(500)
            .with_rekey_on_join(rekey_on_join),
    );
    let server: &mut KeyServer<MemoryServerStore> = sim.server();
    server.set_join_update_delay_ms(delay_ms);
    let stable = [
        sim.add_device(1, Role::Sender),
        sim.add_device(2, Role::Listener),
    ];
    for &i in &stable {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(10_000, "stable members joined", |s| s.converged(&stable));
    let before = bundles_to_listener(&sim);
    let joiners: Vec<usize> = (0..STORM)
        .map(|k| sim.add_device(10 + k, Role::Sender))
        .collect();
    let mut first_half = 0;
    for (k, &i) in joiners.iter().enumerate() {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
        sim.run_for(spacing_ms);
        if k + 1 == joiners.len() / 2 {
            first_half = bundles_to_listener(&sim) - before;
        }
    }
    let all: Vec<usize> = stable.iter().chain(&joiners).copied().collect();
    // Converged: every member holds the current epoch and has acknowledged the group's
    // present content, so the newest sender list.
    sim.run_until(30_000, "storm joined", |s| s.converged(&all));
    assert!(sim.tap.violations.is_empty(), "{:?}", sim.tap.violations);
    (first_half, bundles_to_listener(&sim) - before)
}

#[test]
fn a_join_storm_shares_the_members_updates() {
    // Twelve senders joining 20 ms apart (each join handled, and the server polled, before
    // the next arrives, as in the daemon), rekey on join (the default): one bundle for the
    // listener per join without a delay, a handful with one.
    let (_, undelayed) = storm(0, 20, true);
    let (_, delayed) = storm(250, 20, true);
    println!(
        "storm of {STORM} joins: {undelayed} bundles to a listener without delay, {delayed} with 250 ms"
    );
    assert!(
        undelayed >= STORM as usize,
        "{undelayed} bundles without delay"
    );
    assert!(delayed <= 3, "{delayed} bundles with a 250 ms delay");
}

#[test]
fn a_long_join_storm_starves_no_member() {
    // Joins 100 ms apart for 1.2 s, no rekey on join (no epoch is created, so only the
    // delayed updates reach the listener): the listener is updated during the storm, about
    // once per delay, not only after it (a member's due time is never pushed later).
    let (first_half, total) = storm(250, 100, false);
    println!(
        "joins 100 ms apart: {first_half} bundles to the listener in the first 600 ms, {total} in all"
    );
    assert!(
        first_half >= 2,
        "{first_half} updates in the storm's first 600 ms"
    );
    assert!(total <= 8, "{total} updates for {STORM} joins over 1.2 s");
}
