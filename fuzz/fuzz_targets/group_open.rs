//! `Group::open` of arbitrary bytes under known keys. Input: one configuration byte (suite,
//! signatures, admission, nonce profile, fragment limit), then a datagram of records.
//!
//! Asserts: nothing is delivered but a record a sender sealed (same epoch, sender, seq and
//! plaintext), nothing twice; every refusal is a typed error that bumps exactly its own drop
//! counter and nothing else; `Group::open_datagram` on a second receiver gives the same
//! outcomes, in the same order, and the same counters as the walk record by record; nothing
//! panics.
#![no_main]

use std::collections::HashSet;

use dtls_group_fuzz::open_fixture::{NOW, OpenConfig, receiver, sealed};
use group_core::group::Delivery;
use group_core::record::OpenError;
use group_core::wire::{self, Epoch, SenderId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, datagram)) = data.split_first() else {
        return;
    };
    let cfg = OpenConfig::from_byte(cfg);
    let genuine = sealed(cfg);
    let mut g = receiver(cfg);
    let mut delivered = HashSet::new();
    let mut outcomes = Vec::new();
    let mut buf = datagram.to_vec();
    let mut rest: &mut [u8] = &mut buf;
    while !rest.is_empty() {
        // Walk the datagram as a receiver does; what does not split is opened whole (and must
        // be refused as malformed).
        let at = wire::split_record(rest).map_or(rest.len(), |(r, _)| r.len());
        let (record, tail) = rest.split_at_mut(at);
        let before = *g.counters();
        let opened = g.open(NOW, record);
        outcomes.push(outcome(&opened));
        match opened {
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
    // The core's datagram walk: the same outcomes and counters on a fresh receiver.
    let mut g2 = receiver(cfg);
    let mut buf2 = datagram.to_vec();
    let walked: Vec<_> = g2
        .open_datagram(NOW, &mut buf2)
        .map(|r| outcome(&r))
        .collect();
    assert_eq!(walked, outcomes, "open_datagram walked differently");
    // (The walk above drains events after each record, this one does not: events that did not
    // fit the queue are not compared.)
    let (mut c1, mut c2) = (*g.counters(), *g2.counters());
    (c1.events_dropped, c2.events_dropped) = (0, 0);
    assert_eq!(c1, c2, "open_datagram counted differently");
});

type Outcome = Result<(Epoch, SenderId, u64, Vec<u8>), OpenError>;

fn outcome(r: &Result<Delivery<'_>, OpenError>) -> Outcome {
    match r {
        Ok(d) => Ok((d.epoch, d.sender_id, d.seq, d.plaintext.to_vec())),
        Err(e) => Err(*e),
    }
}
