//! Property tests of the key-distribution encoding (docs/key-distribution.md §2–§3).
//!
//! - Every message of every kind, with arbitrary field values, encodes (signed) to at most
//!   `MAX_MESSAGE_LEN` bytes that parse back to the same message and verify; changing any one
//!   byte makes verification fail.
//! - Key material round-trips; trailing bytes are refused.
//! - `parse` of arbitrary bytes never panics and, when it accepts, the message re-encodes to
//!   exactly the body parsed (decoding is canonical).
//! - The member's hand-written writer of device messages (`write_device_body`) writes exactly
//!   postcard's bytes for every device message (varints at every length boundary), refuses a
//!   short buffer with `BufferTooSmall`, and what it protects verifies and parses at the key
//!   server in both modes.
//! - The member's borrowing decoder (`parse_server`) agrees with `parse` on every valid message
//!   (the `SenderKeys` parts of split sender lists included) and on every mutation of one (the same accepted, the same fields; device kinds are
//!   `UnexpectedKind`), and never panics.

mod keydist_support;

use group_core::keydist::{
    Ack, BundlePolicy, Bytes, DeviceHeader, DeviceId, Direction, Error, JoinChallenge, JoinRequest,
    KeyBundle, KeyMaterial, Leave, MAX_MESSAGE_LEN, MAX_PART_KEYS, MAX_SIGNING_SENDERS, MAX_STALE,
    Message, PublicKeyBytes, RekeyNeeded, RekeyReport, Removed, RemovedReason, Role, SealedSecret,
    SenderEntries, SenderEntry, SenderKeys, ServerHeader, ServerMessage, VERSION, WireAdmission,
    WireNonceProfile, decode_key_material, encode_key_material, encode_signed, parse, parse_server,
    verify_signed, write_device_body,
};
#[cfg(feature = "psk")]
use group_core::keydist::{Psk, encode_psk, verify_psk};
use keydist_support::key;
use proptest::prelude::*;

fn dev_header() -> impl Strategy<Value = DeviceHeader> {
    (any::<u32>(), any::<u32>(), any::<[u8; 16]>(), any::<u64>()).prop_map(|(g, d, n, c)| {
        DeviceHeader {
            group_id: g,
            device_id: DeviceId(d),
            nonce: n,
            counter: c,
        }
    })
}

fn srv_header() -> impl Strategy<Value = ServerHeader> {
    (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(g, d, c)| ServerHeader {
        group_id: g,
        device_id: DeviceId(d),
        counter: c,
    })
}

fn key33() -> impl Strategy<Value = Bytes<33>> {
    proptest::collection::vec(any::<u8>(), 33).prop_map(|v| Bytes(v.try_into().unwrap()))
}

