//! Known-answer tests against GnuTLS 3.7.9 (plain DTLS 1.2, PSK, AES-128-CCM_8 and AES-128-CCM).
//!
//! The fixtures (`tests/fixtures/gnutls_psk_aes128_ccm*.json`, copied from the project's shared
//! fixture set) are records a real `gnutls-cli` / `gnutls-serv --echo` pair exchanged, with the
//! keys from the tools' key logs, each record decrypted independently with Python
//! `cryptography`. Plain DTLS 1.2 records are group records with sender ID 0: GnuTLS's 48-bit
//! sequence numbers are small, so their top byte (our sender ID) is 0 and the low 40 bits are
//! our per-sender sequence number.
//!
//! Checked here, in both directions (parse/open and seal/emit), with pass and fail sets:
//! - every application_data record opens with the fixture's write key and IV, statelessly
//!   ([`record::open_in_place`], strict and compatibility profiles) and through a [`Group`]
//!   receiver, to the expected epoch, sender ID, sequence number and plaintext;
//! - resealing the plaintext with the record's epoch and sequence number reproduces the record
//!   byte for byte (GnuTLS's explicit nonce is epoch||seq, as our senders write it);
//! - every tampered copy is rejected, with the reason our layer must give for that tampering;
//! - the encrypted Finished and close_notify records are reported as unsupported content types;
//! - the TLS 1.2 PRF reproduces GnuTLS's key block from the master secret.

use group_core::group::{Group, GroupConfig};
use group_core::record::{self, NonceProfile, OpenError};
use group_core::schedule::tls12_prf_sha256;
use group_core::suite::{EpochCipher, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{self, ContentType, Epoch, SenderId};
use serde::Deserialize;

const CCM8_JSON: &str = include_str!("fixtures/gnutls_psk_aes128_ccm8.json");
const CCM_JSON: &str = include_str!("fixtures/gnutls_psk_aes128_ccm.json");

#[derive(Deserialize)]
struct Fixture {
    cipher_suite_id: String,
    tag_length: usize,
    client_random: String,
    server_random: String,
    master_secret: String,
    key_block: String,
    client_write_key: String,
    server_write_key: String,
    client_write_iv: String,
    server_write_iv: String,
    counts: Counts,
    application_data: Vec<Rec>,
    handshake: Vec<Rec>,
    alerts: Vec<Rec>,
    tampered: Vec<Tampered>,
}

#[derive(Deserialize)]
struct Counts {
    application_data: usize,
    handshake_finished: usize,
    alerts: usize,
    tampered: usize,
}

#[derive(Deserialize)]
struct Rec {
    id: String,
    direction: String,
    content_type: u8,
    epoch: u16,
    sequence_number: u64,
    write_key: String,
    write_iv: String,
    record: String,
    plaintext: String,
    datagram_index: usize,
    record_index_in_datagram: usize,
    expected: String,
}

#[derive(Deserialize)]
struct Tampered {
    id: String,
    tamper: String,
    write_key: String,
    write_iv: String,
    record: String,
    original_record: String,
    expected: String,
}

struct Case {
    name: &'static str,
    suite: Suite,
    fixture: Fixture,
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("fixture hex {s:?}: {e}"))
}

fn cases() -> Vec<Case> {
    let load = |json: &str| -> Fixture { serde_json::from_str(json).expect("fixture parses") };
    vec![
        Case {
            name: "ccm8",
            suite: Suite::AES_128_CCM_8,
            fixture: load(CCM8_JSON),
        },
        Case {
            name: "ccm",
            suite: Suite::AES_128_CCM,
            fixture: load(CCM_JSON),
        },
    ]
}

fn cipher(suite: Suite, key: &str, iv: &str) -> EpochCipher {
    let keys = RecordKeys::new(suite, &unhex(key), &unhex(iv)).expect("fixture key lengths");
    EpochCipher::new(&keys).expect("suite enabled")
}

/// A receiver with the default policy (trust-first, strict nonce profile, no own sender ID)
/// holding `epoch` with the given keys.
fn receiver(suite: Suite, key: &str, iv: &str, epoch: u16) -> Group {
    let keys = RecordKeys::new(suite, &unhex(key), &unhex(iv)).expect("fixture key lengths");
    let mut group: Group = Group::new(GroupConfig::new(0));
    group
        .install_and_activate(Epoch(epoch), &keys, Instant(0))
        .expect("install fixture keys");
    group
}

