//! Golden vectors of every key-distribution message kind, in signed mode and (feature `psk`) PSK
//! mode: made from fixed keys and a seeded RNG, written to `tests/vectors/keydist_*.json`, and
//! compared byte for byte on every run (set `KEYDIST_VECTORS_UPDATE=1` to rewrite them).
//! `scripts/check_keydist_vectors.py` re-verifies each with Python's `cryptography`: signatures,
//! ECDH + HKDF + AES-CCM of the bundle secrets, PSK tags, and the postcard fields by hand.

mod keydist_support;

use std::path::PathBuf;

use group_core::keydist::{
    Ack, BundlePolicy, Bytes, DeviceHeader, DeviceId, Direction, Error, JoinChallenge, JoinRequest,
    KeyBundle, KeyMaterial, Leave, MAX_MESSAGE_LEN, MAX_PART_KEYS, MAX_SENDERS,
    MAX_SIGNING_SENDERS, MAX_STALE, Message, PublicKeyBytes, RekeyNeeded, RekeyReport, Removed,
    RemovedReason, Role, SPLIT_BUNDLE_KEYS, SealedSecret, SenderEntries, SenderEntry, SenderKeys,
    ServerHeader, WireAdmission, WireNonceProfile, encode_signed, open_bundle_secret, seal_secret,
    verify_signed,
};
use group_core::schedule::{EpochSecret, native_keys, wolfssl_keys};
use group_core::suite::Suite;
use group_core::wire::Epoch;
use keydist_support::TestRng;
use p256::ecdsa::SigningKey;
use rand_core::Rng;
use serde_json::{Value, json};

const GROUP: u32 = 0x2A;
const SERVER_SK: [u8; 32] = [
    0xc9, 0xaf, 0xa9, 0xd8, 0x45, 0xba, 0x75, 0x16, 0x6b, 0x5c, 0x21, 0x57, 0x67, 0xb1, 0xd6, 0x93,
    0x4e, 0x50, 0xc3, 0xdb, 0x36, 0xe8, 0x9b, 0x12, 0x7b, 0x8a, 0x62, 0x2b, 0x12, 0x0f, 0x67, 0x21,
];
const DEVICE_SK: [u8; 32] = [
    0x51, 0x9b, 0x42, 0x3d, 0x71, 0x5f, 0x8b, 0x58, 0x1f, 0x4f, 0xa8, 0xee, 0x59, 0xf4, 0x77, 0x1a,
    0x5b, 0x44, 0xc8, 0x13, 0x0b, 0x4e, 0x3e, 0xac, 0xca, 0x54, 0xa5, 0x6d, 0xda, 0x72, 0xb4, 0x64,
];
const OTHER_SK: [u8; 32] = [
    0x0f, 0x56, 0xdb, 0x78, 0xca, 0x46, 0x0b, 0x05, 0x5c, 0x50, 0x00, 0x64, 0x82, 0x4b, 0xed, 0x99,
    0x9a, 0x25, 0xaa, 0xf4, 0x8e, 0xbb, 0x51, 0x9a, 0xc2, 0x01, 0x53, 0x7b, 0x85, 0x47, 0x98, 0x13,
];

fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

fn compressed(k: &SigningKey) -> [u8; 33] {
    k.verifying_key()
        .to_sec1_point(true)
        .as_bytes()
        .try_into()
        .unwrap()
}

fn dev_header(rng: &mut TestRng, device: u32, counter: u64) -> DeviceHeader {
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    DeviceHeader {
        group_id: GROUP,
        device_id: DeviceId(device),
        nonce,
        counter,
    }
}

fn dev_header_json(h: &DeviceHeader) -> Value {
    json!({"group_id": h.group_id, "device_id": h.device_id.0, "nonce": hx(&h.nonce), "counter": h.counter})
}

fn srv_header_json(h: &ServerHeader) -> Value {
    json!({"group_id": h.group_id, "device_id": h.device_id.0, "counter": h.counter})
}

