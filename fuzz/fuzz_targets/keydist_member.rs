//! The member's datagram handler fed hostile datagrams mid-protocol: a joined member with a
//! rekey in flight and a joining member whose join response is in flight. Input: a
//! configuration byte (0xe0 and above: signed mode, 32 ms a run; 0xd0 to 0xdf: signed,
//! a group whose sender lists continue in `SenderKeys` parts, device 1 holding a bundle whose
//! parts are in flight; otherwise PSK, 2 ms; bit 1: feed the joining member),
//! then datagrams (see `keydist_fixture::datagrams`).
//!
//! Asserts: no panic; a refused datagram changes nothing (state, last counter, epochs, send
//! counter, sequence store, next deadline); only byte-exact captured messages are accepted.
#![no_main]

use dtls_group_fuzz::keydist_fixture::{datagrams, member_summary, setup, setup_split};
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
        let m = if cfg & 2 == 0 {
            &mut s.joined
        } else {
            &mut s.joining
        };
        let before = member_summary(m);
        match m.handle_message(s.now, &d) {
            Ok(()) => assert!(
                s.captured.contains(&d),
                "accepted a datagram nobody sent: {d:02x?}"
            ),
            Err(e) => assert_eq!(
                before,
                member_summary(m),
                "refusal {e:?} changed the member"
            ),
        }
        while let Ok(Some(_)) = m.poll_transmit(s.now, &mut s.rng, &mut buf) {}
        while m.poll_event().is_some() {}
    }
});