#[test]
fn fixtures_describe_the_suites_and_are_complete() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        assert_eq!(
            u16::from_str_radix(f.cipher_suite_id.trim_start_matches("0x"), 16).unwrap(),
            suite.0,
            "{name}: fixture suite code point"
        );
        let params = suite.params().unwrap();
        assert_eq!(f.tag_length, params.tag_len, "{name}");
        assert_eq!(
            f.application_data.len(),
            f.counts.application_data,
            "{name}"
        );
        assert_eq!(f.handshake.len(), f.counts.handshake_finished, "{name}");
        assert_eq!(f.alerts.len(), f.counts.alerts, "{name}");
        assert_eq!(f.tampered.len(), f.counts.tampered, "{name}");
        // Both directions are present: two receivers, two key sets.
        for dir in ["client_to_server", "server_to_client"] {
            assert!(
                f.application_data.iter().any(|r| r.direction == dir),
                "{name}: no {dir} records"
            );
        }
    }
}

/// TLS 1.2 PRF (RFC 5246 §5) with SHA-256: key_block = PRF(master_secret, "key expansion",
/// server_random || client_random), laid out by GnuTLS as client_write_key | server_write_key |
/// client_write_IV | server_write_IV (no MAC keys for AEAD suites).
#[test]
fn prf_reproduces_gnutls_key_block() {
    for Case {
        name, fixture: f, ..
    } in cases()
    {
        let expected = unhex(&f.key_block);
        let mut block = vec![0u8; expected.len()];
        tls12_prf_sha256(
            &unhex(&f.master_secret),
            b"key expansion",
            &unhex(&f.server_random),
            &unhex(&f.client_random),
            &mut block,
        );
        assert_eq!(hex::encode(&block), f.key_block, "{name}: key block");
        let (ck, rest) = block.split_at(16);
        let (sk, rest) = rest.split_at(16);
        let (civ, siv) = rest.split_at(4);
        assert_eq!(hex::encode(ck), f.client_write_key, "{name}");
        assert_eq!(hex::encode(sk), f.server_write_key, "{name}");
        assert_eq!(hex::encode(civ), f.client_write_iv, "{name}");
        assert_eq!(hex::encode(siv), f.server_write_iv, "{name}");
        // The per-record keys are the ones of the record's direction.
        for r in &f.application_data {
            let (k, iv) = match r.direction.as_str() {
                "client_to_server" => (&f.client_write_key, &f.client_write_iv),
                "server_to_client" => (&f.server_write_key, &f.server_write_iv),
                other => panic!("{name}: unexpected direction {other}"),
            };
            assert_eq!((&r.write_key, &r.write_iv), (k, iv), "{}", r.id);
        }
        // A prefix of the PRF output is the same whatever the requested length.
        let mut short = [0u8; 16];
        tls12_prf_sha256(
            &unhex(&f.master_secret),
            b"key expansion",
            &unhex(&f.server_random),
            &unhex(&f.client_random),
            &mut short,
        );
        assert_eq!(hex::encode(short), f.client_write_key, "{name}");
    }
}

#[test]
fn application_data_opens_statelessly_in_both_profiles() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        assert!(!f.application_data.is_empty());
        for r in &f.application_data {
            assert_eq!(r.expected, "accept", "{}", r.id);
            assert_eq!(r.content_type, 23, "{}", r.id);
            let c = cipher(suite, &r.write_key, &r.write_iv);
            for profile in [NonceProfile::Strict, NonceProfile::Compatibility] {
                let mut buf = unhex(&r.record);
                let (header, pt) = record::open_in_place(&c, &mut buf, profile)
                    .unwrap_or_else(|e| panic!("{name} {} {profile:?}: {e:?}", r.id));
                assert_eq!(hex::encode(&*pt), r.plaintext, "{} {profile:?}", r.id);
                assert_eq!(header.content_type, ContentType::APPLICATION_DATA);
                assert_eq!(header.epoch, Epoch(r.epoch), "{}", r.id);
                assert_eq!(header.sender_id, SenderId(0), "{}", r.id);
                assert_eq!(header.seq, r.sequence_number, "{}", r.id);
                assert_eq!(header.record_len(), unhex(&r.record).len(), "{}", r.id);
            }
        }
    }
}

