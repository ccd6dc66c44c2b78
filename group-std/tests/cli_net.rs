//! `dtls-group listen`, `send` and `status` as real processes on IPv4 loopback multicast.
//! Bounded: every process has a --timeout or a count, every wait a deadline.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");
const KEY: &str = "0f0e0d0c0b0a09080706050403020100";
const IV: &str = "a1a2a3a4";

fn group() -> String {
    format!("239.255.48.3:{}", 30_000 + std::process::id() % 20_000)
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "process did not stop by itself");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The key and IV as files of mode 0600 in `dir` (secrets are not passed as arguments).
fn key_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (k, i) = (dir.join("group.key"), dir.join("group.iv"));
    for (p, v) in [(&k, KEY), (&i, IV)] {
        std::fs::write(p, v).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (k, i)
}

fn send(store: &std::path::Path, init: bool, msgs: &[&str]) -> Output {
    let (key, iv) = key_files(store.parent().unwrap());
    let mut c = Command::new(BIN);
    c.args(["send", "--group", &group(), "--suite", "gcm", "--key-file"])
        .arg(&key)
        .arg("--iv-file")
        .arg(&iv)
        .args(["--epoch", "4", "--sender-id", "12", "--seq-store"])
        .arg(store)
        .args(msgs);
    if init {
        c.arg("--init-seq-store");
    }
    c.output().unwrap()
}

#[test]
fn listeners_receive_what_send_sends_and_status_reports_counters() {
    let dir = std::env::temp_dir().join(format!("dtls-group-clinet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("light.sock");
    let (key, iv) = key_files(&dir);
    let listeners: Vec<Child> = (0..3)
        .map(|i| {
            let mut c = Command::new(BIN);
            c.args([
                "listen",
                "--group",
                &group(),
                "--suite",
                "gcm",
                "--key-file",
            ])
            .arg(&key)
            .arg("--iv-file")
            .arg(&iv)
            .args(["--count", "3", "--timeout", "15"]);
            if i == 0 {
                c.arg("--control").arg(&control);
            }
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait until the first listener answers on its control socket (it is then receiving).
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let out = Command::new(BIN)
            .arg("status")
            .arg(&control)
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "listener never came up");
        std::thread::sleep(Duration::from_millis(50));
    };
    let v: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(v["accepted"], 0);
    std::thread::sleep(Duration::from_millis(200));

    let store = dir.join("s.seq");
    // A missing store is refused with a clear message, nothing is sent.
    let out = send(&store, false, &["6f6e"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing") && err.lines().count() == 1, "{err}");
    let out = send(&store, true, &["6f6e", "6f6666"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = send(&store, false, &["6f6e"]);
    assert!(out.status.success());
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(last["seq"], 1000, "restart resumes at the reserved mark");
    // Re-initialising an existing store is refused: it would forget reservations.
    assert_eq!(send(&store, true, &["6f6e"]).status.code(), Some(2));

    for (i, l) in listeners.into_iter().enumerate() {
        let out = wait_output(l, Duration::from_secs(20));
        assert!(out.status.success(), "listener {i}: {:?}", out);
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        let texts: Vec<&str> = lines[..3]
            .iter()
            .map(|l| l["plaintext"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["6f6e", "6f6666", "6f6e"]);
        assert!(
            lines[..3]
                .iter()
                .all(|l| l["sender_id"] == 12 && l["epoch"] == 4)
        );
        assert_eq!(lines[3]["summary"]["accepted"], 3);
    }
    // A corrupt store is refused too.
    std::fs::write(&store, b"garbage").unwrap();
    let out = send(&store, false, &["6f6e"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    let _ = std::fs::remove_dir_all(&dir);
}
