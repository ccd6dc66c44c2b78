//! Canonical decoding of key-distribution messages and key material (issue 10, fuzzing note):
//! every byte string that decodes is the one the encoder writes for what it decodes to. An
//! outside fuzzing run found key material whose encoding decoded but did not re-encode to the
//! same bytes (postcard accepts non-minimal varints); such inputs, and non-canonical message
//! bodies, are refused with `Error::NonCanonical`, even under a valid signature.

mod keydist_support;

use group_core::keydist::{
    Ack, DeviceCredential, DeviceHeader, DeviceId, Error, GroupSpec, KeyMaterial, KeyServer,
    MemoryServerStore, Message, Role, SIGN_LABEL, ServerCredentials, VERSION, decode_key_material,
    encode_key_material, encode_signed, parse, verify_signed,
};
use group_core::suite::Suite;
use group_core::time::Instant;
use keydist_support::{TestRng, key};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

fn material_bytes(m: &KeyMaterial) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = encode_key_material(m, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn key_material_decodes_only_from_its_canonical_encoding() {
    let native = KeyMaterial::Native { secret: [0x5a; 32] };
    let bytes = material_bytes(&native);
    assert_eq!(bytes[0], 0x00);
    assert_eq!(decode_key_material(&bytes).unwrap(), native);
    // The variant tag as a non-minimal varint (80 00 = 0, 80 80 00 = 0): decodes to the same
    // material under postcard, but is not its encoding.
    for prefix in [&[0x80u8, 0x00][..], &[0x80, 0x80, 0x00]] {
        let mut t = prefix.to_vec();
        t.extend_from_slice(&bytes[1..]);
        assert_eq!(
            decode_key_material(&t),
            Err(Error::NonCanonical),
            "{prefix:02x?}"
        );
    }
    let wolf = KeyMaterial::WolfSsl {
        pms: group_core::keydist::Bytes([1; 64]),
        client_random: [2; 32],
        server_random: [3; 32],
    };
    let wb = material_bytes(&wolf);
    assert_eq!(decode_key_material(&wb).unwrap(), wolf);
    let mut t = vec![0x81, 0x00];
    t.extend_from_slice(&wb[1..]);
    assert_eq!(decode_key_material(&t), Err(Error::NonCanonical));
    // Trailing bytes, truncation.
    let mut t = bytes.clone();
    t.push(0);
    assert_eq!(decode_key_material(&t), Err(Error::TrailingBytes));
    assert_eq!(
        decode_key_material(&bytes[..bytes.len() - 1]),
        Err(Error::Truncated)
    );
}

/// Signs `protected` as a device → server message (the test holds the device key), so the
/// only thing wrong with the result is its encoding.
fn sign_device(device: &SigningKey, server: &VerifyingKey, protected: &[u8]) -> Vec<u8> {
    let peer = server.to_sec1_point(true);
    let mut input = SIGN_LABEL.to_vec();
    input.push(1);
    input.extend_from_slice(peer.as_bytes());
    input.extend_from_slice(protected);
    let sig: Signature = device.sign(&input);
    let sig = sig.normalize_s();
    let mut out = protected.to_vec();
    out.extend_from_slice(&sig.to_bytes());
    out
}

#[test]
fn non_canonical_message_bodies_are_refused_even_when_signed() {
    let server_key = key(0xEE);
    let device = key(1);
    let ack = Message::Ack(Ack {
        header: DeviceHeader {
            group_id: 0x2a,
            device_id: DeviceId(1),
            nonce: [7; 16],
            counter: 5,
        },
        epoch: 3,
    });
    let mut buf = [0u8; 1500];
    let n = encode_signed(&ack, &device, server_key.verifying_key(), &mut buf).unwrap();
    let good = buf[..n].to_vec();
    let pm = verify_signed(&good, device.verifying_key(), server_key.verifying_key()).unwrap();
    assert_eq!(pm.message, ack);
    let body = pm.protected[2..].to_vec();
    // body = 02 (kind) 2a (group) 01 (device) nonce[16] 05 (counter) 03 (epoch)
    assert_eq!(&body[..3], &[0x02, 0x2a, 0x01]);
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("kind as 82 00", [&[0x82, 0x00][..], &body[1..]].concat()),
        (
            "group id as aa 00",
            [&body[..1], &[0xaa, 0x00][..], &body[2..]].concat(),
        ),
        (
            "device id as 81 80 00",
            [&body[..2], &[0x81, 0x80, 0x00][..], &body[3..]].concat(),
        ),
        (
            "epoch as 83 00",
            [&body[..body.len() - 1], &[0x83, 0x00][..]].concat(),
        ),
    ];
    for (what, b) in &variants {
        let protected = [&[VERSION, 1][..], b].concat();
        let signed = sign_device(&device, server_key.verifying_key(), &protected);
        // The signature is valid over these bytes; the encoding is not the canonical one.
        assert_eq!(parse(&signed).err(), Some(Error::NonCanonical), "{what}");
        assert_eq!(
            verify_signed(&signed, device.verifying_key(), server_key.verifying_key()).err(),
            Some(Error::NonCanonical),
            "{what}"
        );
    }
    // Bytes between the body and the trailer.
    let protected = [&[VERSION, 1][..], &body, &[0x00]].concat();
    let signed = sign_device(&device, server_key.verifying_key(), &protected);
    assert_eq!(parse(&signed).err(), Some(Error::TrailingBytes));

    // The key server refuses them before anything else, and accepts the canonical one.
    let mut server: KeyServer<MemoryServerStore> = KeyServer::open(
        ServerCredentials::new(server_key.clone()),
        MemoryServerStore::new(),
    )
    .unwrap();
    let mut rng = TestRng::seeded(4);
    server
        .create_group(
            GroupSpec::new(0x2a, Suite::AES_128_CCM),
            Instant(0),
            &mut rng,
        )
        .unwrap();
    server
        .admit_device(
            DeviceId(1),
            DeviceCredential::public_key(device.verifying_key()),
            Role::Sender,
            &[0x2a],
        )
        .unwrap();
    let (_, b) = &variants[1];
    let protected = [&[VERSION, 1][..], b].concat();
    let signed = sign_device(&device, server_key.verifying_key(), &protected);
    assert_eq!(
        server.handle_message(Instant(0), &mut rng, &signed),
        Err(Error::NonCanonical)
    );
    // (The genuine ack is refused for what it says, not how it is encoded: not a member.)
    assert_eq!(
        server.handle_message(Instant(0), &mut rng, &good),
        Err(Error::NotMember)
    );
}

