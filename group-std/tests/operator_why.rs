//! "Tell the operator why" (issue 15): a join that fails says why where the operator looks.
//! The key server logs each refusal at info level with the device ID and the reason (here in
//! JSON, `--log-format json`), at most once a minute per device and reason; a member that gets
//! no answer says so on stderr after its retries, and its summary says what it saw.
//!
//! Loopback only; every process has a `--timeout`; every wait a deadline.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::BIN;

#[test]
fn refused_joins_are_explained_by_key_server_and_member() {
    let dir = common::fresh_dir("why");
    let p = |n: &str| common::path_in(&dir, n);
    common::keygen_all(&dir, &["server", "light", "other"]);
    let port = common::free_udp_port();
    let group = format!("239.255.54.1:{}", 30_000 + std::process::id() % 20_000);
    common::write_light_config(&dir, port, &group);
    let ks = Command::new(BIN)
        .args([
            "keyserver",
            "--config",
            &p("ks.toml"),
            "--init",
            "--timeout",
            "9",
        ])
        .args(["--log-format", "json"])
        .env("DTLS_GROUP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let member = |device: &str, server_key: &str, key: &str| {
        Command::new(BIN)
            .args(["member", "--server", &format!("127.0.0.1:{port}")])
            .args(["--server-key", &p(server_key), "--device-key", &p(key)])
            .args(["--device-id", device, "--group-id", "1", "--group", &group])
            .args(["--timeout", "6"])
            .env("DTLS_GROUP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Device 2 with the light's own key as the server key (a provisioning mix-up); device 9,
    // which the key server does not know.
    let wrong_server_key = member("2", "light.pub", "light.key");
    let unknown_device = member("9", "server.pub", "other.key");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut outs = Vec::new();
    for child in [wrong_server_key, unknown_device] {
        let out = child.wait_with_output().unwrap();
        assert!(Instant::now() < deadline);
        outs.push(out);
    }
    for out in &outs {
        assert_eq!(out.status.code(), Some(1), "never joined: exit 1");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let s = &summary["summary"];
        assert_eq!(s["state"], "Joining", "{summary}");
        assert!(s["join_requests"].as_u64().unwrap() >= 3, "{summary}");
        assert_eq!(s["answers"], 0, "{summary}");
        let why = s["why"].as_str().unwrap();
        assert!(
            why.starts_with("no answer from the key server at 127.0.0.1:"),
            "{why}"
        );
        assert!(why.contains("--server-key"), "{why}");
        // ... and said it on stderr while retrying, once.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr
                .matches("not joined: no answer from the key server")
                .count(),
            1,
            "{stderr}"
        );
    }
    let ks_out = ks.wait_with_output().unwrap();
    assert!(ks_out.status.success(), "{ks_out:?}");
    let log: Vec<Value> = String::from_utf8_lossy(&ks_out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let refusals: Vec<&Value> = log
        .iter()
        .filter(|v| v["fields"]["message"] == "device message refused")
        .collect();
    let find = |device: u64, reason: &str| {
        refusals
            .iter()
            .filter(|v| v["fields"]["device"] == device && v["fields"]["reason"] == reason)
            .count()
    };
    // Each refused device is named, with its reason, at info level, once (the retries within
    // the minute are counted, not logged).
    assert_eq!(find(2, "bad_signature"), 1, "{refusals:?}");
    assert_eq!(find(9, "unknown_device"), 1, "{refusals:?}");
    assert!(
        refusals.iter().all(|v| v["level"] == "INFO"),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .all(|v| v["fields"]["kind"] == "JoinRequest" && v["fields"]["group"] == 1),
        "{refusals:?}"
    );
    assert!(
        log.iter()
            .any(|v| v["fields"]["message"] == "key server running"),
        "{log:?}"
    );
}

/// `keyserver --check` validates without touching state; one `--timeout` format everywhere;
/// `admin status` lists every configured device with its name, joined or not; `member --stdin`
/// warns about lines that are not hex.
#[test]
fn check_timeouts_device_list_and_stdin_warnings() {
    let dir = common::fresh_dir("why2");
    let p = |n: &str| common::path_in(&dir, n);
    common::keygen_all(&dir, &["server", "switch", "light"]);
    let port = common::free_udp_port();
    let group = format!("239.255.54.2:{}", 30_000 + std::process::id() % 20_000);
    let config = |light_key: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\nmulticast = \"{group}\"\nactivation_delay_ms = 100\n\n\
             [[device]]\nid = 1\nname = \"hall switch\"\npublic_key = \"switch.pub\"\nrole = \"sender\"\ngroups = [1]\n\n\
             [[device]]\nid = 2\nname = \"hall light\"\npublic_key = \"{light_key}\"\nrole = \"listener\"\ngroups = [1]\n"
        )
    };
    // --check: a missing key file is named; a good configuration is summarised; no state.
    std::fs::write(dir.join("ks.toml"), config("lihgt.pub")).unwrap();
    let out = Command::new(BIN)
        .args(["keyserver", "--config", &p("ks.toml"), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lihgt.pub") && err.contains("device 2"),
        "{err}"
    );
    std::fs::write(dir.join("ks.toml"), config("light.pub")).unwrap();
    let out = Command::new(BIN)
        .args(["keyserver", "--config", &p("ks.toml"), "--check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"], "ok");
    assert_eq!(v["devices"], 2);
    assert_eq!(v["state_exists"], false);
    assert!(!dir.join("ks.redb").exists(), "--check touched the state");

    // One --timeout format: decimals everywhere, the same error for bad values.
    for cmd in [
        vec!["keyserver", "--config", "x.toml", "--timeout", "soon"],
        vec![
            "listen",
            "--group",
            "239.255.54.3:4000",
            "--suite",
            "ccm",
            "--timeout",
            "inf",
        ],
    ] {
        let out = Command::new(BIN).args(&cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a number of seconds"), "{cmd:?}: {err}");
    }

    let t = Instant::now();
    let ks = Command::new(BIN)
        .args([
            "keyserver",
            "--config",
            &p("ks.toml"),
            "--init",
            "--timeout",
            "6.5",
        ])
        .args(["--control", &p("ks.sock")])
        .env("DTLS_GROUP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("ks.sock").exists() {
        assert!(Instant::now() < deadline, "key server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The log level changes at run time: from warn (no join events) to info.
    let admin = |req: &[&str]| {
        Command::new(BIN)
            .arg("admin")
            .arg(p("ks.sock"))
            .args(req)
            .output()
            .unwrap()
    };
    let bad = admin(&["log", "loud"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("unknown log level"));
    let ok = admin(&["log", "info"]);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        r#"{"log":"info"}"#
    );
    // The switch joins and sends from stdin, one line of which is not hex.
    let mut switch = Command::new(BIN)
        .args(["member", "--server", &format!("127.0.0.1:{port}")])
        .args([
            "--server-key",
            &p("server.pub"),
            "--device-key",
            &p("switch.key"),
        ])
        .args(["--device-id", "1", "--group-id", "1", "--group", &group])
        .args([
            "--role",
            "sender",
            "--seq-store",
            &p("switch.seq"),
            "--init-seq-store",
        ])
        .args(["--stdin", "--timeout", "2.5"])
        .env("DTLS_GROUP_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = switch.stdin.take().unwrap();
        writeln!(stdin, "6f6e\nturn on\n6f6666").unwrap();
    }
    let out = switch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--stdin: a line that is not hex was skipped") && stderr.contains("line=2"),
        "{stderr}"
    );
    let sent = String::from_utf8_lossy(&out.stdout)
        .matches("\"sent\"")
        .count();
    assert_eq!(sent, 2, "{}", String::from_utf8_lossy(&out.stdout));
    // admin status: both devices, by name; the switch joined, the light never did.
    let status = Command::new(BIN)
        .args(["admin", &p("ks.sock"), "status"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    let devices = s["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{s}");
    assert_eq!(devices[0]["name"], "hall switch");
    assert_eq!(devices[0]["joined"], serde_json::json!([1]));
    assert_eq!(devices[0]["role"], "sender");
    assert_eq!(devices[1]["name"], "hall light");
    assert_eq!(devices[1]["admitted"], true);
    assert_eq!(devices[1]["joined"], serde_json::json!([]));
    // The key server's decimal --timeout ends it by itself.
    let out = ks.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("log level changed (admin log) level=\"info\""),
        "{log}"
    );
    assert!(
        log.contains("event=Joined"),
        "info lines after the change: {log}"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(6400) && took < Duration::from_secs(12),
        "{took:?}"
    );
}
