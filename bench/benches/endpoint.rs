//! End to end (issue 14): protected records per second delivered through the std endpoint
//! (`GroupEndpoint`, blocking, and `AsyncGroupEndpoint` on a current-thread tokio runtime)
//! beside plain UDP datagrams of the same size, in the same run, on an IPv4 multicast group on
//! the loopback interface, 100 and 1000 bytes of payload, every suite.
//!
//! Each measurement has one sender thread and one receiver thread. The sender sends as fast as
//! it can; the receiver counts what it gets (plain: datagrams of the right size; protected:
//! records opened and delivered); a chunk is timed from the start until the receiver has
//! `n` of them, and the time per delivered record is the figure (its inverse the rate). Every
//! chunk is bounded (10 s, then the bench fails). The variants of one comparison run in rounds
//! in rotating order (paired, see `group_bench`); the anchor is plain UDP, so a ratio of 1.10
//! means a protected rate of 1 / 1.10 = 0.91 x the plain rate.
//!
//! Goals: rate at least 0.90 x plain UDP at 100 bytes for every suite; at least 0.75 x at 1000
//! bytes for AES-128-CCM and CCM_8 and 0.85 x for AES-128-GCM (time ratios at most 1.11, 1.33
//! and 1.18).
//!
//! The bench re-executes itself inside a private network namespace (`unshare -n`, the helper
//! of group-std's IPv6 tests) so that its traffic can't leave the machine nor meet other
//! tests'; where namespaces are unavailable it runs on the host's loopback (interface
//! 127.0.0.1, TTL 1) and says so.
//!
//! Run: `cargo bench -p group-bench --bench endpoint` (`BENCH_CRITERION=0` for the paired
//! table alone; `ENDPOINT_BENCH_SENDMMSG=1` adds senders that batch 16 datagrams per
//! `sendmmsg`: plain UDP and both endpoints' `send_records`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;

use group_bench::{Report, Variant, criterion_enabled, criterion_group};
use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_std::async_endpoint::AsyncGroupEndpoint;
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{MulticastConfig, MulticastSocket};

const GROUP_ID: u32 = 14;
const SIZES: [usize; 2] = [100, 1000];
const CHUNK: u64 = 500;
/// Bound on one timed chunk.
const CHUNK_BOUND: Duration = Duration::from_secs(10);

fn config(port: u16) -> MulticastConfig {
    let mut cfg =
        MulticastConfig::loopback_v4(SocketAddrV4::new(Ipv4Addr::new(239, 255, 14, 1), port));
    cfg.read_timeout = Some(Duration::from_millis(20));
    cfg
}

fn socket(port: u16) -> MulticastSocket {
    MulticastSocket::open(&config(port)).expect("multicast socket on loopback")
}

fn group(suite: Suite, sid: Option<u8>) -> Group {
    let keys = native_keys(GROUP_ID, Epoch(1), suite, &EpochSecret([0x14; 32])).unwrap();
    let mut cfg = GroupConfig::new(GROUP_ID);
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    g.install_and_activate(Epoch(1), &keys, Clock::new().now())
        .unwrap();
    g
}

/// Runs `send` on a sender thread, in a loop over the shared sender `tx`, until the receiver
/// (`recv` on this thread, returning how many items one call got) has counted `n`; returns the
/// time that took. The sender holds its lock for the whole chunk.
fn run_pair<T: Send + 'static>(
    n: u64,
    tx: &Arc<Mutex<T>>,
    send: fn(&mut T),
    mut recv: impl FnMut() -> u64,
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (stop2, started2, tx2) = (Arc::clone(&stop), Arc::clone(&started), Arc::clone(tx));
    let sender = thread::spawn(move || {
        let mut t = tx2.lock().unwrap();
        started2.store(true, Ordering::Release);
        while !stop2.load(Ordering::Relaxed) {
            send(&mut t);
        }
    });
    while !started.load(Ordering::Acquire) {
        thread::yield_now();
    }
    let start = Instant::now();
    let mut got = 0u64;
    while got < n {
        got += recv();
        if start.elapsed() > CHUNK_BOUND {
            stop.store(true, Ordering::Relaxed);
            panic!("end-to-end chunk over {CHUNK_BOUND:?}: {got} of {n} delivered");
        }
    }
    let t = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender thread");
    t
}

