//! Forged key-distribution messages: tampered, replayed, redirected, wrongly signed and
//! version- or mode-downgraded messages are refused with the right typed error, change nothing,
//! and never panic. Plus: in a group that requires signed records, a member holding the group
//! key distributed by the key server can't pass a record off as another sender's.

mod keydist_support;

use group_core::group::{Group, GroupConfig};
use group_core::keydist::{
    DeviceCredential, DeviceId, Error, GroupSpec, KeyMaterial, KeyServer, Member, MemberConfig,
    MemberCredentials, MemberState, MemoryServerStore, Message, Received, Role, ServerCredentials,
    ServerHeader, VERSION, encode_signed, open_bundle_secret, parse, seal_secret,
};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};
use keydist_support::{TestRng, key};
use p256::ecdsa::SigningKey;

const G1: u32 = 1;
const G2: u32 = 2;

type Srv = KeyServer<MemoryServerStore>;
type Mem = Member<MemorySequenceStore>;

struct World {
    server_key: SigningKey,
    server: Srv,
    rng: TestRng,
    now: Instant,
    /// Server messages drained while looking for join challenges, not delivered yet.
    held: Vec<(DeviceId, Vec<u8>)>,
}

impl World {
    fn new(spec: GroupSpec) -> Self {
        let server_key = key(0xEE);
        let mut server = Srv::open(
            ServerCredentials::new(server_key.clone()),
            MemoryServerStore::new(),
        )
        .unwrap();
        let mut rng = TestRng::seeded(11);
        let now = Instant(1_000);
        server.create_group(spec, now, &mut rng).unwrap();
        server
            .create_group(GroupSpec::new(G2, Suite::AES_128_CCM), now, &mut rng)
            .unwrap();
        Self {
            server_key,
            server,
            rng,
            now,
            held: Vec::new(),
        }
    }

    fn admit(&mut self, id: u32, role: Role, groups: &[u32]) -> SigningKey {
        let k = key(id as u8);
        self.server
            .admit_device(
                DeviceId(id),
                DeviceCredential::public_key(k.verifying_key()),
                role,
                groups,
            )
            .unwrap();
        k
    }

    fn member(&self, id: u32, k: &SigningKey, group: u32, role: Role) -> Mem {
        Mem::new(
            MemberConfig::new(DeviceId(id), group, role),
            MemberCredentials::signed(k.clone(), *self.server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        )
    }

    /// Everything the member wants to send, delivered to the server; the join challenges the
    /// server answers with are delivered to the member at once (so a join request is followed
    /// by the request that covers the challenge). Returns the member's messages.
    fn up(&mut self, m: &mut Mem) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        loop {
            let mut joins = Vec::new();
            while let Some(n) = m.poll_transmit(self.now, &mut self.rng, &mut buf).unwrap() {
                out.push(buf[..n].to_vec());
                if let Message::JoinRequest(j) = parse(&buf[..n]).unwrap().message {
                    joins.push((j.header.device_id, j.header.group_id));
                }
                self.server
                    .handle_message(self.now, &mut self.rng, &buf[..n])
                    .unwrap();
            }
            let drained = self.drain();
            self.held.extend(drained);
            let mut answered = false;
            let mut keep = Vec::new();
            for (d, bytes) in std::mem::take(&mut self.held) {
                let msg = parse(&bytes).unwrap().message;
                if matches!(msg, Message::JoinChallenge(_)) && joins.contains(&(d, msg.group_id()))
                {
                    m.handle_message(self.now, &bytes).unwrap();
                    answered = true;
                } else {
                    keep.push((d, bytes));
                }
            }
            self.held = keep;
            if !answered {
                return out;
            }
        }
    }

