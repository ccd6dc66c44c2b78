//! The key server's datagram handler fed hostile datagrams mid-protocol (raw bytes, and
//! captured messages replayed or edited). Input: a configuration byte (0xe0 and above: signed
//! mode; 0xd0 to 0xdf: signed, a group whose sender lists continue in `SenderKeys` parts;
//! otherwise PSK), then datagrams (see `keydist_fixture::datagrams`).
//!
//! Asserts: no panic; a refused datagram changes nothing (persisted state, memberships,
//! pending joins, epochs, next deadline); only byte-exact captured messages are accepted.
#![no_main]

use dtls_group_fuzz::keydist_fixture::{datagrams, server_summary, setup, setup_split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    // 0xd0..=0xdf: the signed group of split sender lists (device 1 completing a bundle).
    let mut s = if cfg & 0xf0 == 0xd0 {
        setup_split()
    } else {
        setup(cfg >= 0xe0)
    };
    let mut buf = [0u8; 2048];
    for d in datagrams(&s.captured, rest) {
        let before = server_summary(&s.server);
        match s.server.handle_message(s.now, &mut s.rng, &d) {
            Ok(_) => assert!(
                s.captured.contains(&d),
                "accepted a datagram nobody sent: {d:02x?}"
            ),
            Err(e) => assert_eq!(
                before,
                server_summary(&s.server),
                "refusal {e:?} changed the server"
            ),
        }
        // Let it send what it wants (retransmissions, bundles, notices) between datagrams.
        while let Ok(Some(_)) = s.server.poll_transmit(s.now, &mut s.rng, &mut buf) {}
        while s.server.poll_event().is_some() {}
    }
});
