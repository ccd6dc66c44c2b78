//! Replayed key-distribution messages (issue 10, findings 1 and 7).
//!
//! Finding 1: a join request captured at any time and replayed at any later time (the device
//! joined, rejoined after a reboot, left, or was revoked) never changes the key server's view of
//! that device, never causes a rekey, and never stops the device from receiving later bundles.
//!
//! Finding 7: the bundle that announces a removal lists the removed sender ID as stale.

mod keydist_support;

use group_core::keydist::{DeviceId, GroupSpec, Message, Role, ServerEvent, parse};
use group_core::suite::Suite;
use keydist_support::{Kind, NetParams, Sim, To};

const GID: u32 = 21;

/// Steps the simulation by 10 ms until `done` holds (at most `limit` ms), keeping a copy of every
/// join request a device puts on the wire (an eavesdropper's capture).
fn run_capturing(
    sim: &mut Sim,
    limit: u64,
    captured: &mut Vec<(DeviceId, Vec<u8>)>,
    done: impl Fn(&Sim) -> bool,
) {
    let end = sim.now + limit;
    let mut seen = sim.packet_seq;
    while !done(sim) {
        assert!(sim.now < end, "not done after {limit} ms");
        sim.step(10);
        for p in sim.inflight.iter().filter(|p| p.seq > seen) {
            if p.to == To::Server
                && p.kind == Kind::Kd
                && let Ok(pm) = parse(&p.bytes)
                && let Message::JoinRequest(j) = &pm.message
            {
                captured.push((j.header.device_id, p.bytes.clone()));
            }
        }
        seen = sim.packet_seq;
    }
}

/// Puts `bytes` on the wire to the key server (as an attacker would).
fn inject(sim: &mut Sim, bytes: &[u8]) {
    sim.packet_seq += 1;
    let p = keydist_support::Packet {
        at: sim.now + 1,
        seq: sim.packet_seq,
        to: To::Server,
        kind: Kind::Kd,
        bytes: bytes.to_vec(),
    };
    sim.inflight.push(p);
}

/// Membership-changing events the server reported after `since` (ms).
fn changes_since(sim: &Sim, since: u64) -> Vec<ServerEvent> {
    sim.server_events
        .iter()
        .filter(|(t, e)| {
            *t > since
                && matches!(
                    e,
                    ServerEvent::Joined { .. }
                        | ServerEvent::EpochCreated { .. }
                        | ServerEvent::Left { .. }
                )
        })
        .map(|(_, e)| *e)
        .collect()
}

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

/// Replays every captured join request of `dev` and lets the server answer; asserts the server
/// changed nothing: same epochs, same membership, no membership or epoch events.
fn replay_all_and_check_nothing_changed(sim: &mut Sim, captured: &[(DeviceId, Vec<u8>)]) {
    let epochs = sim.server().epochs(GID);
    let latest = sim.server().latest_epoch(GID);
    let members: Vec<_> = sim.server().members(GID).collect();
    let t0 = sim.now;
    for (_, bytes) in captured {
        inject(sim, bytes);
        sim.run_for(50);
    }
    sim.run_for(2_000);
    assert_eq!(
        sim.server().latest_epoch(GID),
        latest,
        "a replay created an epoch"
    );
    assert_eq!(sim.server().epochs(GID), epochs);
    let after: Vec<_> = sim.server().members(GID).collect();
    assert_eq!(after, members, "a replay changed the membership");
    assert_eq!(
        changes_since(sim, t0),
        vec![],
        "a replay changed the server's state"
    );
}