/// Each direction is one sender (sender ID 0) seen by one receiver: records open in capture
/// order, and a second copy of each is a replay.
#[test]
fn application_data_opens_through_a_group_receiver() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        let mut streams: Vec<Vec<u8>> = Vec::new();
        for dir in ["client_to_server", "server_to_client"] {
            let mut records: Vec<&Rec> = f
                .application_data
                .iter()
                .filter(|r| r.direction == dir)
                .collect();
            records.sort_by_key(|r| (r.datagram_index, r.record_index_in_datagram));
            let first = records[0];
            let mut rx = receiver(suite, &first.write_key, &first.write_iv, first.epoch);
            let mut stream = Vec::new();
            for r in &records {
                let mut buf = unhex(&r.record);
                let d = rx
                    .open(Instant(0), &mut buf)
                    .unwrap_or_else(|e| panic!("{name} {}: {e:?}", r.id));
                assert_eq!(d.epoch, Epoch(r.epoch), "{}", r.id);
                assert_eq!(d.sender_id, SenderId(0), "{}", r.id);
                assert_eq!(d.seq, r.sequence_number, "{}", r.id);
                assert_eq!(d.content_type, ContentType::APPLICATION_DATA);
                assert_eq!(hex::encode(&*d.plaintext), r.plaintext, "{}", r.id);
                stream.extend_from_slice(d.plaintext);
            }
            for r in &records {
                let mut buf = unhex(&r.record);
                assert_eq!(
                    rx.open(Instant(0), &mut buf).unwrap_err(),
                    OpenError::Replay,
                    "{name} {}: second copy",
                    r.id
                );
            }
            assert_eq!(rx.counters().accepted, records.len() as u64);
            assert_eq!(rx.counters().replay, records.len() as u64);
            streams.push(stream);
        }
        // gnutls-serv --echo re-chunks the client's bytes: only the streams are equal.
        assert_eq!(streams[0], streams[1], "{name}: echo stream");
    }
}

#[test]
fn reseal_reproduces_records_byte_for_byte() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        let all = f
            .application_data
            .iter()
            .chain(&f.handshake)
            .chain(&f.alerts);
        let mut n = 0;
        for r in all {
            let c = cipher(suite, &r.write_key, &r.write_iv);
            let pt = unhex(&r.plaintext);
            let expected = unhex(&r.record);
            // Our sender ID is the top byte of GnuTLS's 48-bit sequence number.
            assert!(r.sequence_number < 1 << 40, "{}", r.id);
            let mut out = vec![0u8; record::record_len(&c, pt.len())];
            let len = record::seal(
                &c,
                ContentType(r.content_type),
                Epoch(r.epoch),
                SenderId(0),
                r.sequence_number,
                &pt,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{name} {}: {e:?}", r.id));
            assert_eq!(len, expected.len(), "{}", r.id);
            assert_eq!(hex::encode(&out[..len]), r.record, "{name} {}", r.id);
            n += 1;
        }
        assert_eq!(
            n,
            f.counts.application_data + f.counts.handshake_finished + f.counts.alerts
        );
    }
}

/// What our layer must say about each kind of tampering GnuTLS's fixture generator applied,
/// decided from the tamper kind and the tampered bytes alone: `(strict, compatibility)`.
fn expected_rejection(tamper: &str, record: &[u8]) -> (OpenError, OpenError) {
    use OpenError::*;
    match tamper {
        // The tag does not verify.
        "ciphertext_bitflip" | "tag_bitflip" | "wrong_direction_keys" => {
            (AuthenticationFailed, AuthenticationFailed)
        }
        // Length fixed up, so the framing is consistent; the tag is one byte short of the
        // original and does not verify.
        "truncated_by_one" => (AuthenticationFailed, AuthenticationFailed),
        // The explicit nonce no longer equals epoch||seq (or the header seq no longer equals
        // the explicit nonce): the strict profile refuses before decrypting; the compatibility
        // profile decrypts with the carried nonce and the tag (or the AAD) fails.
        "explicit_nonce_bitflip" | "header_seq_bitflip" => (NonceMismatch, AuthenticationFailed),
        // 23 -> 22: a handshake record, parsed and reported, not processed.
        "header_type_bitflip" => (
            UnsupportedContentType(ContentType::HANDSHAKE),
            UnsupportedContentType(ContentType::HANDSHAKE),
        ),
        // The length field no longer matches the bytes: it announces more than follows
        // (truncated) or less (bytes after the one record expected).
        "header_length_bitflip" => {
            let declared = usize::from(u16::from_be_bytes([record[11], record[12]]));
            let actual = record.len() - wire::HEADER_LEN;
            assert_ne!(declared, actual, "a length tamper changes the length");
            let e = if declared > actual {
                wire::Error::Truncated
            } else {
                wire::Error::TrailingBytes
            };
            (Malformed(e), Malformed(e))
        }
        other => panic!("unknown tamper kind {other}"),
    }
}

