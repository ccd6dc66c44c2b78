//! Zero heap allocations per record in the std endpoints' steady state (issue 14), counted by
//! an instrumented global allocator (`stats_alloc`): a sender endpoint seals into its own
//! buffer and sends (`send_record`), a receiver endpoint receives into its own buffer and opens
//! in place (`recv_datagram`, borrowed plaintexts), blocking and tokio, on an IPv4 loopback
//! multicast group. After a warm-up, 1,000 records go through each pair; the allocator must
//! count no allocation, reallocation or free in between.
//!
//! One test function does both endpoint kinds in turn, on one thread. The counter is global,
//! so another thread of the test harness allocating at the wrong moment can spoil a count:
//! each measurement is tried up to 3 times and must come out clean once (an allocation per
//! record would show 1,000 or more every time).

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_std::async_endpoint::AsyncGroupEndpoint;
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{MulticastConfig, MulticastSocket};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const RECORDS: usize = 1000;
const WARM_UP: usize = 100;

fn socket(port: u16) -> MulticastSocket {
    let mut cfg =
        MulticastConfig::loopback_v4(SocketAddrV4::new(Ipv4Addr::new(239, 255, 14, 9), port));
    cfg.read_timeout = Some(Duration::from_secs(2));
    MulticastSocket::open(&cfg).unwrap()
}

fn group(suite: Suite, sid: Option<u8>, clock: Clock) -> Group {
    let keys = native_keys(9, Epoch(1), suite, &EpochSecret([9; 32])).unwrap();
    let mut cfg = GroupConfig::new(9);
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    g.install_and_activate(Epoch(1), &keys, clock.now())
        .unwrap();
    g
}

/// The allocator's change over `rounds` calls of `round`, which must deliver `expected`
/// records in all; measured up to three times until a run allocates nothing (a first run may
/// still grow a buffer), and the last run's change returned.
fn steady_state_change(
    rounds: usize,
    expected: usize,
    mut round: impl FnMut() -> usize,
) -> stats_alloc::Stats {
    let mut change = None;
    for _ in 0..3 {
        let region = Region::new(GLOBAL);
        let mut delivered = 0;
        for _ in 0..rounds {
            delivered += round();
        }
        let c = region.change();
        assert_eq!(delivered, expected);
        change = Some(c);
        if (c.allocations, c.reallocations, c.deallocations) == (0, 0, 0) {
            break;
        }
    }
    change.unwrap()
}

/// Sends one record and receives it; returns how many records were delivered (1 expected).
fn blocking_round(
    tx: &mut GroupEndpoint<MemorySequenceStore>,
    rx: &mut GroupEndpoint<MemorySequenceStore>,
    payload: &[u8],
) -> usize {
    tx.send_record(payload).unwrap();
    let Some((_, records)) = rx.recv_datagram().unwrap() else {
        return 0;
    };
    let mut n = 0;
    for r in records {
        let d = r.unwrap();
        assert_eq!(d.plaintext, payload);
        n += 1;
    }
    n
}

async fn tokio_round(
    tx: &mut AsyncGroupEndpoint<MemorySequenceStore>,
    rx: &mut AsyncGroupEndpoint<MemorySequenceStore>,
    payload: &[u8],
) -> usize {
    tx.send_record(payload).await.unwrap();
    let (_, records) = rx.recv_datagram().await.unwrap();
    let mut n = 0;
    for r in records {
        let d = r.unwrap();
        assert_eq!(d.plaintext, payload);
        n += 1;
    }
    n
}

#[test]
fn no_allocation_per_record_in_steady_state() {
    let payload = [0x5au8; 100];
    for (i, suite) in [Suite::AES_128_CCM_8, Suite::AES_128_CCM, Suite::AES_128_GCM]
        .into_iter()
        .enumerate()
    {
        // Blocking endpoints.
        let port = 41_700 + i as u16 * 2;
        let clock = Clock::new();
        let store = MemorySequenceStore::commissioned;
        let mut tx = GroupEndpoint::new(socket(port), group(suite, Some(1), clock), store(), clock);
        let mut rx = GroupEndpoint::new(socket(port), group(suite, None, clock), store(), clock);
        for _ in 0..WARM_UP {
            assert_eq!(blocking_round(&mut tx, &mut rx, &payload), 1);
        }
        let change = steady_state_change(RECORDS, RECORDS, || {
            blocking_round(&mut tx, &mut rx, &payload)
        });
        assert_eq!(
            (
                change.allocations,
                change.reallocations,
                change.deallocations
            ),
            (0, 0, 0),
            "blocking endpoint, {suite:?}: {change:?} over {RECORDS} records"
        );
        println!("blocking {suite:?}: {RECORDS} records, {change:?}");

        // The batched sender (`send_records`, sendmmsg): batches of 4, same receiver.
        let batched_round =
            |tx: &mut GroupEndpoint<MemorySequenceStore>,
             rx: &mut GroupEndpoint<MemorySequenceStore>| {
                assert_eq!(tx.send_records(&[&payload[..]; 4]).unwrap(), 4);
                let mut n = 0;
                while n < 4 {
                    let Some((_, records)) = rx.recv_datagram().unwrap() else {
                        break;
                    };
                    for r in records {
                        assert_eq!(r.unwrap().plaintext, payload);
                        n += 1;
                    }
                }
                n
            };
        for _ in 0..WARM_UP / 4 {
            assert_eq!(batched_round(&mut tx, &mut rx), 4);
        }
        let change = steady_state_change(RECORDS / 4, RECORDS / 4 * 4, || {
            batched_round(&mut tx, &mut rx)
        });
        assert_eq!(
            (
                change.allocations,
                change.reallocations,
                change.deallocations
            ),
            (0, 0, 0),
            "batched sender, {suite:?}: {change:?}"
        );
        println!(
            "batched sender {suite:?}: {} records, {change:?}",
            RECORDS / 4 * 4
        );

        // Tokio endpoints on a current-thread runtime.
        let port = port + 1;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tx =
                AsyncGroupEndpoint::new(socket(port), group(suite, Some(1), clock), store(), clock)
                    .unwrap();
            let mut rx =
                AsyncGroupEndpoint::new(socket(port), group(suite, None, clock), store(), clock)
                    .unwrap();
            for _ in 0..WARM_UP {
                assert_eq!(tokio_round(&mut tx, &mut rx, &payload).await, 1);
            }
            let mut change = None;
            for _ in 0..3 {
                let region = Region::new(GLOBAL);
                let mut delivered = 0;
                for _ in 0..RECORDS {
                    delivered += tokio_round(&mut tx, &mut rx, &payload).await;
                }
                let c = region.change();
                assert_eq!(delivered, RECORDS);
                change = Some(c);
                if (c.allocations, c.reallocations, c.deallocations) == (0, 0, 0) {
                    break;
                }
            }
            let change = change.unwrap();
            assert_eq!(
                (
                    change.allocations,
                    change.reallocations,
                    change.deallocations
                ),
                (0, 0, 0),
                "tokio endpoint, {suite:?}: {change:?} over {RECORDS} records"
            );
            println!("tokio {suite:?}: {RECORDS} records, {change:?}");
        });
    }
}