    /// Everything the server wants to send (not delivered).
    fn down(&mut self) -> Vec<(DeviceId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.held);
        out.extend(self.drain());
        out
    }

    fn drain(&mut self) -> Vec<(DeviceId, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        while let Some(t) = self
            .server
            .poll_transmit(self.now, &mut self.rng, &mut buf)
            .unwrap()
        {
            out.push((t.device_id, buf[..t.len].to_vec()));
        }
        out
    }

    fn down_to(&mut self, id: u32) -> Vec<Vec<u8>> {
        self.down()
            .into_iter()
            .filter(|(d, _)| d.0 == id)
            .map(|(_, b)| b)
            .collect()
    }

    fn tick(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        self.server.handle_timeout(self.now, &mut self.rng).unwrap();
    }
}

fn spec() -> GroupSpec {
    GroupSpec::new(G1, Suite::AES_128_CCM).with_activation_delay_ms(0)
}

/// A joined member with id 1, and the bundle that made it join (not yet delivered).
fn joining() -> (World, Mem, SigningKey, Vec<u8>) {
    let mut w = World::new(spec());
    let k = w.admit(1, Role::Sender, &[G1]);
    let mut m = w.member(1, &k, G1, Role::Sender);
    m.join(w.now).unwrap();
    w.up(&mut m);
    let bundle = w.down_to(1).pop().unwrap();
    (w, m, k, bundle)
}

#[test]
fn tampered_bundles_are_refused_and_change_nothing() {
    let (_w, mut m, _k, bundle) = joining();
    let trailer_at = bundle.len() - 64;
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..bundle.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut t = bundle.clone();
            t[i] ^= flip;
            let e = m
                .handle_message(Instant(1_000), &t)
                .expect_err("a tampered bundle was accepted");
            match i {
                0 => assert_eq!(e, Error::UnsupportedVersion(VERSION ^ flip)),
                1 => assert_eq!(e, Error::UnsupportedMode(1 ^ flip)),
                _ if i >= trailer_at => assert_eq!(e, Error::BadSignature),
                _ => assert!(
                    matches!(
                        e,
                        Error::BadSignature
                            | Error::Malformed
                            | Error::Truncated
                            | Error::TrailingBytes
                            | Error::NonCanonical
                            | Error::WrongDevice
                            | Error::WrongGroup
                            | Error::UnexpectedKind
                    ),
                    "byte {i}: {e:?}"
                ),
            }
            *kinds.entry(format!("{e:?}")).or_default() += 1;
        }
        assert_eq!(m.state(), MemberState::Joining);
        assert!(m.group().is_none());
    }
    // Every prefix is refused too.
    for n in 0..bundle.len() {
        assert!(m.handle_message(Instant(1_000), &bundle[..n]).is_err());
    }
    // The genuine bundle still works: nothing changed.
    m.handle_message(Instant(1_000), &bundle).unwrap();
    assert!(m.is_joined());
    eprintln!("tampered bundle: {kinds:?}");
}

#[test]
fn replayed_bundles_are_refused() {
    let (mut w, mut m, k, b1) = joining();
    m.handle_message(w.now, &b1).unwrap();
    w.up(&mut m);
    assert_eq!(m.handle_message(w.now, &b1), Err(Error::Replayed));

    // A rekey: the new bundle is accepted; the old one still refused.
    let e = w.server.rekey(G1, w.now, &mut w.rng).unwrap();
    let b2 = w.down_to(1).pop().unwrap();
    m.handle_message(w.now, &b2).unwrap();
    assert_eq!(m.group().unwrap().epochs().highest(), Some(Epoch(e)));
    assert_eq!(m.handle_message(w.now, &b1), Err(Error::Replayed));
    assert_eq!(m.handle_message(w.now, &b2), Err(Error::Replayed));

    // After a reboot the device remembers nothing: a captured bundle doesn't answer its new
    // join request, so it is refused too.
    let mut fresh = w.member(1, &k, G1, Role::Sender);
    assert_eq!(fresh.handle_message(w.now, &b2), Err(Error::NotJoined));
    fresh.join(w.now).unwrap();
    let mut buf = [0u8; 1500];
    fresh
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(fresh.handle_message(w.now, &b2), Err(Error::NonceMismatch));
    assert_eq!(fresh.state(), MemberState::Joining);
}

