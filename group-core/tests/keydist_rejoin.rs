//! A sender whose sequence store was lost and re-created empty (which looks exactly like a new
//! device's store) rejoins a group that does not rekey on join: it must not be handed back an
//! epoch it may already have sent in under its sender ID, or it would start again at seq 0 and
//! reuse nonces.

mod keydist_support;

use std::collections::HashMap;

use group_core::keydist::{GroupSpec, Role};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::RecordHeader;
use keydist_support::{NetParams, Sim};

const GID: u32 = 12;

#[test]
fn rejoining_sender_with_a_recreated_empty_store_never_reuses_a_nonce() {
    let mut sim = Sim::new(3, NetParams::PERFECT, GID);
    sim.create_group(
        GroupSpec::new(GID, Suite::AES_128_CCM)
            .with_rekey_on_join(false)
            .with_activation_delay_ms(100),
    );
    let switch = sim.add_device(1, Role::Sender);
    let light = sim.add_device(2, Role::Listener);
    for i in [switch, light] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(10_000, "joined", |s| s.converged(&[switch, light]));

    // (epoch, sid, seq) -> payload of every record the switch ever sealed.
    let mut used: HashMap<(u16, u8, u64), Vec<u8>> = HashMap::new();
    let mut seal = |sim: &mut Sim, tag: &str| {
        for k in 0..3 {
            let payload = format!("{tag} {k}").into_bytes();
            let rec = sim.seal(switch, &payload).expect("seal");
            let h = RecordHeader::parse(&rec).unwrap();
            let prev = used.insert((h.epoch.0, h.sender_id.0, h.seq), payload.clone());
            assert!(
                prev.is_none_or(|p| p == payload),
                "nonce (epoch {}, sid {}, seq {}) reused for a different record",
                h.epoch.0,
                h.sender_id.0,
                h.seq
            );
            sim.multicast(switch, &rec);
        }
        sim.run_for(200);
    };
    seal(&mut sim, "before");

    // The switch loses its flash; the installer re-creates the store empty and it rejoins.
    sim.reboot_with_store(switch, MemorySequenceStore::commissioned());
    let now = sim.now();
    sim.nodes[switch].member.join(now).unwrap();
    sim.run_until(10_000, "rejoined", |s| s.converged(&[switch, light]));
    sim.run_for(500);
    seal(&mut sim, "after");
    assert_eq!(used.len(), 6);
}
