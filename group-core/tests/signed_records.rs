//! Source authentication (wire-format.md §8): a member holding the group key but not sender S's
//! private key can't produce a record others accept as S.

use group_core::group::{Group, GroupConfig, SIGNATURE_LEN};
use group_core::record::{self, OpenError, RecordId, SealError};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{EpochCipher, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{ContentType, Epoch, SenderId};
use p256::ecdsa::SigningKey;

const GID: u32 = 9;

fn keys() -> RecordKeys {
    native_keys(GID, Epoch(1), Suite::AES_128_CCM_8, &EpochSecret([7; 32])).unwrap()
}

fn signing_key(b: u8) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[31] = b;
    bytes[0] = 0x11;
    SigningKey::from_slice(&bytes).unwrap()
}

fn member(sid: Option<u8>) -> Group {
    let mut cfg = GroupConfig::new(GID).with_signatures();
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    g.install_and_activate(Epoch(1), &keys(), Instant(0))
        .unwrap();
    for s in 1..=2u8 {
        g.set_sender_key(SenderId(s), *signing_key(s).verifying_key())
            .unwrap();
    }
    if let Some(s) = sid {
        g.set_signing_key(signing_key(s));
    }
    g
}

#[test]
fn signed_records_open_and_forgeries_are_refused() {
    let mut a = member(Some(1));
    let mut light = member(None);
    let mut store = MemorySequenceStore::commissioned();
    let mut buf = [0u8; 256];
    let n = a.seal(Instant(0), &mut store, b"on", &mut buf).unwrap();
    assert_eq!(n, 13 + 8 + 2 + 8 + SIGNATURE_LEN);
    assert_eq!(a.record_len(2).unwrap(), n);
    let rec = buf[..n].to_vec();
    let mut r = rec.clone();
    assert_eq!(light.open(Instant(0), &mut r).unwrap().plaintext, b"on");

    // Every single-bit change anywhere in the record is refused.
    for i in 0..n {
        let mut light = member(None);
        let mut r = rec.clone();
        r[i] ^= 0x01;
        assert!(
            light.open(Instant(0), &mut r).is_err(),
            "bit flip at byte {i} accepted"
        );
    }

    // Member 2 holds the group key but not member 1's signing key: it seals a valid AEAD
    // record claiming sid 1 and signs it with its own key.
    let cipher = EpochCipher::new(&keys()).unwrap();
    let mut forged = [0u8; 256];
    forged[21..24].copy_from_slice(b"off");
    let len = record::seal_in_place_with_trailer(
        &cipher,
        ContentType::APPLICATION_DATA,
        RecordId {
            epoch: Epoch(1),
            sender_id: SenderId(1),
            seq: 77,
        },
        &mut forged,
        3,
        SIGNATURE_LEN,
    )
    .unwrap();
    use p256::ecdsa::signature::Signer;
    let sig: p256::ecdsa::Signature = signing_key(2).sign(&forged[..len]);
    forged[len..len + 64].copy_from_slice(&sig.normalize_s().to_bytes());
    let mut f = forged[..len + 64].to_vec();
    assert_eq!(
        light.open(Instant(0), &mut f),
        Err(OpenError::AuthenticationFailed)
    );
    // The same record signed by member 1's key is accepted: the AEAD part was fine.
    let sig: p256::ecdsa::Signature = signing_key(1).sign(&forged[..len]);
    forged[len..len + 64].copy_from_slice(&sig.normalize_s().to_bytes());
    let mut f = forged[..len + 64].to_vec();
    assert_eq!(light.open(Instant(0), &mut f).unwrap().plaintext, b"off");

    // A high-S re-encoding of a valid signature is refused (no second valid encoding).
    let sig: p256::ecdsa::Signature = signing_key(1).sign(&forged[..len]);
    let low = sig.normalize_s();
    let s_neg = (-*low.s()).to_bytes();
    let high = p256::ecdsa::Signature::from_scalars(low.r().to_bytes(), s_neg).unwrap();
    forged[len..len + 64].copy_from_slice(&high.to_bytes());
    let mut light2 = member(None);
    let mut f = forged[..len + 64].to_vec();
    assert_eq!(
        light2.open(Instant(0), &mut f),
        Err(OpenError::AuthenticationFailed)
    );
}

#[test]
fn unsigned_record_in_signed_group_and_unknown_sender_are_refused() {
    let mut light = member(None);
    // An unsigned record from a non-signing group member.
    let mut plain: Group = Group::new(GroupConfig::new(GID).with_sender_id(SenderId(1)));
    plain
        .install_and_activate(Epoch(1), &keys(), Instant(0))
        .unwrap();
    let mut store = MemorySequenceStore::commissioned();
    let mut buf = [0u8; 256];
    let n = plain.seal(Instant(0), &mut store, b"on", &mut buf).unwrap();
    assert!(light.open(Instant(0), &mut buf[..n]).is_err());
    // A sender without a distributed key is refused before any crypto.
    let mut three = member(Some(3));
    three.set_signing_key(signing_key(3));
    let mut store = MemorySequenceStore::commissioned();
    let n = three.seal(Instant(0), &mut store, b"on", &mut buf).unwrap();
    assert_eq!(
        light.open(Instant(0), &mut buf[..n]),
        Err(OpenError::UnknownSender(SenderId(3)))
    );
    // A sender without a signing key can't send in a signed group.
    let mut cfg = GroupConfig::new(GID).with_signatures();
    cfg.own_sender_id = Some(SenderId(1));
    let mut nokey: Group = Group::new(cfg);
    nokey
        .install_and_activate(Epoch(1), &keys(), Instant(0))
        .unwrap();
    assert_eq!(
        nokey.seal(Instant(0), &mut store, b"on", &mut buf),
        Err(SealError::NoSigningKey)
    );
}