fn policy_json(p: &BundlePolicy) -> Value {
    json!({
        "replay_window": p.replay_window,
        "admission": match p.admission { WireAdmission::TrustFirst => 0, WireAdmission::Strict => 1 },
        "nonce_profile": match p.nonce_profile { WireNonceProfile::Strict => 0, WireNonceProfile::Compatibility => 1 },
        "signatures_required": p.signatures_required,
        "grace_ms": p.grace_ms,
        "max_fragment_len": p.max_fragment_len,
    })
}

fn material_json(m: &KeyMaterial) -> Value {
    match m {
        KeyMaterial::Native { secret } => json!({"variant": 0, "secret": hx(secret)}),
        KeyMaterial::WolfSsl {
            pms,
            client_random,
            server_random,
        } => {
            json!({"variant": 1, "pms": hx(&pms.0), "client_random": hx(client_random), "server_random": hx(server_random)})
        }
    }
}

/// The record keys members derive from the material (a cross-check of the key schedules).
fn record_keys_json(m: &KeyMaterial, epoch: u16, suite: u16) -> Value {
    let keys = match m {
        KeyMaterial::Native { secret } => {
            native_keys(GROUP, Epoch(epoch), Suite(suite), &EpochSecret(*secret)).unwrap()
        }
        KeyMaterial::WolfSsl {
            pms,
            client_random,
            server_random,
        } => {
            wolfssl_keys(Suite(suite), &pms.0, client_random, server_random)
                .unwrap()
                .keys
        }
    };
    json!({"write_key": hx(keys.key()), "write_iv": hx(keys.iv())})
}

fn bundle_json(b: &KeyBundle, m: &KeyMaterial) -> Value {
    json!({
        "header": srv_header_json(&b.header),
        "echo": b.echo.map(|e| hx(&e)),
        "epoch": b.epoch,
        "suite": b.suite,
        "sender_id": b.sender_id,
        "policy": policy_json(&b.policy),
        "activate_in_ms": b.activate_in_ms,
        "lifetime_ms": b.lifetime_ms,
        "senders": b.senders.iter().map(|s| json!({"sender_id": s.sender_id, "public_key": s.public_key.map(|k| hx(&k.0))})).collect::<Vec<_>>(),
        "stale": b.stale.iter().copied().collect::<Vec<_>>(),
        "sealed": {"ephemeral": b.sealed.ephemeral.map(|k| hx(&k.0)), "ciphertext": hx(&b.sealed.ciphertext)},
        "material": material_json(m),
        "record_keys": record_keys_json(m, b.epoch, b.suite),
    })
}

fn policy(signatures: bool) -> BundlePolicy {
    BundlePolicy {
        replay_window: 64,
        admission: if signatures {
            WireAdmission::Strict
        } else {
            WireAdmission::TrustFirst
        },
        nonce_profile: WireNonceProfile::Strict,
        signatures_required: signatures,
        grace_ms: 60_000,
        max_fragment_len: 1024,
    }
}

/// The messages of one mode, unprotected, with their JSON field descriptions.
struct Plan {
    name: &'static str,
    message: Message,
    fields: Value,
}