#[test]
fn redirected_bundles_are_refused() {
    let mut w = World::new(spec());
    let ka = w.admit(1, Role::Sender, &[G1]);
    let kb = w.admit(2, Role::Sender, &[G1, G2]);
    let mut a = w.member(1, &ka, G1, Role::Sender);
    let mut b = w.member(2, &kb, G1, Role::Sender);
    let mut b2 = w.member(2, &kb, G2, Role::Sender);
    for m in [&mut a, &mut b, &mut b2] {
        m.join(w.now).unwrap();
        w.up(m);
    }
    let out = w.down();
    let for_a = out.iter().find(|(d, _)| d.0 == 1).unwrap().1.clone();
    let b_g2 = out
        .iter()
        .find(|(d, bytes)| d.0 == 2 && parse(bytes).unwrap().message.group_id() == G2)
        .unwrap()
        .1
        .clone();

    // A's bundle given to B.
    assert_eq!(b.handle_message(w.now, &for_a), Err(Error::WrongDevice));
    // B's bundle of group 2 given to B's member of group 1.
    assert_eq!(b.handle_message(w.now, &b_g2), Err(Error::WrongGroup));
    // A's bundle with the recipient rewritten to B (the signature binds A and A's key).
    let pm = parse(&for_a).unwrap();
    let Message::KeyBundle(mut bundle) = pm.message else {
        panic!()
    };
    bundle.header.device_id = DeviceId(2);
    let mut body = [0u8; 1500];
    let body = postcard::to_slice(&Message::KeyBundle(bundle), &mut body).unwrap();
    let mut rewritten = vec![VERSION, 1];
    rewritten.extend_from_slice(body);
    rewritten.extend_from_slice(pm.trailer);
    assert_eq!(
        b.handle_message(w.now, &rewritten),
        Err(Error::BadSignature)
    );
    // A device message given to a device.
    let mut buf = [0u8; 1500];
    let mut c = w.member(1, &ka, G1, Role::Sender);
    c.join(w.now).unwrap();
    let n = c
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(
        a.handle_message(w.now, &buf[..n]),
        Err(Error::UnexpectedKind)
    );
    // Nothing happened to B; its own bundle still works.
    assert_eq!(b.state(), MemberState::Joining);
    let for_b = out
        .iter()
        .find(|(d, bytes)| d.0 == 2 && parse(bytes).unwrap().message.group_id() == G1)
        .unwrap();
    b.handle_message(w.now, &for_b.1).unwrap();
    assert!(b.is_joined());
}

/// `n - s` for the P-256 group order `n`: the high-S twin of a signature.
fn negate_s(sig: &mut [u8]) {
    let n: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let s = &mut sig[32..64];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut v = n[i] as i16 - s[i] as i16 - borrow;
        borrow = if v < 0 { 1 } else { 0 };
        if v < 0 {
            v += 256;
        }
        s[i] = v as u8;
    }
}

