//! One key server and five members over a lossy, reordering, duplicating in-memory network
//! with a virtual clock and a seeded RNG: joins, steady traffic, a removal, a late joiner, lost
//! bundles recovered by retransmission, a key-server crash and restart, and a member that lost
//! its sequence store. Every bundle the server emits is decrypted by a tap that checks no epoch
//! is handed out with two secrets and no (epoch, sender ID) goes to two devices.

mod keydist_support;

use group_core::keydist::{GroupSpec, MemberState, RemovedReason, Role};
use group_core::record::OpenError;
use group_core::suite::Suite;
use group_core::wire::Epoch;
use keydist_support::{NetParams, Sim};

const GID: u32 = 0x00C0_FFEE;
const GRACE: u32 = 5_000;

fn lossy() -> NetParams {
    NetParams {
        loss: 0.2,
        dup: 0.05,
        min_delay: 5,
        max_delay: 120,
    }
}

/// Sends `rounds` records from each of `senders` over the lossy network, then lets them
/// arrive. Returns the payloads sent.
fn traffic(sim: &mut Sim, senders: &[usize], rounds: usize, tag: &str) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for r in 0..rounds {
        for &i in senders {
            let payload = format!("{tag} from {i} #{r}").into_bytes();
            let rec = sim.seal(i, &payload).expect("seal");
            sim.multicast(i, &rec);
            sent.push(payload);
        }
        sim.run_for(50);
    }
    sim.run_for(500);
    sent
}

