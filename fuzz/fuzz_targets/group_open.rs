//! `Group::open` of arbitrary bytes under known keys. Input: one configuration byte (suite,
//! signatures, admission, nonce profile, fragment limit), then a datagram of records.
//!
//! Asserts: nothing is delivered but a record a sender sealed (same epoch, sender, seq and
//! plaintext), nothing twice; every refusal is a typed error that bumps exactly its own drop
//! counter and nothing else; nothing panics.
#![no_main]

use std::collections::HashSet;

use dtls_group_fuzz::open_fixture::{NOW, OpenConfig, receiver, sealed};
use group_core::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, datagram)) = data.split_first() else {
        return;
    };
    let cfg = OpenConfig::from_byte(cfg);
    let genuine = sealed(cfg);
    let mut g = receiver(cfg);
    let mut delivered = HashSet::new();
    let mut buf = datagram.to_vec();
    let mut rest: &mut [u8] = &mut buf;
    while !rest.is_empty() {
        // Walk the datagram as a receiver does; what does not split is opened whole (and must
        // be refused as malformed).
        let at = wire::split_record(rest).map_or(rest.len(), |(r, _)| r.len());
        let (record, tail) = rest.split_at_mut(at);
        let before = *g.counters();
        match g.open(NOW, record) {
            Ok(d) => {
                let key = (d.epoch, d.sender_id, d.seq);
                let s = genuine
                    .iter()
                    .find(|s| (s.epoch, s.sid, s.seq) == key)
                    .unwrap_or_else(|| panic!("delivered {key:?}, never sealed"));
                assert_eq!(&*d.plaintext, &s.plaintext[..], "delivered {key:?} altered");
                assert!(delivered.insert(key), "delivered {key:?} twice");
                let mut expect = before;
                expect.accepted += 1;
                assert_eq!(expect, *g.counters());
            }
            Err(e) => {
                let mut expect = before;
                expect.count_drop(&e);
                assert_eq!(expect, *g.counters(), "refusal {e:?} not counted as such");
            }
        }
        while g.poll_event().is_some() {}
        rest = tail;
    }
});