/// Builds every kind. `seal` seals key material for a bundle header.
fn plans(
    rng: &mut TestRng,
    device: u32,
    public_key: PublicKeyBytes,
    sender_keys: Option<([u8; 33], [u8; 33])>,
    seal: &mut dyn FnMut(&mut TestRng, &ServerHeader, u16, u16, &KeyMaterial) -> SealedSecret,
) -> Vec<Plan> {
    let mut out = Vec::new();
    let join = JoinRequest {
        header: dev_header(rng, device, 0),
        role: Role::Sender,
        public_key: public_key.clone(),
        sequence_state_lost: false,
        challenge: None,
    };
    out.push(Plan {
        name: "join_request",
        fields: json!({"header": dev_header_json(&join.header), "role": 1, "public_key": hx(&join.public_key), "sequence_state_lost": false, "challenge": null}),
        message: Message::JoinRequest(join.clone()),
    });

    // The key server's challenge, and the request again covering it.
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let challenge = JoinChallenge {
        group_id: GROUP,
        device_id: DeviceId(device),
        echo: join.header.nonce,
        challenge: nonce,
    };
    out.push(Plan {
        name: "join_challenge",
        fields: json!({"group_id": GROUP, "device_id": device, "echo": hx(&challenge.echo), "challenge": hx(&nonce)}),
        message: Message::JoinChallenge(challenge),
    });
    let answer = JoinRequest {
        challenge: Some(nonce),
        ..join.clone()
    };
    out.push(Plan {
        name: "join_request_challenged",
        fields: json!({"header": dev_header_json(&answer.header), "role": 1, "public_key": hx(&answer.public_key), "sequence_state_lost": false, "challenge": hx(&nonce)}),
        message: Message::JoinRequest(answer),
    });

    // The join response: native material, signatures required iff keys are given.
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let native = KeyMaterial::Native { secret };
    let header = ServerHeader {
        group_id: GROUP,
        device_id: DeviceId(device),
        counter: 5,
    };
    let mut senders = SenderEntries::new();
    let signed = sender_keys.is_some();
    let (k2, k4) = sender_keys.unwrap_or(([0; 33], [0; 33]));
    senders
        .push(SenderEntry {
            sender_id: 2,
            public_key: signed.then_some(Bytes(k2)),
        })
        .unwrap();
    senders
        .push(SenderEntry {
            sender_id: 4,
            public_key: signed.then_some(Bytes(k4)),
        })
        .unwrap();
    let bundle = KeyBundle {
        header,
        echo: Some(join.header.nonce),
        epoch: 3,
        suite: Suite::AES_128_CCM.0,
        sender_id: Some(4),
        policy: policy(signed),
        activate_in_ms: 2_000,
        lifetime_ms: 3_600_000,
        senders,
        stale: heapless::Vec::from_slice(&[1]).unwrap(),
        sealed: seal(rng, &header, 3, Suite::AES_128_CCM.0, &native),
    };
    out.push(Plan {
        name: "key_bundle",
        fields: bundle_json(&bundle, &native),
        message: Message::KeyBundle(bundle),
    });

    // A rekey with wolfSSL-compatible material: no echo, CCM_8, no signatures.
    let mut pms = [0u8; 64];
    let mut cr = [0u8; 32];
    let mut sr = [0u8; 32];
    rng.fill_bytes(&mut pms);
    rng.fill_bytes(&mut cr);
    rng.fill_bytes(&mut sr);
    let wolf = KeyMaterial::WolfSsl {
        pms: Bytes(pms),
        client_random: cr,
        server_random: sr,
    };
    let header = ServerHeader {
        group_id: GROUP,
        device_id: DeviceId(device),
        counter: 300,
    };
    let rekey = KeyBundle {
        header,
        echo: None,
        epoch: 4,
        suite: Suite::AES_128_CCM_8.0,
        sender_id: Some(4),
        policy: policy(false),
        activate_in_ms: 0,
        lifetime_ms: 0,
        senders: SenderEntries::from_slice(&[SenderEntry {
            sender_id: 4,
            public_key: None,
        }])
        .unwrap(),
        stale: heapless::Vec::new(),
        sealed: seal(rng, &header, 4, Suite::AES_128_CCM_8.0, &wolf),
    };
    out.push(Plan {
        name: "key_bundle_wolfssl",
        fields: bundle_json(&rekey, &wolf),
        message: Message::KeyBundle(rekey),
    });

    let ack = Ack {
        header: dev_header(rng, device, 5),
        epoch: 3,
    };
    out.push(Plan {
        name: "ack",
        fields: json!({"header": dev_header_json(&ack.header), "epoch": 3}),
        message: Message::Ack(ack),
    });
    let leave = Leave {
        header: dev_header(rng, device, 300),
    };
    out.push(Plan {
        name: "leave",
        fields: json!({"header": dev_header_json(&leave.header)}),
        message: Message::Leave(leave),
    });
    let rn = RekeyNeeded {
        header: dev_header(rng, device, 300),
        epoch: 4,
        reason: RekeyReport::GroupUsage,
    };
    out.push(Plan {
        name: "rekey_needed",
        fields: json!({"header": dev_header_json(&rn.header), "epoch": 4, "reason": 1}),
        message: Message::RekeyNeeded(rn),
    });
    let removed = Removed {
        header: ServerHeader {
            group_id: GROUP,
            device_id: DeviceId(device),
            counter: 70_000,
        },
        reason: RemovedReason::Revoked,
    };
    out.push(Plan {
        name: "removed",
        fields: json!({"header": srv_header_json(&removed.header), "reason": 1}),
        message: Message::Removed(removed),
    });
    out
}