/// The reference for `decode_key_material`: postcard's own decoder, then the canonical check
/// (the re-encoding must be the input), with postcard's errors mapped as the library maps them.
fn postcard_decode(bytes: &[u8]) -> Result<KeyMaterial, Error> {
    let (m, left) = postcard::take_from_bytes::<KeyMaterial>(bytes).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => Error::Truncated,
        _ => Error::Malformed,
    })?;
    if !left.is_empty() {
        return Err(Error::TrailingBytes);
    }
    if material_bytes(&m) != bytes {
        return Err(Error::NonCanonical);
    }
    Ok(m)
}

proptest::proptest! {
    /// The hand-written key-material reader answers as postcard does for every input: the
    /// same material, or the same error (`Truncated`, `Malformed`, `TrailingBytes`,
    /// `NonCanonical`). Inputs start with a variant index written in 1 to 6 varint bytes
    /// (canonical, overlong, overflowing), then any body around the two variants' lengths.
    #[test]
    fn key_material_reader_agrees_with_postcard(
        index in proptest::prop_oneof![0u64..3, 0u64..(1 << 35)],
        overlong in 0usize..3,
        last_high in proptest::bool::ANY,
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..140),
        cut in 0usize..140,
    ) {
        let mut input = Vec::new();
        let mut v = index;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 && overlong == 0 {
                input.push(if last_high && input.len() == 4 { byte | 0x10 } else { byte });
                break;
            }
            input.push(byte | 0x80);
            if v == 0 {
                input.extend(std::iter::repeat_n(0x80u8, overlong - 1));
                input.push(0);
                break;
            }
        }
        input.extend_from_slice(&body[..cut.min(body.len())]);
        proptest::prop_assert_eq!(decode_key_material(&input), postcard_decode(&input));
        // Exact-length bodies too (random ones rarely are 32 or 128 bytes long).
        for len in [32usize, 128] {
            if body.len() >= len {
                let mut exact = input[..input.len() - cut.min(body.len())].to_vec();
                exact.extend_from_slice(&body[..len]);
                proptest::prop_assert_eq!(decode_key_material(&exact), postcard_decode(&exact));
            }
        }
    }
}
