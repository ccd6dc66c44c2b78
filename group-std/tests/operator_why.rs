//! "Tell the operator why" (issue 15): a join that fails says why where the operator looks.
//! The key server logs each refusal at info level with the device ID and the reason (here in
//! JSON, `--log-format json`), at most once a minute per device and reason; a member that gets
//! no answer says so on stderr after its retries, and its summary says what it saw.
//!
//! Loopback only; every process has a `--timeout`; every wait a deadline.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");

#[test]
fn refused_joins_are_explained_by_key_server_and_member() {
    let dir = std::env::temp_dir().join(format!("dtls-group-why-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    for n in ["server", "light", "other"] {
        let out = Command::new(BIN)
            .args(["keygen", "--out", &p(n)])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let group = format!("239.255.54.1:{}", 30_000 + std::process::id() % 20_000);
    std::fs::write(
        dir.join("ks.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\nmulticast = \"{group}\"\n\n\
             [[device]]\nid = 2\nname = \"light\"\npublic_key = \"light.pub\"\nrole = \"listener\"\ngroups = [1]\n"
        ),
    )
    .unwrap();
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