#[test]
fn wrongly_signed_messages_are_refused() {
    let (mut w, mut m, k, bundle) = joining();
    // A rogue key server that admitted the same device: the device's join request is bound to
    // the real key server's key, so the rogue can't even use it ...
    let rogue_key = key(0x77);
    let mut rogue = Srv::open(
        ServerCredentials::new(rogue_key.clone()),
        MemoryServerStore::new(),
    )
    .unwrap();
    rogue.create_group(spec(), w.now, &mut w.rng).unwrap();
    rogue
        .admit_device(
            DeviceId(1),
            DeviceCredential::public_key(k.verifying_key()),
            Role::Sender,
            &[G1],
        )
        .unwrap();
    let mut buf = [0u8; 1500];
    let mut probe = w.member(1, &k, G1, Role::Sender);
    probe.join(w.now).unwrap();
    let n = probe
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    let Message::JoinRequest(join) = parse(&buf[..n]).unwrap().message else {
        panic!()
    };
    assert_eq!(
        rogue.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::BadSignature)
    );
    // ... and a bundle it signs (answering the nonce it saw on the wire) is refused.
    let Message::KeyBundle(mut forged) = parse(&bundle).unwrap().message else {
        panic!()
    };
    forged.echo = Some(join.header.nonce);
    let n = encode_signed(
        &Message::KeyBundle(forged),
        &rogue_key,
        k.verifying_key(),
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        probe.handle_message(w.now, &buf[..n]),
        Err(Error::BadSignature)
    );
    assert_eq!(probe.state(), MemberState::Joining);

    // The real server's key, but bound to another device's key.
    let pm = parse(&bundle).unwrap();
    let other = key(0x42);
    let n = encode_signed(&pm.message, &w.server_key, other.verifying_key(), &mut buf).unwrap();
    assert_eq!(m.handle_message(w.now, &buf[..n]), Err(Error::BadSignature));
    // The same signature in its high-S form.
    let mut high = bundle.clone();
    let at = high.len() - 64;
    negate_s(&mut high[at..]);
    assert_ne!(high, bundle);
    assert_eq!(m.handle_message(w.now, &high), Err(Error::BadSignature));

    // Server side: a join from device 1 signed with another key; from an unknown device;
    // claiming device 1 but carrying another public key.
    let mut intruder = w.member(1, &other, G1, Role::Sender);
    intruder.join(w.now).unwrap();
    let n = intruder
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::BadSignature)
    );
    let mut stranger = w.member(9, &other, G1, Role::Sender);
    stranger.join(w.now).unwrap();
    let n = stranger
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::UnknownDevice)
    );
    let pm = parse(&buf[..n]).unwrap();
    let Message::JoinRequest(mut j) = pm.message else {
        panic!()
    };
    j.header.device_id = DeviceId(1);
    let n = encode_signed(
        &Message::JoinRequest(j),
        &k,
        w.server_key.verifying_key(),
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::UnknownDevice)
    );
    // And the genuine bundle is still good.
    m.handle_message(w.now, &bundle).unwrap();
}

#[test]
fn version_downgrades_are_refused() {
    let (mut w, mut m, _k, bundle) = joining();
    // 1: the format before join challenges (finding 1).
    for v in [0u8, 1, 3, 0xff] {
        let mut t = bundle.clone();
        t[0] = v;
        assert_eq!(
            m.handle_message(w.now, &t),
            Err(Error::UnsupportedVersion(v))
        );
    }
    // The server refuses them too.
    let mut c = w.member(1, &key(1), G1, Role::Sender);
    c.join(w.now).unwrap();
    let mut buf = [0u8; 1500];
    let n = c
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    buf[0] = 0;
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::UnsupportedVersion(0))
    );
    // Rewriting the version byte and keeping the rest: the signature covers it.
    assert!(m.handle_message(w.now, &bundle).is_ok());
}

#[cfg(feature = "psk")]
#[test]
fn mode_downgrades_are_refused() {
    use group_core::keydist::{Psk, encode_psk};
    let (w, mut m, _k, bundle) = joining();
    // A PSK-protected bundle (whoever made it) to a device that uses signatures.
    let pm = parse(&bundle).unwrap();
    let mut buf = [0u8; 1500];
    let n = encode_psk(&pm.message, &Psk([9; 16]), &mut buf).unwrap();
    assert_eq!(m.handle_message(w.now, &buf[..n]), Err(Error::ModeMismatch));
    // A signed bundle to a PSK device.
    let mut p = Mem::new(
        MemberConfig::new(DeviceId(1), G1, Role::Sender),
        MemberCredentials::Psk(Psk([9; 16])),
        MemorySequenceStore::commissioned(),
    );
    assert_eq!(p.handle_message(w.now, &bundle), Err(Error::ModeMismatch));
    m.handle_message(w.now, &bundle).unwrap();
}