#[test]
fn story_of_a_group() {
    let mut sim = Sim::new(7, lossy(), GID);
    sim.create_group(
        GroupSpec::new(GID, Suite::AES_128_CCM)
            .with_activation_delay_ms(1_500)
            .with_grace_ms(GRACE),
    );
    let a = sim.add_device(1, Role::Sender);
    let b = sim.add_device(2, Role::Sender);
    let c = sim.add_device(3, Role::Sender);
    let d = sim.add_device(4, Role::Listener);
    let late = sim.add_device(5, Role::Sender);

    // 1. Four devices join over a network that loses a fifth of all datagrams.
    for i in [a, b, c, d] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(60_000, "joined", |s| s.converged(&[a, b, c, d]));
    let e1 = sim.current_epoch();
    let sids: Vec<_> = [a, b, c]
        .iter()
        .map(|&i| {
            sim.nodes[i]
                .member
                .group()
                .unwrap()
                .config()
                .own_sender_id
                .unwrap()
        })
        .collect();
    assert!(sids[0] != sids[1] && sids[1] != sids[2] && sids[0] != sids[2]);
    assert_eq!(
        sim.nodes[d].member.group().unwrap().config().own_sender_id,
        None
    );

    // 2. Steady traffic: whatever arrives is exactly what was sent, each record at most once.
    let sent = traffic(&mut sim, &[a, b, c], 10, "steady");
    for i in [a, b, c, d] {
        let n = &sim.nodes[i];
        assert!(
            n.delivered.len() >= 10,
            "node {i} got {} records",
            n.delivered.len()
        );
        let mut seen = std::collections::HashSet::new();
        for (epoch, sid, seq, payload) in &n.delivered {
            assert_eq!(*epoch, e1);
            assert!(sent.contains(payload));
            assert!(seen.insert((*sid, *seq)), "delivered twice");
        }
        // The network duplicated some records: they were dropped as replays.
        assert!(n.refused.iter().all(|e| *e == OpenError::Replay));
    }

    // 3. Device 3 is revoked. It keeps its keys (it never hears the notice): a removed member
    //    that wants to cheat.
    let spy = c;
    sim.nodes[spy].hears_kd = false;
    let spy_before = sim.seal(spy, b"spy before").unwrap();
    assert_eq!(sim.open(a, &spy_before).unwrap(), b"spy before");
    let now = sim.now();
    {
        let (server, rng) = (sim.server.as_mut().unwrap(), &mut sim.rng);
        server
            .revoke_device(group_core::keydist::DeviceId(3), now, rng)
            .unwrap();
    }
    sim.run_until(60_000, "rekeyed after revocation", |s| {
        s.converged(&[a, b, d])
    });
    let e2 = sim.current_epoch();
    assert!(e2 > e1);
    // It can't open anything of the new epoch.
    let after = sim.seal(a, b"after the revocation").unwrap();
    assert_eq!(
        sim.open(spy, &after),
        Err(OpenError::UnknownEpoch(Epoch(e2)))
    );
    assert_eq!(sim.open(b, &after).unwrap(), b"after the revocation");
    // Its records in the old epoch are refused at once (its sid was removed) ...
    let spy_during = sim.seal(spy, b"spy during grace").unwrap();
    for i in [a, b, d] {
        assert!(matches!(
            sim.open(i, &spy_during),
            Err(OpenError::UnknownSender(_))
        ));
    }
    // ... and, after the grace period, the old epoch is gone altogether.
    sim.run_for(u64::from(GRACE) + 500);
    let spy_after = sim.seal(spy, b"spy after grace").unwrap();
    for i in [a, b, d] {
        assert_eq!(
            sim.open(i, &spy_after),
            Err(OpenError::UnknownEpoch(Epoch(e1)))
        );
    }

    // 4. A late joiner can't read what was sent before it joined.
    let before_join: Vec<Vec<u8>> = (0..3)
        .map(|k| sim.seal(b, format!("before join {k}").as_bytes()).unwrap())
        .collect();
    let now = sim.now();
    sim.nodes[late].member.join(now).unwrap();
    sim.run_until(60_000, "late joiner in", |s| s.converged(&[a, b, d, late]));
    let e3 = sim.current_epoch();
    assert!(e3 > e2, "a joiner gets a fresh epoch");
    for rec in &before_join {
        assert_eq!(sim.open(late, rec), Err(OpenError::UnknownEpoch(Epoch(e2))));
    }
    let hello = sim.seal(late, b"hello from the late joiner").unwrap();
    for i in [a, b, d] {
        assert_eq!(sim.open(i, &hello).unwrap(), b"hello from the late joiner");
    }
    let reply = sim.seal(a, b"welcome").unwrap();
    assert_eq!(sim.open(late, &reply).unwrap(), b"welcome");

    // 5. Device 2 is cut off while a rekey happens; retransmission catches it up afterwards.
    let id_b = sim.nodes[b].id;
    sim.cut.insert(id_b);
    let now = sim.now();
    sim.nodes[a].member.request_rekey(now).unwrap();
    sim.run_until(60_000, "rekeyed without device 2", |s| {
        s.converged(&[a, d, late]) && s.current_epoch() > e3
    });
    let e4 = sim.current_epoch();
    assert_eq!(
        sim.nodes[b].member.group().unwrap().current_epoch(),
        Some(Epoch(e3))
    );
    assert!(sim.server.as_ref().unwrap().is_pending(id_b, GID));
    sim.cut.remove(&id_b);
    sim.run_until(120_000, "device 2 caught up", |s| {
        s.converged(&[a, b, d, late])
    });
    assert_eq!(sim.current_epoch(), e4);
    assert!(
        sim.tap.bundles_to(id_b, e4) >= 2,
        "the bundle was retransmitted"
    );
    let x = sim.seal(b, b"back").unwrap();
    assert_eq!(sim.open(late, &x).unwrap(), b"back");

    // 6. The key server loses power in the middle of a rekey and restarts from its store.
    sim.crash_server_after(1);
    let now = sim.now();
    sim.nodes[late].member.request_rekey(now).unwrap();
    sim.run_until(120_000, "converged after the crash", |s| {
        s.converged(&[a, b, d, late]) && s.crashes == 1 && s.current_epoch() > e4
    });
    let e5 = sim.current_epoch();
    traffic(&mut sim, &[a, b, late], 3, "after crash");
    for i in [a, b, d, late] {
        assert!(sim.nodes[i].delivered.iter().any(|(e, ..)| *e == e5));
    }

    // 7. Device 1 reboots and finds its sequence store erased: it must not send under any key
    //    it held; its join request says so and the key server gives it a fresh epoch.
    let before = sim.seal(a, b"before reboot").unwrap();
    sim.reboot(a, true);
    let now = sim.now();
    sim.nodes[a].member.join(now).unwrap();
    sim.run_until(60_000, "recovered", |s| {
        s.converged(&[a, b, d, late]) && s.current_epoch() > e5
    });
    let e6 = sim.current_epoch();
    let rec = sim.seal(a, b"recovered").unwrap();
    assert_eq!(sim.open(b, &rec).unwrap(), b"recovered");
    assert_eq!(
        sim.nodes[a].member.group().unwrap().next_send_seq(),
        Some((Epoch(e6), 1)),
        "sending restarted at 0 in the fresh epoch"
    );
    // Its old epoch is not the one it sends in now: no (key, nonce) pair can repeat.
    assert_ne!(before[3..5], rec[3..5]);

    // 8. Device 4 leaves; the others are rekeyed, and it gets a confirmation.
    let now = sim.now();
    sim.nodes[d].member.leave(now).unwrap();
    sim.run_until(60_000, "rekeyed after the leave", |s| {
        s.converged(&[a, b, late]) && s.current_epoch() > e6
    });
    sim.run_until(60_000, "leave confirmed", |s| {
        s.nodes[d].member.state() == MemberState::Removed(RemovedReason::Left)
    });

    // The tap saw every bundle: no epoch with two secrets, no (epoch, sid) for two devices,
    // counters strictly increasing.
    assert!(sim.tap.violations.is_empty(), "{:?}", sim.tap.violations);
    let epochs: Vec<u16> = {
        let mut v: Vec<u16> = sim.tap.secrets.keys().map(|(_, e)| *e).collect();
        v.sort();
        v
    };
    assert!(epochs.windows(2).all(|w| w[0] < w[1]));
    for (t, e) in &sim.server_events {
        if !matches!(e, group_core::keydist::ServerEvent::Acked { .. }) {
            eprintln!("{t:>8} {e:?}");
        }
    }
    eprintln!(
        "story: epochs {epochs:?}, {} bundles, {} notices, server errors {:?}, crashes {}",
        sim.tap.counters.len(),
        sim.tap.removed_notices,
        sim.server_errors.len(),
        sim.crashes
    );
}

/// A group on the wolfSSL key schedule (feature `wolfssl-schedule`, a default): members derive
/// their record keys with the TLS 1.2 PRF from the bundle's pre-master secret and randoms, and
/// a record one seals opens at the other. (Without the feature a member refuses such a bundle:
/// `footprint/tests/transcripts.rs`, whose build leaves the feature out.)
#[test]
fn members_join_a_wolfssl_schedule_group() {
    use group_core::keydist::KeySchedule;
    let mut sim = Sim::new(11, NetParams::PERFECT, GID);
    sim.create_group(GroupSpec::new(GID, Suite::AES_128_CCM_8).with_schedule(KeySchedule::WolfSsl));
    let a = sim.add_device(1, Role::Sender);
    let b = sim.add_device(2, Role::Listener);
    for i in [a, b] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(10_000, "joined", |s| s.converged(&[a, b]));
    let rec = sim.seal(a, b"wolf").expect("seal");
    assert_eq!(sim.open(b, &rec).expect("open"), b"wolf");
}