#[test]
fn a_replayed_join_of_an_earlier_membership_changes_nothing_and_bundles_still_arrive() {
    let (mut sim, a, b) = two_senders(1);
    let mut captured = Vec::new();
    for i in [a, b] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    run_capturing(&mut sim, 10_000, &mut captured, |s| s.converged(&[a, b]));
    // A reboots (its sequence store survives) and rejoins: a new membership.
    sim.reboot(a, false);
    let now = sim.now();
    sim.nodes[a].member.join(now).unwrap();
    run_capturing(&mut sim, 10_000, &mut captured, |s| s.converged(&[a, b]));
    let a_joins: Vec<_> = captured
        .iter()
        .filter(|(d, _)| *d == sim.nodes[a].id)
        .cloned()
        .collect();
    assert!(a_joins.len() >= 2);

    // Every join request A ever sent, replayed while A is a member.
    replay_all_and_check_nothing_changed(&mut sim, &a_joins);

    // A still receives and installs every later bundle: an operator rekey reaches both.
    let now = sim.now();
    let (server, rng) = (sim.server.as_mut().unwrap(), &mut sim.rng);
    let e = server.rekey(GID, now, rng).unwrap();
    sim.run_until(10_000, "rekey reached everyone", |s| s.converged(&[a, b]));
    assert!(sim.current_epoch() >= e);
    let rec = sim.seal(a, b"after the replay").unwrap();
    assert_eq!(sim.open(b, &rec).unwrap(), b"after the replay");
    let rec = sim.seal(b, b"to a").unwrap();
    assert_eq!(sim.open(a, &rec).unwrap(), b"to a");
}

