//! Membership churn until sender IDs are reused (feature `psk`, for speed: the key server's
//! logic is the same in both modes). Over 300 join/leave cycles: every (epoch, sid) goes to one
//! device only, a reused sid's previous holder's records are refused by the stable members, and
//! its new holder's records are accepted.
#![cfg(feature = "psk")]

mod keydist_support;

use std::collections::HashMap;

use group_core::keydist::{DeviceId, GroupSpec, Role};
use group_core::record::OpenError;
use group_core::suite::Suite;
use keydist_support::{NetParams, Sim};

const GID: u32 = 3;

#[test]
fn sender_ids_are_reused_only_safely() {
    let mut sim = Sim::new(5, NetParams::PERFECT, GID);
    sim.psk_mode = true;
    sim.create_group(
        GroupSpec::new(GID, Suite::AES_128_CCM)
            .with_activation_delay_ms(50)
            .with_grace_ms(100),
    );
    let stable = [
        sim.add_device(1, Role::Sender),
        sim.add_device(2, Role::Listener),
    ];
    let churn: Vec<usize> = (10..14)
        .map(|id| sim.add_device(id, Role::Sender))
        .collect();
    for &i in &stable {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(10_000, "joined", |s| s.converged(&stable));

    // sid -> (device, a record it sent)
    let mut last_holder: HashMap<u8, (DeviceId, Vec<u8>)> = HashMap::new();
    let mut reused = 0;
    for cycle in 0..300 {
        let i = churn[cycle % churn.len()];
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
        let mut all = stable.to_vec();
        all.push(i);
        sim.run_until(10_000, "churner in", |s| s.converged(&all));
        let sid = sim.nodes[i]
            .member
            .group()
            .unwrap()
            .config()
            .own_sender_id
            .unwrap()
            .0;
        let rec = sim.seal(i, format!("cycle {cycle}").as_bytes()).unwrap();
        assert_eq!(
            sim.open(stable[1], &rec).unwrap(),
            format!("cycle {cycle}").as_bytes()
        );
        if let Some((prev, old)) = last_holder.insert(sid, (sim.nodes[i].id, rec)) {
            reused += 1;
            // The previous holder's record under the same sid is refused (its epochs are gone).
            assert!(
                matches!(sim.open(stable[1], &old), Err(OpenError::UnknownEpoch(_))),
                "record of {prev:?} under reused sid {sid} accepted"
            );
        }
        let now = sim.now();
        sim.nodes[i].member.leave(now).unwrap();
        sim.run_until(10_000, "churner out", |s| {
            s.converged(&stable)
                && s.server
                    .as_ref()
                    .unwrap()
                    .membership(s.nodes[i].id, GID)
                    .is_none()
        });
        sim.run_for(200);
    }
    assert!(reused >= 40, "only {reused} sids were reused");
    assert!(sim.tap.violations.is_empty(), "{:?}", sim.tap.violations);
    eprintln!(
        "churn: {} epochs, {reused} sid reuses, {} server messages",
        sim.current_epoch(),
        sim.tap.counters.len()
    );
}
