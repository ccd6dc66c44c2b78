//! Replayed key-distribution messages (issue 10, findings 1 and 7).
//!
//! Finding 1: a join request captured at any time and replayed at any later time (the device
//! joined, rejoined after a reboot, left, or was revoked) never changes the key server's view of
//! that device, never causes a rekey, and never stops the device from receiving later bundles.
//!
//! Finding 7: the bundle that announces a removal lists the removed sender ID as stale.

mod keydist_support;

use group_core::keydist::{GroupSpec, Message, Role, parse};
use group_core::suite::Suite;
use keydist_support::{Kind, NetParams, Sim, To};

const GID: u32 = 21;

fn two_senders(seed: u64) -> (Sim, usize, usize) {
    let mut sim = Sim::new(seed, NetParams::PERFECT, GID);
    sim.create_group(
        GroupSpec::new(GID, Suite::AES_128_CCM)
            .with_activation_delay_ms(200)
            .with_grace_ms(500),
    );
    let a = sim.add_device(1, Role::Sender);
    let b = sim.add_device(2, Role::Sender);
    (sim, a, b)
}

#[test]
fn the_bundle_announcing_a_removal_lists_the_removed_sender_id_as_stale() {
    let (mut sim, a, b) = two_senders(3);
    let c = sim.add_device(3, Role::Sender);
    for i in [a, b, c] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(10_000, "joined", |s| s.converged(&[a, b, c]));
    let sid_of = |sim: &Sim, i: usize| {
        sim.nodes[i]
            .member
            .group()
            .unwrap()
            .config()
            .own_sender_id
            .unwrap()
            .0
    };
    let (sid_b, sid_c) = (sid_of(&sim, b), sid_of(&sim, c));

    // Checks the first bundle to A after a removal: its epoch is new and `stale` has `sid`.
    let check_removal = |sim: &mut Sim, sid: u8, epoch_before: u16| {
        let a_id = sim.nodes[a].id;
        let end = sim.now + 5_000;
        let mut seen = sim.packet_seq;
        loop {
            assert!(sim.now < end, "no bundle to A after the removal");
            sim.step(10);
            let bundle = sim
                .inflight
                .iter()
                .filter(|p| p.seq > seen && p.to == To::Device(a_id) && p.kind == Kind::Kd)
                .find_map(|p| match parse(&p.bytes).ok()?.message {
                    Message::KeyBundle(k) => Some(k),
                    _ => None,
                });
            seen = sim.packet_seq;
            if let Some(k) = bundle {
                assert!(k.epoch > epoch_before, "the removal bundle has a new epoch");
                assert!(
                    k.stale.contains(&sid),
                    "the bundle announcing the removal of sid {sid} lists stale {:?}",
                    k.stale
                );
                return;
            }
        }
    };

    // A leave.
    let e = sim.server().latest_epoch(GID).unwrap();
    let now = sim.now();
    sim.nodes[b].member.leave(now).unwrap();
    check_removal(&mut sim, sid_b, e);
    sim.run_until(10_000, "b out", |s| s.converged(&[a, c]));

    // A revocation.
    let e = sim.server().latest_epoch(GID).unwrap();
    let c_id = sim.nodes[c].id;
    sim.revoke(c_id);
    check_removal(&mut sim, sid_c, e);
    sim.run_until(10_000, "c out", |s| s.converged(&[a]));
}
