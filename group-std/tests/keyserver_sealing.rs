//! Parallel sealing of bundles (issue 14, `keyserver::poll_batch`): the messages a rekey
//! sends are byte for byte those of the one-at-a-time `poll_transmit` path, in the same order,
//! whatever the number of workers and the batch size, and every member accepts its bundle.

use std::collections::HashMap;

use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    MessageKind, Role, ServerCredentials,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use group_std::keyserver::{MemRowStore, SealingConfig, StdTables, TXN_GROUPS, poll_batch};
use p256::ecdsa::SigningKey;

type Srv = KeyServer<MemRowStore, TXN_GROUPS, StdTables, 65536>;

/// A seeded test generator (splitmix64; NOT a CSPRNG): two servers fed the same seed draw the
/// same ephemeral keys, so their bundles can be compared byte for byte.
#[derive(Clone)]
struct TestRng(u64);

impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}

fn device_key(id: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[0] = 0x01;
    b[1] = 0x5a;
    b[28..].copy_from_slice(&id.to_be_bytes());
    SigningKey::from_slice(&b).unwrap()
}

const MEMBERS: u32 = 12;

/// A server with one group of `MEMBERS` joined members, built the same way every time.
fn world() -> (Srv, HashMap<DeviceId, Member<MemorySequenceStore>>, TestRng) {
    let server_key = SigningKey::from_slice(&[0x33; 32]).unwrap();
    let mut rng = TestRng(14);
    let mut server = Srv::open(
        ServerCredentials::new(server_key.clone()),
        MemRowStore::new(),
    )
    .unwrap();
    server
        .create_group(
            GroupSpec::new(1, Suite::AES_128_CCM).with_activation_delay_ms(0),
            Instant(1_000),
            &mut rng,
        )
        .unwrap();
    let mut members = HashMap::new();
    let now = Instant(1_000);
    let mut buf = [0u8; 1500];
    let mut reply = [0u8; 1500];
    for id in 1..=MEMBERS {
        let key = device_key(id);
        server
            .admit_device(
                DeviceId(id),
                DeviceCredential::public_key(key.verifying_key()),
                Role::Listener,
                &[1],
            )
            .unwrap();
        let mut m = Member::new(
            MemberConfig::new(DeviceId(id), 1, Role::Listener),
            MemberCredentials::signed(key, *server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        );
        m.join(now).unwrap();
        members.insert(DeviceId(id), m);
        // Until quiet: requests, challenges, bundles, acknowledgements.
        loop {
            let mut moved = false;
            for m in members.values_mut() {
                while let Some(n) = m.poll_transmit(now, &mut rng, &mut buf).unwrap() {
                    server.handle_message(now, &mut rng, &buf[..n]).unwrap();
                    moved = true;
                }
            }
            while let Some(t) = server.poll_transmit(now, &mut rng, &mut buf).unwrap() {
                moved = true;
                if let Some(m) = members.get_mut(&t.device_id) {
                    let _ = m.handle_message(now, &buf[..t.len]);
                    while let Some(n) = m.poll_transmit(now, &mut rng, &mut reply).unwrap() {
                        server.handle_message(now, &mut rng, &reply[..n]).unwrap();
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }
    assert!(members.values().all(|m| m.is_joined()));
    (server, members, rng)
}

/// Revokes device 1 and returns what the server sends for it, polled one at a time.
fn rekey_one_at_a_time() -> (Vec<(DeviceId, MessageKind, Vec<u8>)>, TestRng) {
    let (mut server, _, mut rng) = world();
    let now = Instant(5_000);
    server.revoke_device(DeviceId(1), now, &mut rng).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(t) = server.poll_transmit(now, &mut rng, &mut buf).unwrap() {
        out.push((t.device_id, t.kind, buf[..t.len].to_vec()));
    }
    (out, rng)
}

#[test]
fn batches_sealed_on_workers_are_the_one_at_a_time_messages() {
    let (expected, rng_after) = rekey_one_at_a_time();
    let bundles = expected
        .iter()
        .filter(|(_, k, _)| *k == MessageKind::KeyBundle)
        .count();
    assert_eq!(
        bundles,
        MEMBERS as usize - 1,
        "a bundle to each remaining member"
    );
    for cfg in [
        SealingConfig {
            workers: 2,
            min_parallel: 1,
            batch: 64,
        },
        SealingConfig {
            workers: 3,
            min_parallel: 2,
            batch: 4,
        },
        SealingConfig {
            workers: 8,
            min_parallel: 1,
            batch: 1,
        },
        SealingConfig::serial(),
        SealingConfig::from_machine(),
    ] {
        let (mut server, mut members, mut rng) = world();
        let now = Instant(5_000);
        server.revoke_device(DeviceId(1), now, &mut rng).unwrap();
        let mut got = Vec::new();
        loop {
            let batch = poll_batch(&mut server, now, &mut rng, &cfg);
            assert!(batch.stopped.is_none(), "{cfg:?}");
            if batch.messages.is_empty() {
                break;
            }
            assert!(batch.messages.len() <= cfg.batch.max(1), "{cfg:?}");
            for m in batch.messages {
                let m = m.unwrap();
                assert_eq!(m.bytes.len(), m.transmit.len);
                got.push((m.transmit.device_id, m.transmit.kind, m.bytes));
            }
        }
        assert!(got == expected, "{cfg:?}: not the one-at-a-time messages");
        // The RNG was drawn exactly as often: the next draws agree too.
        let (mut a, mut b) = (rng.clone(), rng_after.clone());
        assert_eq!(
            rand_core::Rng::next_u64(&mut a),
            rand_core::Rng::next_u64(&mut b)
        );
        // And every remaining member accepts its bundle.
        for (id, kind, bytes) in &got {
            if *kind == MessageKind::KeyBundle {
                let m = members.get_mut(id).unwrap();
                m.handle_message(now, bytes).unwrap();
            }
        }
    }
}
