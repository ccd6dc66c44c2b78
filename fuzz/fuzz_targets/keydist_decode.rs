//! Every key-distribution decoder: what decodes re-encodes to the same bytes (one byte string
//! per message). Generic over message kinds: the envelope is re-encoded from the decoded
//! `Message` with postcard, so new kinds are covered without changes here.
//!
//! - `keydist::parse` (version, mode, postcard(Message), trailer);
//! - `keydist::parse_server`, the member's borrowing decoder: it agrees with `parse` on every
//!   input (the same server messages with the same fields, device kinds `UnexpectedKind`,
//!   everything else refused by both);
//! - `keydist::decode_key_material` (the plaintext of a sealed secret).
#![no_main]

use group_core::keydist::{self, Direction, Error, KeyMaterial, Message, ServerMessage};
use libfuzzer_sys::fuzz_target;

fn decoders_agree(data: &[u8]) {
    match (keydist::parse(data), keydist::parse_server(data)) {
        (Ok(pm), Ok(v)) => {
            assert_eq!((pm.mode, pm.protected, pm.trailer), (v.mode, v.protected, v.trailer));
            match (&pm.message, &v.message) {
                (Message::KeyBundle(b), ServerMessage::KeyBundle(bv)) => {
                    assert_eq!(&bv.to_bundle().expect("fits the owned form"), b);
                }
                (Message::Removed(a), ServerMessage::Removed(b)) => assert_eq!(a, b),
                (Message::JoinChallenge(a), ServerMessage::JoinChallenge(b)) => assert_eq!(a, b),
                (Message::SenderKeys(a), ServerMessage::SenderKeys(b)) => {
                    assert_eq!(&b.to_owned_part().expect("fits the owned form"), a);
                }
                (a, b) => panic!("{a:?} decoded as {b:?}"),
            }
        }
        (Ok(pm), Err(e)) => {
            assert_eq!(pm.message.direction(), Direction::DeviceToServer, "{e:?}");
            assert_eq!(e, Error::UnexpectedKind);
        }
        (Err(e), Ok(v)) => panic!("parse refused ({e:?}) what parse_server took: {v:?}"),
        (Err(_), Err(_)) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    decoders_agree(data);
    if let Ok(pm) = keydist::parse(data) {
        let mut buf = [0u8; 2048];
        let body = postcard::to_slice(&pm.message, &mut buf).expect("a decoded message encodes");
        let mut again = vec![data[0], data[1]];
        again.extend_from_slice(body);
        assert_eq!(
            again.as_slice(),
            pm.protected,
            "{:?}: body not canonical",
            pm.message.kind()
        );
        again.extend_from_slice(pm.trailer);
        assert_eq!(again.as_slice(), data);
        assert_eq!(pm.trailer.len(), pm.mode.trailer_len());
        // Decoding the re-encoding gives the same message.
        let back = keydist::parse(&again).expect("re-encoding parses");
        assert_eq!(back.message, pm.message);
    }
    if let Ok(m) = keydist::decode_key_material(data) {
        let mut out = [0u8; 256];
        let n = keydist::encode_key_material(&m, &mut out).expect("fits");
        assert_eq!(&out[..n], data, "key material not canonical");
        let back: KeyMaterial =
            keydist::decode_key_material(&out[..n]).expect("re-encoding decodes");
        assert!(back == m);
    }
});
