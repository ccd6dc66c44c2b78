//! The daemons as services: they tell systemd when they are ready (`$NOTIFY_SOCKET`,
//! `Type=notify`), stop cleanly on SIGTERM (a log line, the key server's control socket
//! removed and its state usable by the next start; the member's summary printed), as the units
//! in `contrib/systemd/` expect. Loopback only; every process and wait is bounded.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::BIN;

fn term(child: &Child) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

fn wait(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop by itself");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The next notification on `socket` (within 15 s).
fn next_notification(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("no notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn key_server_and_member_notify_readiness_and_stop_cleanly_on_sigterm() {
    let dir = common::fresh_dir("service");
    let p = |n: &str| common::path_in(&dir, n);
    common::keygen_all(&dir, &["server", "light"]);
    let port = common::free_udp_port();
    let group = format!("239.255.55.1:{}", 30_000 + std::process::id() % 20_000);
    common::write_light_config(&dir, port, &group);
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let ctrl = dir.join("ks.sock");
    let keyserver = |init: bool| {
        let mut c = Command::new(BIN);
        c.args([
            "keyserver",
            "--config",
            &p("ks.toml"),
            "--control",
            &p("ks.sock"),
        ])
        .args(["--timeout", "60"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("DTLS_GROUP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if init {
            c.arg("--init");
        }
        c.spawn().unwrap()
    };
    let ks = keyserver(true);
    let ready = next_notification(&notify);
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(ctrl.exists(), "ready means the control socket is there");

    // A member: ready at once, joined later; SIGTERM prints its summary.
    let mut member = Command::new(BIN)
        .args(["member", "--server", &format!("127.0.0.1:{port}")])
        .args([
            "--server-key",
            &p("server.pub"),
            "--device-key",
            &p("light.key"),
        ])
        .args(["--device-id", "2", "--group-id", "1", "--group", &group])
        .args(["--timeout", "60"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("DTLS_GROUP_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(next_notification(&notify).starts_with("READY=1"));
    assert_eq!(next_notification(&notify), "STATUS=joined");
    let stdout = member.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    term(&member);
    let out = wait(member, Duration::from_secs(10));
    assert!(out.status.success(), "{out:?}");
    let lines = lines.join().unwrap();
    let summary: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(
        summary["summary"]["epochs"]["current"].as_u64().is_some(),
        "{lines:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("member stopping (signal) signal=\"SIGTERM\""),
        "{stderr}"
    );
    assert!(next_notification(&notify).starts_with("STOPPING=1"));

    // The key server: SIGTERM, a log line, exit 0, its control socket gone.
    term(&ks);
    let out = wait(ks, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr.contains("key server stopping (signal); state is saved signal=\"SIGTERM\""),
        "{stderr}"
    );
    assert!(!ctrl.exists(), "the control socket is removed");
    assert!(next_notification(&notify).starts_with("STOPPING=1"));
    // The state is consistent: the next start (without --init) uses it.
    let again = keyserver(false);
    assert!(next_notification(&notify).starts_with("READY=1"));
    let status = Command::new(BIN)
        .args(["admin", &p("ks.sock"), "status"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["groups"][0]["members"][0]["device"], 2, "{s}");
    term(&again);
    assert!(wait(again, Duration::from_secs(10)).status.success());
}