#[test]
fn every_tampered_record_is_rejected_statelessly() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        assert!(!f.tampered.is_empty());
        for t in &f.tampered {
            assert_eq!(t.expected, "reject", "{}", t.id);
            if t.tamper == "wrong_direction_keys" {
                // The record is intact; the keys are the other direction's.
                assert_eq!(t.record, t.original_record, "{}", t.id);
            } else {
                assert_ne!(t.record, t.original_record, "{}", t.id);
            }
            let c = cipher(suite, &t.write_key, &t.write_iv);
            let (strict, compat) = expected_rejection(&t.tamper, &unhex(&t.record));
            for (profile, want) in [
                (NonceProfile::Strict, strict),
                (NonceProfile::Compatibility, compat),
            ] {
                let mut buf = unhex(&t.record);
                let got = record::open_in_place(&c, &mut buf, profile)
                    .map(|(h, _)| h)
                    .expect_err(&format!("{name} {} {profile:?} accepted", t.id));
                assert_eq!(got, want, "{} {profile:?}", t.id);
                if got == OpenError::AuthenticationFailed {
                    // The would-be plaintext is wiped: nothing of it reaches the caller.
                    let ct_start = wire::HEADER_LEN + 8;
                    let tag_len = suite.params().unwrap().tag_len;
                    let ct_end = buf.len() - tag_len;
                    assert!(
                        buf[ct_start..ct_end].iter().all(|&b| b == 0),
                        "{}: plaintext not wiped",
                        t.id
                    );
                }
            }
        }
    }
}

/// Through a receiver: the tampered copy is dropped and counted, and it changes no state: the
/// genuine record still opens afterwards, once.
#[test]
fn every_tampered_record_is_dropped_by_a_receiver_without_changing_state() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        for t in &f.tampered {
            let (strict, _) = expected_rejection(&t.tamper, &unhex(&t.record));
            let original = unhex(&t.original_record);
            let epoch = wire::RecordHeader::parse(&original).unwrap().epoch;
            let mut rx = receiver(suite, &t.write_key, &t.write_iv, epoch.0);
            let mut buf = unhex(&t.record);
            let got = rx
                .open(Instant(0), &mut buf)
                .map(|d| d.seq)
                .expect_err(&format!("{name} {} accepted", t.id));
            assert_eq!(got, strict, "{}", t.id);
            assert_eq!(rx.counters().dropped(), 1, "{}", t.id);
            assert_eq!(rx.counters().accepted, 0, "{}", t.id);
            if t.tamper == "wrong_direction_keys" {
                continue;
            }
            let mut buf = original.clone();
            assert!(rx.open(Instant(0), &mut buf).is_ok(), "{}: original", t.id);
            let mut buf = original;
            assert_eq!(
                rx.open(Instant(0), &mut buf).unwrap_err(),
                OpenError::Replay
            );
        }
    }
}

#[test]
fn handshake_and_alert_records_are_unsupported_content_types() {
    for Case {
        name,
        suite,
        fixture: f,
    } in cases()
    {
        let others: Vec<&Rec> = f.handshake.iter().chain(&f.alerts).collect();
        assert_eq!(others.len(), 3, "{name}: two Finished, one close_notify");
        for r in others {
            let ct = ContentType(r.content_type);
            assert!(
                ct == ContentType::HANDSHAKE || ct == ContentType::ALERT,
                "{}",
                r.id
            );
            let c = cipher(suite, &r.write_key, &r.write_iv);
            let mut buf = unhex(&r.record);
            let err = record::open_in_place(&c, &mut buf, NonceProfile::Strict)
                .map(|(h, _)| h)
                .unwrap_err();
            assert_eq!(err, OpenError::UnsupportedContentType(ct), "{}", r.id);
            let mut rx = receiver(suite, &r.write_key, &r.write_iv, r.epoch);
            let mut buf = unhex(&r.record);
            let err = rx.open(Instant(0), &mut buf).map(|d| d.seq).unwrap_err();
            assert_eq!(err, OpenError::UnsupportedContentType(ct), "{}", r.id);
            assert_eq!(rx.counters().unsupported_content_type, 1);
            // They are still well-formed records under these keys: the lower layers parse and
            // decrypt them to what GnuTLS sent (Finished, close_notify).
            let mut buf = unhex(&r.record);
            let parsed = record::parse(&c, &buf, NonceProfile::Strict, 0).expect(&r.id);
            assert_eq!(parsed.header.seq, r.sequence_number);
            let pt = record::decrypt(&c, &parsed, &mut buf).expect(&r.id);
            assert_eq!(hex::encode(&*pt), r.plaintext, "{}", r.id);
            // Relabelled as application data, the AAD no longer matches: the tag fails.
            let mut buf = unhex(&r.record);
            buf[0] = ContentType::APPLICATION_DATA.0;
            let err = record::open_in_place(&c, &mut buf, NonceProfile::Strict)
                .map(|(h, _)| h)
                .unwrap_err();
            assert_eq!(err, OpenError::AuthenticationFailed, "{} as app data", r.id);
        }
    }
}