#[test]
fn a_replayed_join_while_rebooted_left_or_revoked_changes_nothing() {
    let (mut sim, a, b) = two_senders(2);
    let mut captured = Vec::new();
    for i in [a, b] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    run_capturing(&mut sim, 10_000, &mut captured, |s| s.converged(&[a, b]));
    let a_id = sim.nodes[a].id;
    let a_joins: Vec<_> = captured
        .iter()
        .filter(|(d, _)| *d == a_id)
        .cloned()
        .collect();

    // Rebooted and silent (not rejoined yet): the replay must not rejoin it for it.
    sim.reboot(a, false);
    replay_all_and_check_nothing_changed(&mut sim, &a_joins);
    let now = sim.now();
    sim.nodes[a].member.join(now).unwrap();
    sim.run_until(10_000, "rejoined", |s| s.converged(&[a, b]));

    // Left: the replay must not bring it back.
    let now = sim.now();
    sim.nodes[a].member.leave(now).unwrap();
    sim.run_until(10_000, "left", |s| {
        s.server.as_ref().unwrap().membership(a_id, GID).is_none() && s.converged(&[b])
    });
    replay_all_and_check_nothing_changed(&mut sim, &a_joins);
    assert_eq!(sim.server().membership(a_id, GID), None);

    // Revoked: nothing either.
    let now = sim.now();
    sim.nodes[a].member.join(now).unwrap();
    sim.run_until(10_000, "rejoined", |s| s.converged(&[a, b]));
    sim.revoke(a_id);
    sim.run_until(10_000, "revoked", |s| s.converged(&[b]));
    replay_all_and_check_nothing_changed(&mut sim, &a_joins);
    assert!(sim.server().device(a_id).is_none());
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

/// The challenge table is bounded: one challenge per device and group, re-sent (not replaced)
/// while it is outstanding, forgotten when it expires or is used; replays are counted.
#[test]
fn join_challenges_are_bounded_reissued_and_used_once() {
    use group_core::keydist::{
        CHALLENGE_TTL_MS, DeviceCredential, HeaplessTables, KeyServer, Member, MemberConfig,
        MemberCredentials, MemoryServerStore, MessageKind, Received, ServerCredentials,
    };
    use group_core::sequence::MemorySequenceStore;
    use group_core::time::Instant;
    use keydist_support::{TestRng, key};

    let server_key = key(0xEE);
    let mut server: KeyServer<MemoryServerStore, 2, HeaplessTables<8, 2>> = KeyServer::open(
        ServerCredentials::new(server_key.clone()),
        MemoryServerStore::new(),
    )
    .unwrap();
    let mut rng = TestRng::seeded(9);
    let mut now = Instant(1_000);
    server
        .create_group(GroupSpec::new(GID, Suite::AES_128_CCM), now, &mut rng)
        .unwrap();
    let mut joins = Vec::new();
    for id in 1..=8u32 {
        let k = key(id as u8);
        server
            .admit_device(
                DeviceId(id),
                DeviceCredential::public_key(k.verifying_key()),
                Role::Sender,
                &[GID],
            )
            .unwrap();
        let mut m: Member<MemorySequenceStore> = Member::new(
            MemberConfig::new(DeviceId(id), GID, Role::Sender),
            MemberCredentials::signed(k, *server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        );
        m.join(now).unwrap();
        let mut buf = [0u8; 1500];
        let n = m.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
        joins.push((m, buf[..n].to_vec()));
    }
    let mut buf = [0u8; 1500];
    let mut challenge_of = |server: &mut KeyServer<MemoryServerStore, 2, HeaplessTables<8, 2>>,
                            rng: &mut TestRng,
                            now: Instant| {
        let t = server.poll_transmit(now, rng, &mut buf).unwrap().unwrap();
        assert_eq!(t.kind, MessageKind::JoinChallenge);
        let Message::JoinChallenge(c) = parse(&buf[..t.len]).unwrap().message else {
            panic!()
        };
        (buf[..t.len].to_vec(), c.challenge)
    };
    // Every device's request replayed 50 times: one challenge each, the same nonce each time.
    let mut first = Vec::new();
    for (_, j) in &joins {
        let mut nonce = None;
        for _ in 0..50 {
            let r = server.handle_message(now, &mut rng, j).unwrap();
            assert!(matches!(r, Received::Challenged(_)));
            let (_, c) = challenge_of(&mut server, &mut rng, now);
            assert!(
                nonce.is_none_or(|n| n == c),
                "an outstanding challenge was replaced"
            );
            nonce = Some(c);
        }
        first.push(nonce.unwrap());
    }
    assert_eq!(server.outstanding_challenges(), 8);
    assert_eq!(server.latest_epoch(GID), Some(1));
    assert_eq!(server.members(GID).count(), 0);
    // After the lifetime a new nonce; the table still holds one per device.
    now = now.plus_millis(CHALLENGE_TTL_MS + 1);
    server.handle_message(now, &mut rng, &joins[0].1).unwrap();
    let (bytes, c) = challenge_of(&mut server, &mut rng, now);
    assert_ne!(c, first[0]);
    assert_eq!(server.outstanding_challenges(), 8);
    // The device answers; the challenge is used up and the device is in.
    let (m, _) = &mut joins[0];
    m.handle_message(now, &bytes).unwrap();
    let n = m.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
    let answer = buf[..n].to_vec();
    assert_eq!(
        server.handle_message(now, &mut rng, &answer),
        Ok(Received::Fresh(DeviceId(1)))
    );
    assert_eq!(server.outstanding_challenges(), 7);
    assert!(server.membership(DeviceId(1), GID).is_some());
    // The same answer again is a duplicate of the membership's request: counted, nothing new.
    let replays = server.replays();
    let epoch = server.latest_epoch(GID);
    assert_eq!(
        server.handle_message(now, &mut rng, &answer),
        Ok(Received::Unproven(DeviceId(1)))
    );
    assert_eq!(server.replays(), replays + 1);
    assert_eq!(server.latest_epoch(GID), epoch);
    // An answer covering an expired challenge earns a new challenge, not a membership.
    now = now.plus_millis(CHALLENGE_TTL_MS + 1);
    let mut j2 = [0u8; 1500];
    let stale_answer = {
        // Device 2 got its (now expired) first challenge earlier: build its answer.
        let mut cb = [0u8; 1500];
        let n = group_core::keydist::encode_signed(
            &Message::JoinChallenge(group_core::keydist::JoinChallenge {
                group_id: GID,
                device_id: DeviceId(2),
                echo: match parse(&joins[1].1).unwrap().message {
                    Message::JoinRequest(j) => j.header.nonce,
                    _ => unreachable!(),
                },
                challenge: first[1],
            }),
            &server_key,
            key(2).verifying_key(),
            &mut cb,
        )
        .unwrap();
        let (m2, _) = &mut joins[1];
        m2.handle_message(now, &cb[..n]).unwrap();
        let n = m2.poll_transmit(now, &mut rng, &mut j2).unwrap().unwrap();
        j2[..n].to_vec()
    };
    assert_eq!(
        server.handle_message(now, &mut rng, &stale_answer),
        Ok(Received::Challenged(DeviceId(2)))
    );
    assert!(server.membership(DeviceId(2), GID).is_none());
}
