//! The command line's and the key server's text parsers (group-std): hex secrets and keys,
//! hex arguments, suite names, the key server's TOML configuration. Input: a selector byte,
//! then the text.
//!
//! Asserts: no panic; what decodes re-encodes to the (normalised) input; errors are one line
//! and never contain the secret text; an accepted configuration satisfies every rule `load`
//! states (known suites and roles, referenced groups exist, unique device ids).
#![no_main]

use std::path::Path;

use group_std::cli::common::{decode_hex, decode_hex_array, parse_suite};
use group_std::keyfile::{decode_secret_hex, is_public_hex, parse_public};
use group_std::keyserver::KeyServerConfig;
use libfuzzer_sys::fuzz_target;

const WHAT: &str = "--key-file /etc/k";

/// An error message must not carry the secret: no run of 4 or more hex digits of the input
/// (what a hex secret is made of) may appear in the message outside the fixed `WHAT` prefix.
/// (Comparing the whole input instead flags inputs that merely spell the fixed message, such
/// as " /etc/k: odd number of hex digit".)
fn no_leak(msg: &str, secret: &[u8]) {
    assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
    let Ok(s) = std::str::from_utf8(secret) else {
        return;
    };
    let rest = msg.replace(WHAT, "");
    for run in s.split(|c: char| !c.is_ascii_hexdigit()) {
        if run.len() >= 4 {
            assert!(
                !rest.contains(run),
                "error {msg:?} contains the secret's hex {run:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match sel % 6 {
        0 => match decode_secret_hex(WHAT, rest) {
            Ok(v) => {
                assert!(!v.is_empty());
                assert!(hex::encode(&*v).eq_ignore_ascii_case(
                    std::str::from_utf8(rest.trim_ascii()).expect("hex is ascii")
                ));
            }
            Err(e) => no_leak(&e.to_string(), rest),
        },
        1 => {
            if is_public_hex(&text) {
                let t = text.trim();
                assert!(t.len() == 66 || t.len() == 130);
                assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
            }
            if let Ok(k) = parse_public(&text) {
                let bytes = hex::decode(text.trim()).expect("parse_public decoded it");
                let compressed = bytes.len() == 33;
                assert_eq!(k.to_sec1_point(compressed).as_bytes(), &bytes[..]);
            }
        }
        2 => match decode_hex(WHAT, &text) {
            Ok(v) => assert_eq!(hex::encode(&v), text.to_ascii_lowercase()),
            Err(e) => no_leak(&e.to_string(), text.as_bytes()),
        },
        3 => match decode_hex_array::<16>(WHAT, &text) {
            Ok(v) => assert_eq!(hex::encode(v), text.to_ascii_lowercase()),
            Err(e) => no_leak(&e.to_string(), text.as_bytes()),
        },
        4 => {
            if let Ok(s) = parse_suite(&text) {
                assert!(s.is_enabled());
                assert_eq!(parse_suite(s.name().expect("known suite")), Ok(s));
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            match KeyServerConfig::parse(text, Path::new("/etc/dtls-group/ks.toml")) {
                Ok(cfg) => {
                    assert!(cfg.state.is_absolute() && cfg.server_key.is_absolute());
                    for g in &cfg.groups {
                        assert!(g.spec().is_ok());
                    }
                    let mut ids = Vec::new();
                    for d in &cfg.devices {
                        assert!(d.role().is_ok());
                        assert!(
                            d.groups
                                .iter()
                                .all(|id| cfg.groups.iter().any(|g| g.id == *id))
                        );
                        assert!(!ids.contains(&d.id), "duplicate device {}", d.id);
                        ids.push(d.id);
                    }
                }
                Err(e) => assert!(!e.contains('\n'), "multi-line error: {e:?}"),
            }
        }
    }
});
