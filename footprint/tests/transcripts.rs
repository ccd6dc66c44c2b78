//! Makes the member images' transcripts with the real key server (deterministic generators),
//! checks that the checked-in files are what it makes (`FOOTPRINT_UPDATE=1` rewrites them),
//! and runs every image's work on the host.

use std::collections::VecDeque;
use std::path::PathBuf;

use footprint::GROUP_ID;
use footprint::member::{self, DEVICE, DEVICE_SEED, Device, PEER};
use footprint::rng::TestRng;
use footprint::transcript::{self, MAGIC, MESSAGE, RECORD, RECORD_PLAINTEXT};
use group_core::keydist::{
    DeviceCredential, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    MemoryServerStore, Role, ServerCredentials,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant;
use p256::ecdsa::SigningKey;

const PEER_KEY: [u8; 32] = [0x4d; 32];
const PEER_PSK: [u8; 16] = [0x22; 16];
/// When the second member joins (its join makes the key server rekey the group).
const PEER_JOIN_MS: u32 = 100;
/// When the second member sends its record (the rekeyed epoch is active by then).
const RECORD_MS: u32 = 3_000;

struct Scenario {
    server: KeyServer<MemoryServerStore>,
    server_rng: TestRng,
    device: Device,
    device_rng: TestRng,
    peer: Member<MemorySequenceStore, 32, 2>,
    peer_rng: TestRng,
    to_server: VecDeque<Vec<u8>>,
    out: Vec<u8>,
}

impl Scenario {
    fn push(&mut self, tag: u8, now_ms: u32, bytes: &[u8]) {
        let at = self.out.len();
        self.out.resize(at + 7 + bytes.len(), 0);
        let end = transcript::push(&mut self.out, at, tag, now_ms, bytes).unwrap();
        assert_eq!(end, self.out.len());
    }

    fn drive_peer(&mut self, now: Instant, incoming: Option<&[u8]>) {
        if let Some(b) = incoming {
            self.peer.handle_message(now, b).unwrap();
        }
        let mut buf = [0u8; member::MAX_MESSAGE];
        while let Some(n) = self
            .peer
            .poll_transmit(now, &mut self.peer_rng, &mut buf)
            .unwrap()
        {
            self.to_server.push_back(buf[..n].to_vec());
        }
    }

    fn drive_device(&mut self, now: Instant, incoming: Option<&[u8]>) {
        let q = &mut self.to_server;
        member::drive(
            &mut self.device,
            now,
            &mut self.device_rng,
            incoming,
            &mut |b| q.push_back(b.to_vec()),
        )
        .unwrap();
    }

    /// Delivers everything in flight until both sides are quiet; the device's incoming
    /// messages are recorded in the order it handles them.
    fn pump(&mut self, now_ms: u32) {
        let now = Instant(u64::from(now_ms));
        self.server
            .handle_timeout(now, &mut self.server_rng)
            .unwrap();
        for _ in 0..64 {
            let mut moved = false;
            while let Some(m) = self.to_server.pop_front() {
                self.server
                    .handle_message(now, &mut self.server_rng, &m)
                    .unwrap();
                moved = true;
            }
            let mut buf = [0u8; member::MAX_MESSAGE];
            while let Some(t) = self
                .server
                .poll_transmit(now, &mut self.server_rng, &mut buf)
                .unwrap()
            {
                let bytes = buf[..t.len].to_vec();
                if t.device_id == DEVICE {
                    self.push(MESSAGE, now_ms, &bytes);
                    self.drive_device(now, Some(&bytes));
                } else {
                    assert_eq!(t.device_id, PEER);
                    self.drive_peer(now, Some(&bytes));
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the key-distribution exchange did not settle");
    }
}

fn generate(psk: bool) -> Vec<u8> {
    let server_key = SigningKey::from_slice(&member::SERVER_KEY).unwrap();
    let server_public = *server_key.verifying_key();
    let mut server: KeyServer<MemoryServerStore> =
        KeyServer::open(ServerCredentials::new(server_key), MemoryServerStore::new()).unwrap();
    let mut server_rng = TestRng(0xfeed_f00d);
    server
        .create_group(
            GroupSpec::new(GROUP_ID, Suite::AES_128_CCM_8),
            Instant(0),
            &mut server_rng,
        )
        .unwrap();
    let peer_key = SigningKey::from_slice(&PEER_KEY).unwrap();
    let (device_creds, device_cred, peer_creds, peer_cred) = if psk {
        psk_credentials()
    } else {
        let device_key = SigningKey::from_slice(&member::DEVICE_KEY).unwrap();
        (
            MemberCredentials::signed(device_key.clone(), server_public),
            DeviceCredential::public_key(device_key.verifying_key()),
            MemberCredentials::signed(peer_key.clone(), server_public),
            DeviceCredential::public_key(peer_key.verifying_key()),
        )
    };
    server
        .admit_device(DEVICE, device_cred, Role::Sender, &[GROUP_ID])
        .unwrap();
    server
        .admit_device(PEER, peer_cred, Role::Sender, &[GROUP_ID])
        .unwrap();
    let mut s = Scenario {
        server,
        server_rng,
        device: member::device(device_creds),
        device_rng: TestRng(DEVICE_SEED),
        peer: Member::new(
            MemberConfig::new(PEER, GROUP_ID, Role::Sender),
            peer_creds,
            MemorySequenceStore::commissioned(),
        ),
        peer_rng: TestRng(0x0bad_cafe),
        to_server: VecDeque::new(),
        out: MAGIC.to_vec(),
    };
    // What the image does first: join, then send what it has.
    s.device.join(Instant(0)).unwrap();
    s.drive_device(Instant(0), None);
    s.pump(0);
    assert!(s.device.is_joined(), "the device joined");
    s.peer.join(Instant(u64::from(PEER_JOIN_MS))).unwrap();
    s.drive_peer(Instant(u64::from(PEER_JOIN_MS)), None);
    s.pump(PEER_JOIN_MS);
    assert!(s.peer.is_joined(), "the peer joined");
    let now = Instant(u64::from(RECORD_MS));
    s.pump(RECORD_MS);
    let mut rec = [0u8; 64];
    let n = s.peer.seal(now, RECORD_PLAINTEXT, &mut rec).unwrap();
    s.push(RECORD, RECORD_MS, &rec[..n]);
    s.out
}

#[cfg(feature = "psk")]
fn psk_credentials() -> (
    MemberCredentials,
    DeviceCredential,
    MemberCredentials,
    DeviceCredential,
) {
    use group_core::keydist::Psk;
    (
        MemberCredentials::Psk(Psk(member::PSK)),
        DeviceCredential::Psk(Psk(member::PSK)),
        MemberCredentials::Psk(Psk(PEER_PSK)),
        DeviceCredential::Psk(Psk(PEER_PSK)),
    )
}

#[cfg(not(feature = "psk"))]
fn psk_credentials() -> (
    MemberCredentials,
    DeviceCredential,
    MemberCredentials,
    DeviceCredential,
) {
    let _ = PEER_PSK;
    panic!("the PSK transcript needs `--features psk`")
}

fn check_file(name: &str, made: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("transcripts")
        .join(name);
    if std::env::var_os("FOOTPRINT_UPDATE").is_some_and(|v| v == "1") {
        std::fs::write(&path, made).unwrap();
    }
    let kept = std::fs::read(&path).unwrap_or_default();
    assert!(
        kept == made,
        "{} is not what the key server makes today; regenerate it with \
         FOOTPRINT_UPDATE=1 cargo test -p footprint --features psk --test transcripts",
        path.display()
    );
}

#[test]
fn signed_transcript_is_current_and_replays() {
    let server_key = SigningKey::from_slice(&member::SERVER_KEY).unwrap();
    let public = server_key.verifying_key().to_sec1_point(false);
    check_file("server-public.bin", public.as_bytes());
    let t = generate(false);
    check_file("signed.bin", &t);
    let creds = member::signed_credentials().unwrap();
    let f = member::run(creds, &t).unwrap();
    assert!(f.ram_group32 > 0);
    // A transcript cut short leaves the member without the rekey: the replay notices.
    let cut = &t[..t.len() - 40];
    assert!(member::run(member::signed_credentials().unwrap(), cut).is_err());
}

#[cfg(feature = "psk")]
#[test]
fn psk_transcript_is_current_and_replays() {
    use group_core::keydist::Psk;
    let t = generate(true);
    check_file("psk.bin", &t);
    member::run(MemberCredentials::Psk(Psk(member::PSK)), &t).unwrap();
    // The wrong key can't join.
    assert_eq!(
        member::run(MemberCredentials::Psk(Psk([0x99; 16])), &t),
        Err(footprint::Failure::Join)
    );
}

#[test]
fn record_and_known_answers_pass_on_the_host() {
    assert_eq!(
        footprint::kat::run().unwrap(),
        footprint::vectors::APP_RECORDS.len() + footprint::vectors::TAMPERED.len()
    );
    let f = footprint::record::run().unwrap();
    assert_eq!(
        f.ram_group32,
        std::mem::size_of::<footprint::record::Light>()
    );
    assert!(footprint::baseline().is_ok());
}

#[test]
fn transcript_reader_refuses_truncation() {
    let mut t = MAGIC.to_vec();
    t.extend_from_slice(&[MESSAGE, 0, 0, 0, 0, 5, 0, 1, 2]);
    let mut e = transcript::entries(&t).unwrap();
    assert_eq!(e.next(), Some(None));
    assert!(transcript::entries(b"nope").is_none());
}

/// The member images are built without group-core's `wolfssl-schedule` (so is this test: the
/// footprint crate's group-core features leave it out). A bundle whose key material is for the
/// wolfSSL schedule (the TLS 1.2 PRF) is then refused as unsupported, before the member
/// changes anything: it stays unjoined. With the feature the same member joins
/// (group-core's `keydist_sim::members_join_a_wolfssl_schedule_group`).
#[cfg(feature = "psk")]
#[test]
fn a_member_without_the_wolfssl_schedule_refuses_its_bundle() {
    use group_core::keydist::{Error, KeySchedule, Psk};
    let server_key = SigningKey::from_slice(&member::SERVER_KEY).unwrap();
    let mut server: KeyServer<MemoryServerStore> =
        KeyServer::open(ServerCredentials::new(server_key), MemoryServerStore::new()).unwrap();
    let mut rng = TestRng(0x5eed);
    server
        .create_group(
            GroupSpec::new(GROUP_ID, Suite::AES_128_CCM_8).with_schedule(KeySchedule::WolfSsl),
            Instant(0),
            &mut rng,
        )
        .unwrap();
    server
        .admit_device(
            PEER,
            DeviceCredential::Psk(Psk(PEER_PSK)),
            Role::Sender,
            &[GROUP_ID],
        )
        .unwrap();
    let mut m: Member<MemorySequenceStore, 32, 2> = Member::new(
        MemberConfig::new(PEER, GROUP_ID, Role::Sender),
        MemberCredentials::Psk(Psk(PEER_PSK)),
        MemorySequenceStore::commissioned(),
    );
    let now = Instant(0);
    m.join(now).unwrap();
    let mut refused = 0;
    let mut buf = [0u8; member::MAX_MESSAGE];
    for _ in 0..8 {
        while let Some(n) = m.poll_transmit(now, &mut rng, &mut buf).unwrap() {
            server.handle_message(now, &mut rng, &buf[..n]).unwrap();
        }
        let mut out = [0u8; member::MAX_MESSAGE];
        while let Some(t) = server.poll_transmit(now, &mut rng, &mut out).unwrap() {
            assert_eq!(t.device_id, PEER);
            match m.handle_message(now, &out[..t.len]) {
                Ok(_) => {}
                Err(Error::PolicyUnsupported) => refused += 1,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
    }
    assert!(refused >= 1, "the bundle was refused");
    assert!(!m.is_joined(), "no keys from a refused bundle");
    assert!(m.group().is_none(), "no group from a refused bundle");
}