/// Plain UDP: the same sockets (both joined, loopback on), datagrams of the record's size.
fn plain(port: u16, len: usize) -> Variant<'static> {
    struct Tx(MulticastSocket, Vec<u8>);
    let tx = Arc::new(Mutex::new(Tx(socket(port), vec![0x5a; len])));
    let rx = socket(port);
    let mut buf = vec![0u8; 65536];
    Variant::new("plain-udp", move |n| {
        run_pair(
            n,
            &tx,
            |t| {
                let _ = t.0.send(&t.1);
            },
            || match rx.recv(&mut buf) {
                Ok(Some((m, _))) if m == len => 1,
                _ => 0,
            },
        )
    })
}

/// Datagrams per `sendmmsg` in the batched plain-UDP variant.
const BATCH: usize = 16;

/// Plain UDP as above, but the sender hands the kernel `BATCH` datagrams per system call
/// (`sendmmsg`, through rustix's safe wrapper; the receiver unchanged): whether batching the
/// sender's system calls raises the delivered rate at all on this path (issue 14 (d)). Its
/// ratio to `plain-udp` bounds what a batched endpoint sender could gain.
fn plain_batched(port: u16, len: usize) -> Variant<'static> {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    struct Tx(MulticastSocket, Vec<u8>, SocketAddrAny);
    let s = socket(port);
    let to = SocketAddrAny::from(s.group());
    let tx = Arc::new(Mutex::new(Tx(s, vec![0x5a; len], to)));
    let rx = socket(port);
    let mut buf = vec![0u8; 65536];
    Variant::new("plain-sendmmsg", move |n| {
        run_pair(
            n,
            &tx,
            |t| {
                let iov = [std::io::IoSlice::new(&t.1)];
                let mut controls: [SendAncillaryBuffer<'_, '_, '_>; BATCH] = Default::default();
                let mut msgs = controls
                    .each_mut()
                    .map(|c| MMsgHdr::new_with_addr(&t.2, &iov, c));
                let _ = rustix::net::sendmmsg(t.0.as_udp(), &mut msgs, SendFlags::empty());
            },
            || match rx.recv(&mut buf) {
                Ok(Some((m, _))) if m == len => 1,
                _ => 0,
            },
        )
    })
}

/// Blocking `GroupEndpoint`s: `send` on the sender thread, `recv_datagram` on the receiver.
fn blocking(port: u16, suite: Suite, len: usize) -> Variant<'static> {
    struct Tx(GroupEndpoint<MemorySequenceStore>, Vec<u8>);
    let clock = Clock::new();
    let tx = Arc::new(Mutex::new(Tx(
        GroupEndpoint::new(
            socket(port),
            group(suite, Some(1)),
            MemorySequenceStore::commissioned(),
            clock,
        ),
        vec![0x5a; len],
    )));
    let mut rx = GroupEndpoint::new(
        socket(port),
        group(suite, None),
        MemorySequenceStore::commissioned(),
        clock,
    );
    Variant::new("endpoint", move |n| {
        run_pair(
            n,
            &tx,
            |t| {
                let _ = t.0.send_record(&t.1);
            },
            || match rx.recv_datagram() {
                Ok(Some((_, records))) => records.filter(|r| r.is_ok()).count() as u64,
                _ => 0,
            },
        )
    })
}

/// Blocking `GroupEndpoint`s, the sender batching: `send_records` of `BATCH` records per call
/// (one `sendmmsg`), the receiver as in `blocking`.
fn blocking_batched(port: u16, suite: Suite, len: usize) -> Variant<'static> {
    struct Tx(GroupEndpoint<MemorySequenceStore>, Vec<u8>);
    let clock = Clock::new();
    let tx = Arc::new(Mutex::new(Tx(
        GroupEndpoint::new(
            socket(port),
            group(suite, Some(1)),
            MemorySequenceStore::commissioned(),
            clock,
        ),
        vec![0x5a; len],
    )));
    let mut rx = GroupEndpoint::new(
        socket(port),
        group(suite, None),
        MemorySequenceStore::commissioned(),
        clock,
    );
    Variant::new("endpoint-sendmmsg", move |n| {
        run_pair(
            n,
            &tx,
            |t| {
                let batch: [&[u8]; BATCH] = [&t.1; BATCH];
                let _ = t.0.send_records(&batch);
            },
            || match rx.recv_datagram() {
                Ok(Some((_, records))) => records.filter(|r| r.is_ok()).count() as u64,
                _ => 0,
            },
        )
    })
}

/// The sending side of a tokio pair: its runtime, its endpoint and the payload.
struct TokioTx(
    tokio::runtime::Runtime,
    AsyncGroupEndpoint<MemorySequenceStore>,
    Vec<u8>,
);