#[test]
fn forged_secrets_are_refused() {
    // The test holds the server key: it can sign anything, so this checks the sealing layer on
    // its own (AES-CCM tag, and the binding of the secret to its bundle).
    let (mut w, mut m, k, bundle) = joining();
    let pm = parse(&bundle).unwrap();
    let Message::KeyBundle(b) = pm.message.clone() else {
        panic!()
    };
    let mut buf = [0u8; 1500];
    let resign = |b: group_core::keydist::KeyBundle, buf: &mut [u8]| {
        encode_signed(&Message::KeyBundle(b), &key(0xEE), k.verifying_key(), buf).unwrap()
    };
    // Ciphertext tampered.
    let mut t = b.clone();
    t.sealed.ciphertext[0] ^= 1;
    let n = resign(t, &mut buf);
    assert_eq!(
        m.handle_message(w.now, &buf[..n]),
        Err(Error::AuthenticationFailed)
    );
    // Epoch changed (the secret is bound to its epoch, suite, counter, group and device).
    let mut t = b.clone();
    t.epoch += 1;
    let n = resign(t, &mut buf);
    assert_eq!(
        m.handle_message(w.now, &buf[..n]),
        Err(Error::AuthenticationFailed)
    );
    // A secret sealed to another device.
    let mut t = b.clone();
    let header = ServerHeader { ..b.header };
    t.sealed = seal_secret(
        &mut w.rng,
        key(2).verifying_key(),
        &header,
        b.epoch,
        b.suite,
        &KeyMaterial::Native { secret: [7; 32] },
    )
    .unwrap();
    let n = resign(t, &mut buf);
    assert_eq!(
        m.handle_message(w.now, &buf[..n]),
        Err(Error::AuthenticationFailed)
    );
    // The genuine one opens.
    assert!(matches!(
        open_bundle_secret(&k, &b).unwrap(),
        KeyMaterial::Native { .. }
    ));
    m.handle_message(w.now, &bundle).unwrap();
}