fn bundle() -> impl Strategy<Value = KeyBundle> {
    (
        srv_header(),
        proptest::option::of(any::<[u8; 16]>()),
        (
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(any::<u8>()),
        ),
        (
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u16>(),
        ),
        (any::<u32>(), any::<u32>()),
        proptest::collection::vec(
            (any::<u8>(), proptest::option::of(key33())),
            // Keyed or not at random: as many as a signed group's bundle holds.
            0..=MAX_SIGNING_SENDERS,
        ),
        proptest::collection::vec(any::<u8>(), 0..=MAX_STALE),
        (
            proptest::option::of(key33()),
            proptest::collection::vec(any::<u8>(), 0..=160),
        ),
    )
        .prop_map(
            |(header, echo, (epoch, suite, sid), p, (act, life), senders, stale, (eph, ct))| {
                KeyBundle {
                    header,
                    echo,
                    epoch,
                    suite,
                    sender_id: sid,
                    policy: BundlePolicy {
                        replay_window: p.0,
                        admission: if p.1 {
                            WireAdmission::Strict
                        } else {
                            WireAdmission::TrustFirst
                        },
                        nonce_profile: if p.2 {
                            WireNonceProfile::Compatibility
                        } else {
                            WireNonceProfile::Strict
                        },
                        signatures_required: p.3,
                        grace_ms: p.4,
                        max_fragment_len: p.5,
                    },
                    activate_in_ms: act,
                    lifetime_ms: life,
                    senders: SenderEntries::from_slice(
                        &senders
                            .into_iter()
                            .map(|(s, k)| SenderEntry {
                                sender_id: s,
                                public_key: k,
                            })
                            .collect::<Vec<_>>(),
                    )
                    .unwrap(),
                    stale: heapless::Vec::from_slice(&stale).unwrap(),
                    sealed: SealedSecret {
                        ephemeral: eph,
                        ciphertext: heapless::Vec::from_slice(&ct).unwrap(),
                    },
                }
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            dev_header(),
            any::<bool>(),
            prop_oneof![Just(0usize), Just(33), Just(65)],
            any::<bool>(),
            any::<Option<[u8; 16]>>()
        )
            .prop_map(
                |(header, sender, klen, lost, challenge)| Message::JoinRequest(JoinRequest {
                    header,
                    role: if sender { Role::Sender } else { Role::Listener },
                    public_key: PublicKeyBytes::from_slice(&[0x02; 65][..klen]).unwrap(),
                    sequence_state_lost: lost,
                    challenge,
                })
            ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>()
        )
            .prop_map(
                |(group_id, device, echo, challenge)| Message::JoinChallenge(JoinChallenge {
                    group_id,
                    device_id: DeviceId(device),
                    echo,
                    challenge,
                })
            ),
        bundle().prop_map(Message::KeyBundle),
        (dev_header(), any::<u16>())
            .prop_map(|(header, epoch)| Message::Ack(Ack { header, epoch })),
        dev_header().prop_map(|header| Message::Leave(Leave { header })),
        (dev_header(), any::<u16>(), 0..6usize).prop_map(|(header, epoch, r)| {
            Message::RekeyNeeded(RekeyNeeded {
                header,
                epoch,
                reason: [
                    RekeyReport::SenderBudget,
                    RekeyReport::GroupUsage,
                    RekeyReport::SequenceExhausted,
                    RekeyReport::IntegrityLimit,
                    RekeyReport::Expired,
                    RekeyReport::Requested,
                ][r],
            })
        }),
        (
            srv_header(),
            any::<u16>(),
            any::<u64>(),
            any::<u8>(),
            proptest::collection::vec(key33(), 0..=MAX_PART_KEYS)
        )
            .prop_map(|(header, epoch, bundle, first, keys)| {
                Message::SenderKeys(SenderKeys {
                    header,
                    epoch,
                    bundle,
                    first,
                    keys: heapless::Vec::from_slice(&keys).unwrap(),
                })
            }),
        (srv_header(), any::<bool>()).prop_map(|(header, revoked)| Message::Removed(Removed {
            header,
            reason: if revoked {
                RemovedReason::Revoked
            } else {
                RemovedReason::Left
            },
        })),
    ]
}

/// A varint's value, with every encoded length equally likely: `2^k - 1` and `2^k` for every
/// `k` up to `bits` (the last value of each length and the first of the next), small values,
/// and anything.
fn varint(bits: u32) -> impl Strategy<Value = u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    prop_oneof![
        (0..bits).prop_map(|k| 1u64 << k),
        (0..=bits).prop_map(|k| if k == 64 { u64::MAX } else { (1u64 << k) - 1 }),
        0..300u64,
        any::<u64>(),
    ]
    .prop_map(move |v| v & max)
}

fn boundary_header() -> impl Strategy<Value = DeviceHeader> {
    (varint(32), varint(32), any::<[u8; 16]>(), varint(64)).prop_map(|(g, d, n, c)| DeviceHeader {
        group_id: g as u32,
        device_id: DeviceId(d as u32),
        nonce: n,
        counter: c,
    })
}

/// Device messages only, every field a varint takes at its length boundaries.
fn device_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            boundary_header(),
            any::<bool>(),
            prop_oneof![Just(0usize), Just(33), Just(65)],
            any::<bool>(),
            any::<Option<[u8; 16]>>(),
            any::<u8>()
        )
            .prop_map(
                |(header, sender, klen, lost, challenge, k)| Message::JoinRequest(JoinRequest {
                    header,
                    role: if sender { Role::Sender } else { Role::Listener },
                    public_key: PublicKeyBytes::from_slice(&[k; 65][..klen]).unwrap(),
                    sequence_state_lost: lost,
                    challenge,
                })
            ),
        (boundary_header(), varint(16)).prop_map(|(header, epoch)| Message::Ack(Ack {
            header,
            epoch: epoch as u16
        })),
        boundary_header().prop_map(|header| Message::Leave(Leave { header })),
        (boundary_header(), varint(16), 0..6usize).prop_map(|(header, epoch, r)| {
            Message::RekeyNeeded(RekeyNeeded {
                header,
                epoch: epoch as u16,
                reason: [
                    RekeyReport::SenderBudget,
                    RekeyReport::GroupUsage,
                    RekeyReport::SequenceExhausted,
                    RekeyReport::IntegrityLimit,
                    RekeyReport::Expired,
                    RekeyReport::Requested,
                ][r],
            })
        }),
    ]
}