fn kind_number(m: &Message) -> u8 {
    match m {
        Message::JoinRequest(_) => 0,
        Message::KeyBundle(_) => 1,
        Message::Ack(_) => 2,
        Message::Leave(_) => 3,
        Message::RekeyNeeded(_) => 4,
        Message::Removed(_) => 5,
        Message::JoinChallenge(_) => 6,
        Message::SenderKeys(_) => 7,
    }
}

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

/// Writes the file if asked to (or if it is missing); otherwise requires it to be identical.
fn write_or_compare(name: &str, doc: &Value) {
    let text = serde_json::to_string_pretty(doc).unwrap() + "\n";
    let path = vector_path(name);
    let update = std::env::var_os("KEYDIST_VECTORS_UPDATE").is_some();
    if update || !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(
        stored == text,
        "{} differs from what the code produces now; if the format change is intended, \
         rerun with KEYDIST_VECTORS_UPDATE=1 and re-check with scripts/check_keydist_vectors.py",
        path.display()
    );
}

#[test]
fn signed_mode_vectors() {
    let server = SigningKey::from_slice(&SERVER_SK).unwrap();
    let device = SigningKey::from_slice(&DEVICE_SK).unwrap();
    let other = SigningKey::from_slice(&OTHER_SK).unwrap();
    let mut rng = TestRng::seeded(0x6b64_7631);
    let public_key = PublicKeyBytes::from_slice(&compressed(&device)).unwrap();
    let device_vk = *device.verifying_key();
    let mut seal = |rng: &mut TestRng, h: &ServerHeader, epoch, suite, m: &KeyMaterial| {
        seal_secret(rng, &device_vk, h, epoch, suite, m).unwrap()
    };
    let plans = plans(
        &mut rng,
        7,
        public_key,
        Some((compressed(&other), compressed(&device))),
        &mut seal,
    );
    let mut vectors = Vec::new();
    let mut buf = [0u8; 1500];
    for p in plans {
        let from_server = p.message.direction() == Direction::ServerToDevice;
        let (signer, peer) = if from_server {
            (&server, device.verifying_key())
        } else {
            (&device, server.verifying_key())
        };
        let n = encode_signed(&p.message, signer, peer, &mut buf).unwrap();
        let bytes = &buf[..n];
        // The Rust side reads back what it wrote.
        let pm = verify_signed(bytes, signer.verifying_key(), peer).unwrap();
        assert_eq!(pm.message, p.message);
        if let Message::KeyBundle(b) = &pm.message {
            open_bundle_secret(&device, b).unwrap();
        }
        vectors.push(json!({
            "name": p.name,
            "kind": kind_number(&p.message),
            "direction": if from_server { "server_to_device" } else { "device_to_server" },
            "mode": 1,
            "length": n,
            "hex": hx(bytes),
            "fields": p.fields,
        }));
    }
    let doc = json!({
        "description": "Key-distribution golden vectors, signed mode (docs/key-distribution.md). Generated by group-core/tests/keydist_vectors.rs from the fixed keys below and a seeded RNG; checked independently by scripts/check_keydist_vectors.py.",
        "format_version": 2,
        "server_private_key": hx(&SERVER_SK),
        "server_public_key": hx(&compressed(&server)),
        "device_id": 7,
        "device_private_key": hx(&DEVICE_SK),
        "device_public_key": hx(&compressed(&device)),
        "other_sender_public_key": hx(&compressed(&other)),
        "vectors": vectors,
    });
    write_or_compare("keydist_signed.json", &doc);
}