#[test]
fn server_refuses_forged_and_stale_device_messages() {
    let mut w = World::new(spec());
    let ka = w.admit(1, Role::Sender, &[G1]);
    let kl = w.admit(3, Role::Listener, &[G1]);
    let mut a = w.member(1, &ka, G1, Role::Sender);
    a.join(w.now).unwrap();
    let join1 = w.up(&mut a).pop().unwrap();
    let first_bundle = w.down_to(1).pop().unwrap();
    a.handle_message(w.now, &first_bundle).unwrap();
    w.up(&mut a);
    // Tampered join: every byte.
    for i in 2..join1.len() {
        let mut t = join1.clone();
        t[i] ^= 0x10;
        assert!(w.server.handle_message(w.now, &mut w.rng, &t).is_err());
    }
    // The same join again is a duplicate: no new epoch, nothing else, and it proves nothing.
    let e = w.server.latest_epoch(G1);
    let replays = w.server.replays();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &join1),
        Ok(Received::Unproven(DeviceId(1)))
    );
    assert_eq!(w.server.latest_epoch(G1), e);
    assert_eq!(w.server.replays(), replays + 1);
    // A listener asking to send.
    let mut l = w.member(3, &kl, G1, Role::Sender);
    l.join(w.now).unwrap();
    let mut buf = [0u8; 1500];
    let n = l
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::NotAdmitted)
    );
    // A group it is not admitted to.
    let mut other = w.member(1, &ka, G2, Role::Sender);
    other.join(w.now).unwrap();
    let n = other
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::NotAdmitted)
    );
    // A server message sent to the server.
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &first_bundle),
        Err(Error::UnexpectedKind)
    );
    // An ack naming a counter the server never used.
    let pm = parse(&join1).unwrap();
    let Message::JoinRequest(j) = pm.message else {
        panic!()
    };
    let fake_ack = Message::Ack(group_core::keydist::Ack {
        header: group_core::keydist::DeviceHeader {
            counter: 1 << 40,
            ..j.header
        },
        epoch: 1,
    });
    let n = encode_signed(&fake_ack, &ka, w.server_key.verifying_key(), &mut buf).unwrap();
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &buf[..n]),
        Err(Error::Stale)
    );

    // Leave, rejoin; the old leave and the old join replayed are refused.
    w.tick(10);
    for b in w.down_to(1) {
        let _ = a.handle_message(w.now, &b);
    }
    a.leave(w.now).unwrap();
    let leave1 = w.up(&mut a).pop().unwrap();
    for b in w.down_to(1) {
        a.handle_message(w.now, &b).unwrap();
    }
    assert!(matches!(a.state(), MemberState::Removed(_)));
    assert_eq!(w.server.membership(DeviceId(1), G1), None);
    let e_before_replay = w.server.latest_epoch(G1);
    // The old join (it covered a challenge, used up since): it only gets a new challenge,
    // which the removed device refuses.
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &join1),
        Ok(Received::Challenged(DeviceId(1)))
    );
    assert_eq!(w.server.membership(DeviceId(1), G1), None);
    assert_eq!(w.server.latest_epoch(G1), e_before_replay);
    let challenge = w.down_to(1);
    assert_eq!(challenge.len(), 1);
    assert_eq!(
        a.handle_message(w.now, &challenge[0]),
        Err(Error::NotJoined)
    );
    // The leave again (its confirmation lost, or replayed): confirmed again, nothing else; the
    // removed device refuses the extra notice.
    let e = w.server.latest_epoch(G1);
    w.server.handle_message(w.now, &mut w.rng, &leave1).unwrap();
    assert_eq!(w.server.latest_epoch(G1), e);
    let again = w.down_to(1);
    assert_eq!(again.len(), 1);
    assert!(matches!(
        parse(&again[0]).unwrap().message,
        Message::Removed(_)
    ));
    assert_eq!(a.handle_message(w.now, &again[0]), Err(Error::NotJoined));
    a.join(w.now).unwrap();
    w.up(&mut a);
    for b in w.down_to(1) {
        a.handle_message(w.now, &b).unwrap();
    }
    w.up(&mut a);
    assert!(a.is_joined());
    assert_eq!(
        w.server.handle_message(w.now, &mut w.rng, &leave1),
        Err(Error::Stale)
    );
    assert!(w.server.membership(DeviceId(1), G1).is_some());
}

#[test]
fn garbage_never_panics() {
    let (mut w, mut m, _k, bundle) = joining();
    let mut rng = TestRng::seeded(99);
    let mut samples = vec![bundle.clone()];
    let mut buf = [0u8; 1500];
    let mut c = w.member(1, &key(1), G1, Role::Sender);
    c.join(w.now).unwrap();
    let n = c
        .poll_transmit(w.now, &mut w.rng, &mut buf)
        .unwrap()
        .unwrap();
    samples.push(buf[..n].to_vec());
    for i in 0..3000 {
        let base = &samples[i % samples.len()];
        let mut t = base.clone();
        match rng.below(4) {
            0 => {
                let k = 1 + rng.below(8);
                for _ in 0..k {
                    let at = rng.below(t.len() as u64) as usize;
                    t[at] = rng.below(256) as u8;
                }
            }
            1 => t.truncate(rng.below(t.len() as u64) as usize),
            2 => {
                let at = rng.below(t.len() as u64) as usize;
                t.insert(at, rng.below(256) as u8);
            }
            _ => {
                t = (0..rng.below(300)).map(|_| rng.below(256) as u8).collect();
                if !t.is_empty() {
                    t[0] = VERSION;
                }
                if t.len() > 1 {
                    t[1] = 1;
                }
            }
        }
        if t == *base {
            continue;
        }
        assert!(m.handle_message(w.now, &t).is_err());
        assert!(w.server.handle_message(w.now, &mut w.rng, &t).is_err());
    }
    m.handle_message(w.now, &bundle).unwrap();
}

