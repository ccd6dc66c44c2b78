//! Side by side with wolfSSL (issue 14): records sealed and opened per second by wolfSSL's DTLS
//! 1.2 multicast record layer (Debian's libwolfssl, `wolfSSL_write` / `wolfSSL_mcast_read`
//! between two members with in-memory I/O callbacks) and by ours (`Group::seal_in_place` /
//! `Group::open`), same suite, same plaintext sizes, same run, in memory.
//!
//! The wolfSSL side is `bench/wolfssl/wolfssl_records.c`, built here with the system C
//! compiler against `-lwolfssl` (`.ci/wolfssl.sh setup` installs it) and run as a child
//! process per chunk; it times its own operations (its start-up and set-up are not counted)
//! and prints the total. Sizes: 64 and 1000 bytes (Debian's wolfSSL 5.5.4 has no
//! `wolfSSL_dtls_set_mtu` and refuses plaintexts above about 1350 bytes with
//! `DTLS_SIZE_ERROR`, so 1400 is out of its reach). The anchor is wolfSSL: ratios are
//! ours / wolfSSL (time per record; below 1 means we are faster).
//!
//! Run: `cargo bench -p group-bench --bench wolfssl` (`BENCH_CRITERION=0` for the paired
//! table alone). Without wolfSSL or a C compiler it prints SKIP and exits 0.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;

use group_bench::pair::{NOW, Pair};
use group_bench::{Report, Variant, target_dir};
use group_core::suite::Suite;

const SIZES: [usize; 2] = [64, 1000];
const CHUNK: u64 = 512;

fn build_harness() -> Result<PathBuf, String> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wolfssl/wolfssl_records.c");
    let out = target_dir().join("bench/wolfssl_records");
    std::fs::create_dir_all(out.parent().unwrap()).map_err(|e| e.to_string())?;
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "wolfssl"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "-lwolfssl".to_string());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags.split_whitespace())
        .status()
        .map_err(|e| format!("{cc}: {e}"))?;
    if !status.success() {
        return Err(format!("{cc} failed on {}", src.display()));
    }
    Ok(out)
}

/// Runs `n` wolfSSL operations in a child process; returns the time they took.
fn wolfssl_run(harness: &PathBuf, suite: &str, size: usize, mode: &str, n: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let ops = left.min(100_000);
        let out = Command::new(harness)
            .args([
                "--suite",
                suite,
                "--size",
                &size.to_string(),
                "--mode",
                mode,
            ])
            .args(["--ops", &ops.to_string(), "--warmup", "64"])
            .output()
            .expect("run wolfssl_records");
        assert!(
            out.status.success(),
            "wolfssl_records: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
        total += Duration::from_nanos(v["ns"].as_u64().expect("ns"));
        left -= ops;
    }
    total
}

fn main() {
    let harness = match build_harness() {
        Ok(h) => h,
        Err(e) => {
            println!(
                "SKIP wolfSSL side by side: {e} (install libwolfssl-dev: .ci/wolfssl.sh setup)"
            );
            return;
        }
    };
    let mut c = Criterion::default().configure_from_args();
    let mut report = Report::new("wolfssl");
    println!("| case | variant: median per record (ratio to wolfSSL, quartiles) |");
    println!("|---|---|");
    for (name, code, suite) in [
        ("ccm8", "C0AE", Suite::AES_128_CCM_8),
        ("ccm", "C0AC", Suite::AES_128_CCM),
        ("gcm", "C02B", Suite::AES_128_GCM),
    ] {
        for n in SIZES {
            let h = harness.clone();
            let mut seal = vec![
                Variant::new("wolfssl", move |iters| {
                    wolfssl_run(&h, code, n, "seal", iters)
                }),
                {
                    let mut p = Pair::new(suite, n);
                    let mut rec = vec![0u8; p.rec_len];
                    let off = p.switch.payload_offset().unwrap();
                    rec[off..off + n].copy_from_slice(&p.plaintext);
                    Variant::simple("group", move || {
                        p.switch
                            .seal_in_place(NOW, &mut p.store, black_box(&mut rec), n)
                            .unwrap();
                    })
                },
            ];
            let h = harness.clone();
            let mut open = vec![
                Variant::new("wolfssl", move |iters| {
                    wolfssl_run(&h, code, n, "open", iters)
                }),
                {
                    let mut p = Pair::new(suite, n);
                    let mut inputs: Vec<Vec<u8>> = Vec::new();
                    Variant::new("group", move |iters| {
                        inputs.resize(iters as usize, Vec::new());
                        for i in inputs.iter_mut() {
                            i.resize(p.rec_len, 0);
                            p.switch.seal(NOW, &mut p.store, &p.plaintext, i).unwrap();
                        }
                        let start = Instant::now();
                        for i in inputs.iter_mut() {
                            black_box(p.light.open(NOW, i).unwrap());
                        }
                        let t = start.elapsed();
                        assert_eq!(p.light.counters().dropped(), 0);
                        t
                    })
                },
            ];
            report.seal_and_open(&mut c, (name, n), &mut seal, &mut open, CHUNK);
        }
    }
    report.finish();
    c.final_summary();
}
