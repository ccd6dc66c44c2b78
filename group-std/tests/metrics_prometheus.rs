//! `--metrics ADDR:PORT` with the real Prometheus tools (Debian package `prometheus`):
//! `promtool check metrics` validates the pages of `keyserver`, `member` and `listen`, and a
//! real Prometheus server scrapes a running key server and member and answers, through its
//! query API, the member count and a non-zero accepted-records counter.
//!
//! Loopback only: multicast on 127.0.0.1 with TTL 1, every HTTP server (ours and Prometheus's)
//! bound to 127.0.0.1. Every process has a `--timeout` and is killed when the test ends; every
//! wait has a deadline. Without the Prometheus binaries the tests fail, unless
//! `DTLS_GROUP_SKIP_PROMETHEUS=1` asks to skip them (they then say so).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{BIN, Proc, free_tcp_port, free_udp_port};

/// Whether `tool` (of the Debian package `prometheus`) can be run, or the test is skipped.
fn have(tool: &str) -> bool {
    common::have_tool(tool, "prometheus", "DTLS_GROUP_SKIP_PROMETHEUS")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// GETs `/metrics` until it answers 200 (the node may still be starting).
fn scrape(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match group_std::metrics::fetch(addr, "/metrics") {
            Ok((200, body)) => return body,
            other => assert!(
                Instant::now() < deadline,
                "no metrics page at {addr}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `promtool check metrics` on `page`: must pass without a complaint.
fn promtool_check(what: &str, page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on the {what} page: {:?}: {said}\n{page}",
        out.status
    );
    println!(
        "promtool check metrics: {what} page ok ({} lines)",
        page.lines().count()
    );
}

/// The value of the first sample of `name` whose labels include all of `labels`.
fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|kv| l.contains(kv)))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

struct Installation {
    dir: PathBuf,
    ks_port: u16,
    group: String,
}

impl Installation {
    fn p(&self, n: &str) -> String {
        self.dir.join(n).to_string_lossy().into_owned()
    }

    /// Key pairs for the key server, a light (device 2) and a switch (device 1), and the
    /// configuration of group 1.
    fn new(tag: &str, octet: u8) -> Self {
        let dir = std::env::temp_dir().join(format!("dtls-group-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let inst = Self {
            ks_port: free_udp_port(),
            group: format!(
                "239.255.52.{octet}:{}",
                30_000 + std::process::id() % 20_000
            ),
            dir,
        };
        for n in ["server", "switch", "light"] {
            let out = Command::new(BIN)
                .args(["keygen", "--out", &inst.p(n)])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let toml = format!(
            "listen = \"127.0.0.1:{}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\nmulticast = \"{}\"\nactivation_delay_ms = 200\n\
             grace_ms = 1000\n\n\
             [[device]]\nid = 1\nname = \"switch\"\npublic_key = \"switch.pub\"\nrole = \"sender\"\ngroups = [1]\n\n\
             [[device]]\nid = 2\nname = \"light\"\npublic_key = \"light.pub\"\nrole = \"listener\"\ngroups = [1]\n",
            inst.ks_port, inst.group
        );
        std::fs::write(inst.dir.join("ks.toml"), toml).unwrap();
        inst
    }

    fn keyserver(&self, metrics: SocketAddr) -> Proc {
        let args: Vec<String> = vec![
            "keyserver".into(),
            "--config".into(),
            self.p("ks.toml"),
            "--init".into(),
            "--control".into(),
            self.p("ks.sock"),
            "--timeout".into(),
            "90".into(),
            "--metrics".into(),
            metrics.to_string(),
        ];
        Proc::spawn_program("keyserver", BIN, &args, false)
    }

    fn member(&self, id: u32, name: &str, role: &str, metrics: Option<SocketAddr>) -> Proc {
        let mut a: Vec<String> = vec![
            "member".into(),
            "--server".into(),
            format!("127.0.0.1:{}", self.ks_port),
            "--server-key".into(),
            self.p("server.pub"),
            "--device-key".into(),
            self.p(&format!("{name}.key")),
            "--device-id".into(),
            id.to_string(),
            "--group-id".into(),
            "1".into(),
            "--group".into(),
            self.group.clone(),
            "--role".into(),
            role.into(),
            "--timeout".into(),
            "90".into(),
        ];
        if role == "sender" {
            a.extend([
                "--stdin".into(),
                "--seq-store".into(),
                self.p(&format!("{name}.seq")),
                "--init-seq-store".into(),
            ]);
        }
        if let Some(m) = metrics {
            a.extend(["--metrics".into(), m.to_string()]);
        }
        Proc::spawn_program(name, BIN, &a, role == "sender")
    }
}

/// A key server, a light and a switch: the switch sends three commands, the light receives
/// them. Returns the processes and the two metrics addresses once the light has all three.
fn lighting(inst: &Installation) -> (Vec<Proc>, SocketAddr, SocketAddr) {
    let ks_metrics = loopback(free_tcp_port());
    let light_metrics = loopback(free_tcp_port());
    let ks = inst.keyserver(ks_metrics);
    let light = inst.member(2, "light", "listener", Some(light_metrics));
    light.wait_for(
        "its first epoch",
        |v| v["event"] == "epoch_activated",
        Duration::from_secs(20),
    );
    let mut switch = inst.member(1, "switch", "sender", None);
    switch.wait_for(
        "its epoch",
        |v| v["event"] == "epoch_activated",
        Duration::from_secs(20),
    );
    // The light gets the switch's epoch (a join rekeys) before the commands.
    let stdin = switch.stdin.as_mut().unwrap();
    for cmd in ["on", "dim 40", "off"] {
        writeln!(stdin, "{}", hex::encode(cmd)).unwrap();
    }
    stdin.flush().unwrap();
    let off = hex::encode("off");
    light.wait_for(
        "the third command",
        |v| v["plaintext"] == off.as_str(),
        Duration::from_secs(20),
    );
    (vec![ks, light, switch], ks_metrics, light_metrics)
}

#[test]
fn key_server_and_member_pages_pass_promtool_and_count_what_happened() {
    if !have("promtool") {
        return;
    }
    let inst = Installation::new("metrics-promtool", 1);
    let (procs, ks_metrics, light_metrics) = lighting(&inst);
    let ks_page = scrape(ks_metrics);
    let light_page = scrape(light_metrics);
    promtool_check("keyserver", &ks_page);
    promtool_check("member", &light_page);
    // What happened shows: two devices admitted and joined, two joins, the light's three
    // records accepted in the current epoch, nothing dropped by the light.
    assert_eq!(
        sample(
            &ks_page,
            "dtls_group_keyserver_members",
            &["group_id=\"1\""]
        ),
        Some(2.0),
        "{ks_page}"
    );
    assert_eq!(
        sample(
            &ks_page,
            "dtls_group_keyserver_devices",
            &["group_id=\"1\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &ks_page,
            "dtls_group_keyserver_joins_total",
            &["group_id=\"1\""]
        ),
        Some(2.0)
    );
    assert!(sample(&ks_page, "dtls_group_keyserver_bundles_sent_total", &[]).unwrap() >= 3.0);
    assert_eq!(
        sample(
            &ks_page,
            "dtls_group_keyserver_rekeys_total",
            &["cause=\"join\""]
        ),
        Some(1.0),
        "the first join creates the group's first epoch, the second rekeys: {ks_page}"
    );
    assert_eq!(
        sample(&light_page, "dtls_group_records_accepted_total", &[]),
        Some(3.0),
        "{light_page}"
    );
    assert_eq!(
        sample(&light_page, "dtls_group_member_joined", &[]),
        Some(1.0)
    );
    let current = sample(&light_page, "dtls_group_epoch", &["role=\"current\""]).unwrap();
    assert_eq!(
        Some(current),
        sample(&ks_page, "dtls_group_keyserver_epoch", &["group_id=\"1\""]),
        "the light is in the key server's current epoch"
    );
    for (reason, _) in group_core::counters::Counters::default().drop_reasons() {
        assert_eq!(
            sample(
                &light_page,
                "dtls_group_records_dropped_total",
                &[&format!("reason=\"{reason}\"")]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    // An unknown path is a 404, not the page.
    let (code, _) = group_std::metrics::fetch(light_metrics, "/").unwrap();
    assert_eq!(code, 404);
    drop(procs);
}

#[test]
fn listen_page_passes_promtool_and_counts_drops() {
    if !have("promtool") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir =
        std::env::temp_dir().join(format!("dtls-group-metrics-listen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let group = format!("239.255.52.9:{}", 30_000 + std::process::id() % 20_000);
    let files = [
        ("k", "0f0e0d0c0b0a09080706050403020100"),
        ("iv", "a1a2a3a4"),
        ("wrong", "00000000000000000000000000000000"),
    ];
    for (n, v) in files {
        let p = dir.join(n);
        std::fs::write(&p, v).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let metrics = loopback(free_tcp_port());
    let args: Vec<String> = [
        "listen",
        "--group",
        &group,
        "--suite",
        "ccm",
        "--key-file",
        &p("k"),
        "--iv-file",
        &p("iv"),
        "--epoch",
        "5",
        "--timeout",
        "60",
        "--metrics",
        &metrics.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let listen = Proc::spawn_program("listen", BIN, &args, false);
    let _ = scrape(metrics); // up
    let send = |key: &str, sid: &str, store: &str, msgs: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "send",
                "--group",
                &group,
                "--suite",
                "ccm",
                "--key-file",
                &p(key),
            ])
            .args(["--iv-file", &p("iv"), "--epoch", "5", "--sender-id", sid])
            .args(["--seq-store", &p(store), "--init-seq-store"])
            .args(msgs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    send("k", "3", "s3", &["6f6e", "6f6666"]);
    send("wrong", "4", "s4", &["6f6e"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let page = scrape(metrics);
        if sample(&page, "dtls_group_records_accepted_total", &[]) == Some(2.0)
            && sample(
                &page,
                "dtls_group_records_dropped_total",
                &["reason=\"authentication_failed\""],
            ) == Some(1.0)
        {
            break page;
        }
        assert!(Instant::now() < deadline, "counters never arrived:\n{page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    promtool_check("listen", &page);
    assert_eq!(
        sample(&page, "dtls_group_epoch", &["role=\"current\""]),
        Some(5.0)
    );
    assert_eq!(sample(&page, "dtls_group_senders_tracked", &[]), Some(1.0));
    assert!(page.contains(&format!("group=\"{group}\"")));
    drop(listen);
}

/// Waits until `url` answers 200.
fn wait_http(addr: SocketAddr, path: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok((200, _)) = group_std::metrics::fetch(addr, path) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "http://{addr}{path} never answered 200"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One instant query to Prometheus's HTTP API: the result vector.
fn query(prom: SocketAddr, q: &str) -> Vec<Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, body) = group_std::metrics::fetch(prom, &format!("/api/v1/query?query={enc}"))
        .unwrap_or_else(|e| panic!("query {q}: {e}"));
    assert_eq!(code, 200, "query {q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn first_value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_a_key_server_and_a_member() {
    if !have("prometheus") {
        return;
    }
    let inst = Installation::new("metrics-prom", 2);
    let (procs, ks_metrics, light_metrics) = lighting(&inst);
    // A Prometheus of its own: its own directory, configuration and port, loopback only.
    let prom_dir = inst.dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: keyserver\n    static_configs:\n      - targets: ['{ks_metrics}']\n\
             \x20 - job_name: member\n    static_configs:\n      - targets: ['{light_metrics}']\n"
        ),
    )
    .unwrap();
    let prom_addr = loopback(free_tcp_port());
    let args: Vec<String> = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", prom_dir.join("data").display()),
        format!("--web.listen-address={prom_addr}"),
        "--log.level=warn".into(),
    ];
    let prom = Proc::spawn_program("prometheus", "prometheus", &args, false);
    wait_http(prom_addr, "/-/ready", Duration::from_secs(30));
    println!("prometheus ready on {prom_addr}");
    let deadline = Instant::now() + Duration::from_secs(40);
    let (members, accepted) = loop {
        let members = first_value(&query(
            prom_addr,
            "dtls_group_keyserver_members{job=\"keyserver\",group_id=\"1\"}",
        ));
        let accepted = first_value(&query(
            prom_addr,
            "dtls_group_records_accepted_total{job=\"member\",group_id=\"1\",device=\"2\"}",
        ));
        if let (Some(m), Some(a)) = (members, accepted) {
            break (m, a);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had both series (members {members:?}, accepted {accepted:?}); \
             targets: {:?}",
            group_std::metrics::fetch(prom_addr, "/api/v1/targets")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("prometheus: members {members}, accepted {accepted}");
    assert_eq!(members, 2.0);
    assert!(accepted > 0.0);
    assert_eq!(accepted, 3.0);
    // Both targets are up.
    let up = query(prom_addr, "up");
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().all(|s| s["value"][1] == "1"), "{up:?}");
    drop(prom);
    drop(procs);
}