#[test]
fn signed_group_member_cannot_forge_another_sender() {
    // Keys come from the key server; device 1 then tries to pass records off as device 2.
    let mut w = World::new(
        GroupSpec::new(G1, Suite::AES_128_CCM)
            .with_activation_delay_ms(0)
            .with_signatures(),
    );
    let ka = w.admit(1, Role::Sender, &[G1]);
    let kb = w.admit(2, Role::Sender, &[G1]);
    let kc = w.admit(3, Role::Listener, &[G1]);
    let mut a = w.member(1, &ka, G1, Role::Sender);
    let mut b = w.member(2, &kb, G1, Role::Sender);
    let mut c = w.member(3, &kc, G1, Role::Listener);
    for _ in 0..3 {
        for m in [&mut a, &mut b, &mut c] {
            if !m.is_joined() {
                m.join(w.now).unwrap();
            }
            w.up(m);
        }
        for (d, bytes) in w.down() {
            let m = match d.0 {
                1 => &mut a,
                2 => &mut b,
                _ => &mut c,
            };
            m.handle_message(w.now, &bytes).unwrap();
        }
        w.tick(10);
    }
    for m in [&mut a, &mut b, &mut c] {
        w.up(m);
    }
    for (d, bytes) in w.down() {
        let m = match d.0 {
            1 => &mut a,
            2 => &mut b,
            _ => &mut c,
        };
        m.handle_message(w.now, &bytes).unwrap();
    }
    let epoch = c.group().unwrap().current_epoch().unwrap();
    assert_eq!(a.group().unwrap().current_epoch(), Some(epoch));
    assert_eq!(b.group().unwrap().current_epoch(), Some(epoch));
    let sid_b = b.group().unwrap().config().own_sender_id.unwrap();

    // Genuine records from both open at the listener.
    let mut buf = [0u8; 256];
    let n = b.seal(w.now, b"from b", &mut buf).unwrap();
    let mut r = buf[..n].to_vec();
    assert_eq!(c.open(w.now, &mut r).unwrap().sender_id, sid_b);

    // A rekey. Device 1 opens its own bundle like any member, derives the group keys, and
    // seals as sid_b with its own signing key (it has no other): refused.
    let e2 = w.server.rekey(G1, w.now, &mut w.rng).unwrap();
    let out = w.down();
    let for_a = &out.iter().find(|(d, _)| d.0 == 1).unwrap().1;
    let Message::KeyBundle(bundle_a) = parse(for_a).unwrap().message else {
        panic!()
    };
    let KeyMaterial::Native { secret } = open_bundle_secret(&ka, &bundle_a).unwrap() else {
        panic!()
    };
    let keys = native_keys(G1, Epoch(e2), Suite::AES_128_CCM, &EpochSecret(secret)).unwrap();
    for (d, bytes) in &out {
        match d.0 {
            1 => a.handle_message(w.now, bytes).unwrap(),
            3 => c.handle_message(w.now, bytes).unwrap(),
            _ => {}
        }
    }
    assert_eq!(c.group().unwrap().current_epoch(), Some(Epoch(e2)));
    let mut forger: Group =
        Group::new(GroupConfig::new(G1).with_signatures().with_sender_id(sid_b));
    forger
        .install_and_activate(Epoch(e2), &keys, w.now)
        .unwrap();
    forger.set_signing_key(ka.clone());
    let mut store = MemorySequenceStore::commissioned();
    let n = forger.seal(w.now, &mut store, b"I am b", &mut buf).unwrap();
    let mut r = buf[..n].to_vec();
    assert_eq!(
        c.open(w.now, &mut r).map(|d| d.sender_id),
        Err(OpenError::AuthenticationFailed)
    );
    // Device 1's own records in the same epoch are fine: the keys were right.
    let n = a.seal(w.now, b"I am a", &mut buf).unwrap();
    let mut r = buf[..n].to_vec();
    let sid_a = a.group().unwrap().config().own_sender_id;
    assert_eq!(c.open(w.now, &mut r).map(|d| Some(d.sender_id)), Ok(sid_a));
    assert_ne!(sid_a, Some(SenderId(sid_b.0)));
}