/// `parse` and the borrowing `parse_server` agree on `bytes`: a server message either decodes
/// to the same fields in both or is refused by both; a device message is `UnexpectedKind` for
/// `parse_server`.
fn decoders_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    match (parse(bytes), parse_server(bytes)) {
        (Ok(pm), Ok(v)) => {
            prop_assert_eq!(pm.mode, v.mode);
            prop_assert_eq!(pm.protected, v.protected);
            prop_assert_eq!(pm.trailer, v.trailer);
            match (&pm.message, &v.message) {
                (Message::KeyBundle(b), ServerMessage::KeyBundle(bv)) => {
                    prop_assert_eq!(&bv.to_bundle().unwrap(), b);
                    prop_assert_eq!(
                        bv.senders.iter().collect::<Vec<_>>(),
                        b.senders.iter().collect::<Vec<_>>()
                    );
                }
                (Message::Removed(a), ServerMessage::Removed(b)) => prop_assert_eq!(a, b),
                (Message::JoinChallenge(a), ServerMessage::JoinChallenge(b)) => {
                    prop_assert_eq!(a, b)
                }
                (Message::SenderKeys(a), ServerMessage::SenderKeys(b)) => {
                    prop_assert_eq!(&b.to_owned_part().unwrap(), a);
                    prop_assert_eq!(b.len(), a.keys.len());
                }
                (a, b) => prop_assert!(false, "{a:?} decoded as {b:?}"),
            }
        }
        (Ok(pm), Err(e)) => {
            prop_assert_eq!(pm.message.direction(), Direction::DeviceToServer);
            prop_assert_eq!(e, Error::UnexpectedKind);
        }
        (Err(e), Ok(v)) => {
            prop_assert!(false, "parse refused ({e:?}) what parse_server took: {v:?}")
        }
        (Err(_), Err(_)) => {}
    }
    Ok(())
}