#[cfg(feature = "psk")]
#[test]
fn psk_mode_vectors() {
    use group_core::keydist::{
        Psk, encode_psk, open_bundle_secret_psk, seal_secret_psk, verify_psk,
    };
    let psk = Psk(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f");
    let mut rng = TestRng::seeded(0x6b64_7632);
    let psk2 = psk.clone();
    let mut seal = move |_: &mut TestRng, h: &ServerHeader, epoch, suite, m: &KeyMaterial| {
        seal_secret_psk(&psk2, h, epoch, suite, m).unwrap()
    };
    let plans = plans(&mut rng, 8, PublicKeyBytes::new(), None, &mut seal);
    let mut vectors = Vec::new();
    let mut buf = [0u8; 1500];
    for p in plans {
        let from_server = p.message.direction() == Direction::ServerToDevice;
        let n = encode_psk(&p.message, &psk, &mut buf).unwrap();
        let bytes = &buf[..n];
        let pm = verify_psk(bytes, &psk).unwrap();
        assert_eq!(pm.message, p.message);
        if let Message::KeyBundle(b) = &pm.message {
            open_bundle_secret_psk(&psk, b).unwrap();
        }
        vectors.push(json!({
            "name": p.name,
            "kind": kind_number(&p.message),
            "direction": if from_server { "server_to_device" } else { "device_to_server" },
            "mode": 2,
            "length": n,
            "hex": hx(bytes),
            "fields": p.fields,
        }));
    }
    let doc = json!({
        "description": "Key-distribution golden vectors, PSK mode (docs/key-distribution.md). Generated by group-core/tests/keydist_vectors.rs from the fixed PSK below and a seeded RNG; checked independently by scripts/check_keydist_vectors.py.",
        "format_version": 2,
        "device_id": 8,
        "psk": hx(&psk.0),
        "vectors": vectors,
    });
    write_or_compare("keydist_psk.json", &doc);
}

/// The largest bundle with `senders` entries (keyed or not), every stale slot, an echo and
/// wolfSSL material, every varint at its widest; its encoded length.
fn largest_bundle(senders: usize, keys: usize) -> usize {
    let keyed = keys > 0;
    let server = SigningKey::from_slice(&SERVER_SK).unwrap();
    let device = SigningKey::from_slice(&DEVICE_SK).unwrap();
    let mut rng = TestRng::seeded(1);
    let k = Bytes(compressed(&device));
    let senders = (0..senders)
        .map(|i| SenderEntry {
            sender_id: 200u8.wrapping_add(i as u8),
            public_key: (i < keys).then_some(k),
        })
        .collect::<Vec<_>>();
    let header = ServerHeader {
        group_id: u32::MAX,
        device_id: DeviceId(u32::MAX),
        counter: u64::MAX,
    };
    let wolf = KeyMaterial::WolfSsl {
        pms: Bytes([0xff; 64]),
        client_random: [0xff; 32],
        server_random: [0xff; 32],
    };
    let b = KeyBundle {
        header,
        echo: Some([0xff; 16]),
        epoch: u16::MAX,
        suite: u16::MAX,
        sender_id: Some(255),
        policy: BundlePolicy {
            replay_window: u16::MAX,
            admission: WireAdmission::Strict,
            nonce_profile: WireNonceProfile::Compatibility,
            signatures_required: keyed,
            grace_ms: u32::MAX,
            max_fragment_len: u16::MAX,
        },
        activate_in_ms: u32::MAX,
        lifetime_ms: u32::MAX,
        senders: SenderEntries::from_slice(&senders).unwrap(),
        stale: heapless::Vec::from_slice(&[255; MAX_STALE]).unwrap(),
        sealed: seal_secret(&mut rng, device.verifying_key(), &header, 1, 1, &wolf).unwrap(),
    };
    let mut buf = [0u8; 4096];
    match encode_signed(
        &Message::KeyBundle(b),
        &server,
        device.verifying_key(),
        &mut buf,
    ) {
        Ok(n) => n,
        Err(Error::CapacityExceeded) => usize::MAX,
        Err(e) => panic!("{e:?}"),
    }
}

/// The largest messages fit [`MAX_MESSAGE_LEN`]: a bundle with every sender (with its key in a
/// group with record signatures, up to [`MAX_SIGNING_SENDERS`]), every stale slot, an echo and
/// wolfSSL material. One keyed sender more would not fit: that is why signed groups hold fewer.
#[test]
fn worst_case_sizes_fit() {
    let server = SigningKey::from_slice(&SERVER_SK).unwrap();
    let device = SigningKey::from_slice(&DEVICE_SK).unwrap();
    let mut buf = [0u8; 2048];
    let keyed = largest_bundle(MAX_SIGNING_SENDERS, MAX_SIGNING_SENDERS);
    eprintln!("largest signed-group bundle: {keyed} bytes (limit {MAX_MESSAGE_LEN})");
    assert!(keyed <= MAX_MESSAGE_LEN);
    // One keyed entry more adds 35 bytes (sender ID, key tag, key; the count stays one byte).
    assert!(keyed + 35 > MAX_MESSAGE_LEN);
    let plain = largest_bundle(MAX_SENDERS, 0);
    eprintln!("largest bundle without record signatures: {plain} bytes");
    assert!(plain <= MAX_MESSAGE_LEN);
    // A signed group's split list (issue 16): the bundle lists 255 entries, 10 with keys...
    let split = largest_bundle(MAX_SENDERS, SPLIT_BUNDLE_KEYS);
    eprintln!("largest bundle of a split list: {split} bytes");
    assert!(split <= MAX_MESSAGE_LEN);
    assert!(largest_bundle(MAX_SENDERS, SPLIT_BUNDLE_KEYS + 1) > MAX_MESSAGE_LEN);
    // ... and the parts carry up to 32 keys each.
    let part = Message::SenderKeys(SenderKeys {
        header: ServerHeader {
            group_id: u32::MAX,
            device_id: DeviceId(u32::MAX),
            counter: u64::MAX,
        },
        epoch: u16::MAX,
        bundle: u64::MAX,
        first: u8::MAX,
        keys: heapless::Vec::from_slice(&[Bytes(compressed(&device)); MAX_PART_KEYS]).unwrap(),
    });
    let n = encode_signed(&part, &server, device.verifying_key(), &mut buf).unwrap();
    eprintln!("largest sender-keys part: {n} bytes");
    assert!(n <= MAX_MESSAGE_LEN);
    // 255 senders: the bundle's 10 keys and 8 parts.
    assert_eq!((MAX_SENDERS - SPLIT_BUNDLE_KEYS).div_ceil(MAX_PART_KEYS), 8);
    let j = JoinRequest {
        header: DeviceHeader {
            group_id: u32::MAX,
            device_id: DeviceId(u32::MAX),
            nonce: [0xff; 16],
            counter: u64::MAX,
        },
        role: Role::Sender,
        public_key: PublicKeyBytes::from_slice(
            device.verifying_key().to_sec1_point(false).as_bytes(),
        )
        .unwrap(),
        sequence_state_lost: true,
        challenge: Some([0xff; 16]),
    };
    let n = encode_signed(
        &Message::JoinRequest(j),
        &device,
        server.verifying_key(),
        &mut buf,
    )
    .unwrap();
    eprintln!("largest join request (uncompressed key): {n} bytes");
}
