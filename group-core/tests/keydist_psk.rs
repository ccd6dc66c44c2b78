//! The PSK variant (feature `psk`): the same flows with no public-key crypto on the devices,
//! and its refusals.
#![cfg(feature = "psk")]

mod keydist_support;

use group_core::keydist::{
    DeviceCredential, DeviceId, Error, GroupSpec, KeyServer, Member, MemberConfig,
    MemberCredentials, MemoryServerStore, MessageKind, Psk, Received, Role, ServerCredentials,
};
use group_core::record::OpenError;
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use group_core::wire::Epoch;
use keydist_support::{NetParams, Sim, TestRng, key};

const GID: u32 = 5;

#[test]
fn psk_devices_join_rekey_and_are_removed() {
    let mut sim = Sim::new(
        21,
        NetParams {
            loss: 0.1,
            dup: 0.05,
            min_delay: 2,
            max_delay: 60,
        },
        GID,
    );
    sim.psk_mode = true;
    sim.create_group(GroupSpec::new(GID, Suite::AES_128_CCM_8).with_activation_delay_ms(500));
    let a = sim.add_device(1, Role::Sender);
    let b = sim.add_device(2, Role::Sender);
    let c = sim.add_device(3, Role::Listener);
    for i in [a, b, c] {
        let now = sim.now();
        sim.nodes[i].member.join(now).unwrap();
    }
    sim.run_until(60_000, "joined", |s| s.converged(&[a, b, c]));
    let rec = sim.seal(a, b"psk hello").unwrap();
    assert_eq!(sim.open(c, &rec).unwrap(), b"psk hello");
    let e1 = sim.current_epoch();

    sim.nodes[b].hears_kd = false;
    sim.revoke(DeviceId(2));
    sim.run_until(60_000, "rekeyed", |s| {
        s.converged(&[a, c]) && s.current_epoch() > e1
    });
    let e2 = sim.current_epoch();
    let rec = sim.seal(a, b"without b").unwrap();
    assert_eq!(sim.open(b, &rec), Err(OpenError::UnknownEpoch(Epoch(e2))));
    assert_eq!(sim.open(c, &rec).unwrap(), b"without b");
    assert!(sim.tap.violations.is_empty(), "{:?}", sim.tap.violations);
}

#[test]
fn psk_refusals() {
    let server_key = key(0xEE);
    let mut server = KeyServer::<MemoryServerStore>::open(
        ServerCredentials::new(server_key.clone()),
        MemoryServerStore::new(),
    )
    .unwrap();
    let mut rng = TestRng::seeded(4);
    let now = Instant(0);
    server
        .create_group(GroupSpec::new(GID, Suite::AES_128_CCM), now, &mut rng)
        .unwrap();
    server
        .create_group(
            GroupSpec::new(6, Suite::AES_128_CCM).with_signatures(),
            now,
            &mut rng,
        )
        .unwrap();
    // No PSK device in a group that requires signed records.
    assert_eq!(
        server.admit_device(
            DeviceId(1),
            DeviceCredential::Psk(Psk([1; 16])),
            Role::Sender,
            &[6]
        ),
        Err(Error::PskWithSignatures)
    );
    server
        .admit_device(
            DeviceId(1),
            DeviceCredential::Psk(Psk([1; 16])),
            Role::Sender,
            &[GID],
        )
        .unwrap();
    server
        .admit_device(
            DeviceId(2),
            DeviceCredential::Psk(Psk([2; 16])),
            Role::Sender,
            &[GID],
        )
        .unwrap();
    let member = |id: u32, psk: [u8; 16]| {
        Member::<MemorySequenceStore>::new(
            MemberConfig::new(DeviceId(id), GID, Role::Sender),
            MemberCredentials::Psk(Psk(psk)),
            MemorySequenceStore::commissioned(),
        )
    };
    // A device with the wrong key: its join fails authentication.
    let mut wrong = member(1, [9; 16]);
    wrong.join(now).unwrap();
    let mut buf = [0u8; 1500];
    let n = wrong
        .poll_transmit(now, &mut rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(
        server.handle_message(now, &mut rng, &buf[..n]),
        Err(Error::AuthenticationFailed)
    );
    // The right one joins.
    let mut a = member(1, [1; 16]);
    a.join(now).unwrap();
    let n = a.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
    // First the key server's challenge (PSK-tagged like any server message; a member holding
    // the wrong PSK refuses it), then the request again covering it.
    assert_eq!(
        server.handle_message(now, &mut rng, &buf[..n]),
        Ok(Received::Challenged(DeviceId(1)))
    );
    let t = server
        .poll_transmit(now, &mut rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(t.kind, MessageKind::JoinChallenge);
    let challenge = buf[..t.len].to_vec();
    let mut imposter = member(1, [9; 16]);
    imposter.join(now).unwrap();
    imposter.poll_transmit(now, &mut rng, &mut buf).unwrap();
    assert_eq!(
        imposter.handle_message(now, &challenge),
        Err(Error::AuthenticationFailed)
    );
    a.handle_message(now, &challenge).unwrap();
    let n = a.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
    assert_eq!(
        server.handle_message(now, &mut rng, &buf[..n]),
        Ok(Received::Fresh(DeviceId(1)))
    );
    let t = server
        .poll_transmit(now, &mut rng, &mut buf)
        .unwrap()
        .unwrap();
    let bundle = buf[..t.len].to_vec();
    // Device 2 (another PSK) can't use it; a member holding the wrong PSK can't either.
    let mut b = member(2, [2; 16]);
    assert_eq!(b.handle_message(now, &bundle), Err(Error::WrongDevice));
    let mut imposter = member(1, [9; 16]);
    imposter.join(now).unwrap();
    imposter.poll_transmit(now, &mut rng, &mut buf).unwrap();
    assert_eq!(
        imposter.handle_message(now, &bundle),
        Err(Error::AuthenticationFailed)
    );
    // Every flipped byte is refused; the genuine bundle works, once.
    for i in 0..bundle.len() {
        let mut t = bundle.clone();
        t[i] ^= 0x04;
        assert!(a.handle_message(now, &t).is_err());
    }
    a.handle_message(now, &bundle).unwrap();
    assert!(a.is_joined());
    assert_eq!(a.handle_message(now, &bundle), Err(Error::Replayed));
}