/// One edit of an encoded message: set a byte, cut it short, insert or remove a byte, or
/// widen a one-byte varint into a non-minimal two-byte one (`05` -> `85 00`).
fn mutate(bytes: &mut Vec<u8>, what: u8, at: usize, value: u8) {
    if bytes.is_empty() {
        return;
    }
    let i = at % bytes.len();
    match what % 5 {
        0 => bytes[i] = value,
        1 => bytes.truncate(i),
        2 => bytes.insert(i, value),
        3 => {
            bytes.remove(i);
        }
        _ => {
            if bytes[i] < 0x80 {
                bytes[i] |= 0x80;
                bytes.insert(i + 1, 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_message_round_trips_and_every_byte_counts(m in message(), at in any::<prop::sample::Index>()) {
        let (server, device) = (key(0xEE), key(7));
        let (signer, peer) = if m.direction() == Direction::ServerToDevice { (&server, &device) } else { (&device, &server) };
        let mut buf = [0u8; 2048];
        let n = encode_signed(&m, signer, peer.verifying_key(), &mut buf).unwrap();
        prop_assert!(n <= MAX_MESSAGE_LEN);
        let pm = verify_signed(&buf[..n], signer.verifying_key(), peer.verifying_key()).unwrap();
        prop_assert_eq!(&pm.message, &m);
        let i = at.index(n);
        let mut t = buf[..n].to_vec();
        t[i] ^= 0x01;
        prop_assert!(verify_signed(&t, signer.verifying_key(), peer.verifying_key()).is_err());
    }

    #[test]
    fn key_material_round_trips(native in any::<bool>(), a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), extra in 1..4usize) {
        let m = if native {
            KeyMaterial::Native { secret: a }
        } else {
            let mut pms = [0u8; 64];
            pms[..32].copy_from_slice(&a);
            pms[32..].copy_from_slice(&b);
            KeyMaterial::WolfSsl { pms: Bytes(pms), client_random: b, server_random: a }
        };
        let mut buf = [0u8; 256];
        let n = encode_key_material(&m, &mut buf).unwrap();
        prop_assert_eq!(decode_key_material(&buf[..n]).unwrap(), m);
        prop_assert_eq!(decode_key_material(&buf[..n + extra]), Err(Error::TrailingBytes));
        if n > 1 {
            prop_assert!(decode_key_material(&buf[..n - 1]).is_err());
        }
    }

    #[test]
    fn parse_never_panics_and_is_a_function(bytes in proptest::collection::vec(any::<u8>(), 0..400), signed in any::<bool>()) {
        let mut bytes = bytes;
        if bytes.len() >= 2 {
            bytes[0] = VERSION;
            bytes[1] = if signed { 1 } else { 2 };
        }
        if let Ok(pm) = parse(&bytes) {
            // Re-encoding gives a canonical body that decodes to the same message.
            let body = &pm.protected[2..];
            let mut out = [0u8; 2048];
            let again = postcard::to_slice(&pm.message, &mut out).unwrap();
            // Canonical decoding: what parses is exactly what the encoder writes.
            prop_assert_eq!(&*again, body);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn borrowing_decode_equals_serde_decode(m in message(), edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..8)) {
        let (server, device) = (key(0xEE), key(7));
        let (signer, peer) = if m.direction() == Direction::ServerToDevice { (&server, &device) } else { (&device, &server) };
        let mut buf = [0u8; 2048];
        let n = encode_signed(&m, signer, peer.verifying_key(), &mut buf).unwrap();
        // The valid message: the same fields (or UnexpectedKind for a device kind).
        decoders_agree(&buf[..n])?;
        if m.direction() == Direction::ServerToDevice {
            prop_assert!(parse_server(&buf[..n]).is_ok());
        } else {
            prop_assert_eq!(parse_server(&buf[..n]).unwrap_err(), Error::UnexpectedKind);
        }
        // Its mutations: both refuse, or both accept the same fields.
        let mut t = buf[..n].to_vec();
        for (what, at, value) in edits {
            mutate(&mut t, what, at, value);
            decoders_agree(&t)?;
        }
    }

    #[test]
    fn borrowing_decode_of_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400), kind in prop_oneof![Just(1u8), Just(5), Just(6), Just(7), any::<u8>()], signed in any::<bool>()) {
        let mut bytes = bytes;
        if bytes.len() >= 3 {
            bytes[0] = VERSION;
            bytes[1] = if signed { 1 } else { 2 };
            bytes[2] = kind;
        }
        decoders_agree(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The member writes device messages by hand (no serde in a member): the same bytes as
    /// postcard's encoder, so the key server's decoder takes exactly what it took before.
    #[test]
    fn hand_written_device_bodies_equal_postcard(m in prop_oneof![device_message(), message()], cut in any::<prop::sample::Index>()) {
        let mut want = [0u8; 2048];
        let want: &[u8] = postcard::to_slice(&m, &mut want).unwrap();
        let Some(d) = m.as_device() else {
            prop_assert_eq!(m.direction(), Direction::ServerToDevice);
            return Ok(());
        };
        prop_assert_eq!(m.direction(), Direction::DeviceToServer);
        let mut got = [0u8; 2048];
        let n = write_device_body(d, &mut got).unwrap();
        prop_assert_eq!(&got[..n], want);
        // A shorter buffer: refused, never a panic or a partial success.
        let short = cut.index(n);
        prop_assert_eq!(write_device_body(d, &mut got[..short]), Err(Error::BufferTooSmall));
        // Protected in either mode, it verifies and parses back at the key server.
        let mut buf = [0u8; 2048];
        #[cfg(feature = "psk")]
        {
            let psk = Psk([0x42; 16]);
            let n = encode_psk(&m, &psk, &mut buf).unwrap();
            prop_assert_eq!(&buf[2..n - 16], want);
            prop_assert_eq!(&verify_psk(&buf[..n], &psk).unwrap().message, &m);
        }
        let (device, server) = (key(7), key(0xEE));
        let n = encode_signed(&m, &device, server.verifying_key(), &mut buf).unwrap();
        prop_assert_eq!(&buf[2..n - 64], want);
        prop_assert_eq!(&verify_signed(&buf[..n], device.verifying_key(), server.verifying_key()).unwrap().message, &m);
    }
}