/// A sending and a receiving `AsyncGroupEndpoint`, each on its own current-thread tokio
/// runtime.
fn tokio_pair(
    port: u16,
    suite: Suite,
    len: usize,
) -> (
    Arc<Mutex<TokioTx>>,
    tokio::runtime::Runtime,
    AsyncGroupEndpoint<MemorySequenceStore>,
) {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    let clock = Clock::new();
    let endpoint = |rt: &tokio::runtime::Runtime, sender: Option<u8>| {
        let _g = rt.enter();
        AsyncGroupEndpoint::new(
            socket(port),
            group(suite, sender),
            MemorySequenceStore::commissioned(),
            clock,
        )
        .expect("tokio endpoint")
    };
    let txrt = runtime();
    let txep = endpoint(&txrt, Some(1));
    let rxrt = runtime();
    let rx = endpoint(&rxrt, None);
    (
        Arc::new(Mutex::new(TokioTx(txrt, txep, vec![0x5a; len]))),
        rxrt,
        rx,
    )
}

/// Records authenticated from one datagram received within 20 ms (0 on a timeout).
fn tokio_receive(
    rt: &tokio::runtime::Runtime,
    rx: &mut AsyncGroupEndpoint<MemorySequenceStore>,
) -> u64 {
    rt.block_on(async {
        match tokio::time::timeout(Duration::from_millis(20), rx.recv_datagram()).await {
            Ok(Ok((_, records))) => records.filter(|r| r.is_ok()).count() as u64,
            _ => 0,
        }
    })
}

/// `AsyncGroupEndpoint`s, each on its own current-thread tokio runtime.
fn tokio_variant(port: u16, suite: Suite, len: usize) -> Variant<'static> {
    let (tx, rxrt, mut rx) = tokio_pair(port, suite, len);
    Variant::new("tokio-endpoint", move |n| {
        run_pair(
            n,
            &tx,
            |t| {
                let TokioTx(rt, ep, payload) = t;
                rt.block_on(async {
                    let _ = ep.send_record(payload).await;
                });
            },
            || tokio_receive(&rxrt, &mut rx),
        )
    })
}

/// `AsyncGroupEndpoint`s, the sender batching: `send_records` of `BATCH` records per call.
fn tokio_batched(port: u16, suite: Suite, len: usize) -> Variant<'static> {
    let (tx, rxrt, mut rx) = tokio_pair(port, suite, len);
    Variant::new("tokio-sendmmsg", move |n| {
        run_pair(
            n,
            &tx,
            |t| {
                let TokioTx(rt, ep, payload) = t;
                let batch: [&[u8]; BATCH] = [&payload[..]; BATCH];
                rt.block_on(async {
                    let _ = ep.send_records(&batch).await;
                });
            },
            || tokio_receive(&rxrt, &mut rx),
        )
    })
}

fn main() {
    if group_std::netns::inside().is_none() && std::env::var_os("BENCH_NO_NETNS").is_none() {
        let exe = std::env::current_exe().expect("current exe");
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        match group_std::netns::run_with_env(&exe, &args, &[("BENCH_NETNS", "1".as_ref())]) {
            group_std::netns::Outcome::Ran(status) => {
                std::process::exit(status.code().unwrap_or(1))
            }
            group_std::netns::Outcome::Unavailable(reason) => {
                println!(
                    "network namespaces unavailable ({reason}): running on the host's loopback"
                );
            }
        }
    } else if group_std::netns::inside().is_some() {
        println!("inside a private network namespace (IPv4 multicast on its lo)");
    }
    let mut c = Criterion::default().configure_from_args();
    let mut report = Report::new("endpoint");
    let mut port = 41_400u16;
    for (name, suite) in [
        ("ccm8", Suite::AES_128_CCM_8),
        ("ccm", Suite::AES_128_CCM),
        ("gcm", Suite::AES_128_GCM),
    ] {
        for len in SIZES {
            port += 1;
            let record_len = group(suite, Some(1)).record_len(len).unwrap();
            let mut v = vec![
                plain(port, record_len),
                blocking(port + 100, suite, len),
                tokio_variant(port + 200, suite, len),
            ];
            // ENDPOINT_BENCH_SENDMMSG=1 adds the batched senders (plain UDP and the endpoint).
            if std::env::var("ENDPOINT_BENCH_SENDMMSG").is_ok_and(|v| v == "1") {
                v.push(plain_batched(port + 300, record_len));
                v.push(blocking_batched(port + 400, suite, len));
                v.push(tokio_batched(port + 500, suite, len));
            }
            if criterion_enabled() {
                criterion_group(&mut c, &format!("{name}/{len}"), &mut v);
            }
            report.paired(&format!("{name} {len} B"), &mut v, CHUNK);
        }
    }
    report.finish();
    c.final_summary();
}
