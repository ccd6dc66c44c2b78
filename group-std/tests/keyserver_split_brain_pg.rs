//! Issue 16, split brain: two `dtls-group keyserver` processes on one PostgreSQL database (the
//! test's own, on loopback). The active one is stopped with SIGSTOP until the standby takes
//! over; the new active server serves members (a device joins through it, and a rekey reaches
//! the device that joined through the old one, at the address the old one stored); then the old
//! one is continued with work waiting in its socket: it steps down by itself (status `fenced`)
//! and none of its writes lands (the database is unchanged by it). Every wait is bounded.
#![cfg(feature = "postgres")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as StdInstant};

use common::pg::Pg;
use group_core::keydist::{
    DeviceId, Member, MemberConfig, MemberCredentials, MemberEvent, Message, Role, parse,
};
use group_core::sequence::MemorySequenceStore;
use group_core::time::Instant;
use group_std::keyfile::{self, os_rng};
use serde_json::Value;

const GID: u32 = 3;
const LEASE_MS: u64 = 1000;
const RENEW_MS: u64 = 250;

/// A key-server process, its stderr in a log file; killed when dropped.
struct Server {
    child: Child,
    control: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Server {
    fn start(dir: &Path, name: &str, conninfo: &str, init: bool) -> Server {
        Self::start_with(dir, name, conninfo, init, LEASE_MS, RENEW_MS)
    }

    fn start_with(
        dir: &Path,
        name: &str,
        conninfo: &str,
        init: bool,
        lease_ms: u64,
        renew_ms: u64,
    ) -> Server {
        let port = common::free_udp_port();
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\nstate = \"{name}.hwm\"\nserver_key = \"server.key\"\n\n\
                 [store]\nkind = \"postgres\"\nconninfo = \"{conninfo}\"\nserver_name = \"{name}\"\n\
                 lease_ms = {lease_ms}\nrenew_ms = {renew_ms}\n\n\
                 [[group]]\nid = {GID}\nsuite = \"ccm\"\nactivation_delay_ms = 0\ngrace_ms = 200\n\
                 rekey_on_join = false\n\n\
                 [[device]]\nid = 1\nname = \"switch\"\npublic_key = \"d1.pub\"\nrole = \"sender\"\ngroups = [{GID}]\n\n\
                 [[device]]\nid = 2\nname = \"light\"\npublic_key = \"d2.pub\"\nrole = \"listener\"\ngroups = [{GID}]\n"
            ),
        )
        .unwrap();
        let control = dir.join(format!("{name}.sock"));
        let metrics: SocketAddr = format!("127.0.0.1:{}", common::free_tcp_port())
            .parse()
            .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut args = vec![
            "keyserver".to_owned(),
            "--config".into(),
            cfg.to_string_lossy().into_owned(),
            "--control".into(),
            control.to_string_lossy().into_owned(),
            "--timeout".into(),
            "120".into(),
            "--metrics".into(),
            metrics.to_string(),
        ];
        if init {
            args.push("--init".into());
        }
        let child = Command::new(common::BIN)
            .args(&args)
            .env("DTLS_GROUP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Server {
            child,
            control,
            log,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            metrics,
        }
    }

    fn status(&self) -> Option<Value> {
        let a = group_std::control::request(&self.control, "status").ok()?;
        serde_json::from_str(&a).ok()
    }

    fn ask(&self, req: &str) -> Value {
        serde_json::from_str(&group_std::control::request(&self.control, req).unwrap()).unwrap()
    }

    /// Waits until its status satisfies `pred`; returns how long that took.
    fn wait(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Duration {
        let t0 = StdInstant::now();
        loop {
            if let Some(s) = self.status()
                && pred(&s)
            {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "timed out waiting for {what}; status {:?}; log:\n{}",
                self.status(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The value of an unlabelled metric on its page.
    fn metric(&self, name: &str) -> Option<u64> {
        let (_, page) = group_std::metrics::fetch(self.metrics, "/metrics").ok()?;
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device: the member state machine on its own loopback socket.
struct Device {
    member: Member<MemorySequenceStore>,
    sock: UdpSocket,
    t0: StdInstant,
    events: Vec<MemberEvent>,
    sent: Vec<Vec<u8>>,
}

impl Device {
    fn new(dir: &Path, id: u32, role: Role) -> Device {
        let key = keyfile::read_private(&dir.join(format!("d{id}.key"))).unwrap();
        let server_pub = keyfile::read_public(&dir.join("server.pub").to_string_lossy()).unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        Device {
            member: Member::new(
                MemberConfig::new(DeviceId(id), GID, role),
                MemberCredentials::signed(key, server_pub),
                MemorySequenceStore::commissioned(),
            ),
            sock,
            t0: StdInstant::now(),
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant(self.t0.elapsed().as_millis() as u64)
    }

    /// Exchanges messages with `server` until `done`, for at most `limit`.
    fn pump(&mut self, server: SocketAddr, limit: Duration, done: impl Fn(&Device) -> bool) {
        let mut buf = [0u8; 2048];
        let deadline = StdInstant::now() + limit;
        while !done(self) {
            assert!(
                StdInstant::now() < deadline,
                "device timed out: {:?}",
                self.events
            );
            let now = self.now();
            while let Some(n) = self
                .member
                .poll_transmit(now, &mut os_rng(), &mut buf)
                .unwrap()
            {
                self.sent.push(buf[..n].to_vec());
                self.sock.send_to(&buf[..n], server).unwrap();
            }
            while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let _ = self.member.handle_message(self.now(), &buf[..n]);
            }
            self.member.handle_timeout(self.now());
            while let Some(e) = self.member.poll_event() {
                self.events.push(e);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn installed(&self, epoch: u16) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, MemberEvent::BundleInstalled { epoch: x, .. } if x.0 == epoch))
    }
}

/// Every record row (kind, key, value) and the lease row (holder, token, generation).
type Snapshot = (Vec<(String, i64, Vec<u8>)>, (String, i64, i64));

/// The database as it is now.
fn snapshot(c: &mut postgres::Client) -> Snapshot {
    let rows = c
        .query(
            "SELECT kind, key, value FROM keyserver_rows ORDER BY kind, key",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let l = c
        .query_one("SELECT holder, token, generation FROM keyserver_lease", &[])
        .unwrap();
    (rows, (l.get(0), l.get(1), l.get(2)))
}

#[test]
fn a_paused_active_server_writes_nothing_and_steps_down() {
    let Some(pg) = Pg::start("split-brain") else {
        return;
    };
    pg.create_db("ks");
    let dir = common::fresh_dir("split-brain");
    keyfile::generate(&dir.join("server")).unwrap();
    keyfile::generate(&dir.join("d1")).unwrap();
    keyfile::generate(&dir.join("d2")).unwrap();
    let ci = pg.conninfo("ks");
    let lease = Duration::from_millis(LEASE_MS);

    let a = Server::start(&dir, "a", &ci, true);
    a.wait("a active", Duration::from_secs(20), |s| {
        s["role"] == "active"
    });
    let b = Server::start(&dir, "b", &ci, false);
    b.wait("b standby", Duration::from_secs(20), |s| {
        s["role"] == "standby" && s["lease"]["holder"] == "a"
    });

    // A standby refuses operator requests with its role (what `admin` skips).
    let r = b.ask(&format!("rekey {GID}"));
    assert_eq!(
        (r["error"].as_str(), r["active"].as_str()),
        (Some("standby"), Some("a")),
        "{r}"
    );
    assert_eq!(b.status().unwrap()["store"], "postgres");
    assert_eq!(b.metric("dtls_group_keyserver_role"), Some(0), "standby");
    assert_eq!(a.metric("dtls_group_keyserver_role"), Some(1), "active");
    assert_eq!(a.metric("dtls_group_keyserver_lease_token"), Some(1));

    // Device 1 joins through a.
    let mut d1 = Device::new(&dir, 1, Role::Sender);
    d1.member.join(d1.now()).unwrap();
    d1.pump(a.addr, Duration::from_secs(20), |d| d.member.is_joined());
    // The standby answers no device: its messages are dropped and counted.
    let join = d1
        .sent
        .iter()
        .find(|m| matches!(parse(m).unwrap().message, Message::JoinRequest(_)))
        .unwrap()
        .clone();
    d1.sock.send_to(&join, b.addr).unwrap();
    b.wait("b counts a dropped message", Duration::from_secs(5), |s| {
        s["standby_dropped"].as_u64() >= Some(1)
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = [0u8; 2048];
    assert!(d1.sock.recv_from(&mut buf).is_err(), "the standby answered");

    // a is paused; b takes over.
    a.signal("-STOP");
    let took = b.wait("b takes over", lease * 5, |s| s["role"] == "active");
    eprintln!(
        "FAILOVER: standby active {} ms after SIGSTOP of the active server (lease {LEASE_MS} ms, renew {RENEW_MS} ms)",
        took.as_millis()
    );
    assert!(took >= lease / 2, "taken over too early: {took:?}");
    assert!(took < lease + Duration::from_millis(RENEW_MS) + Duration::from_secs(2));
    let sb = b.status().unwrap();
    assert_eq!(sb["lease"]["holder"], "b");
    assert_eq!(sb["lease"]["my_token"], 2);
    assert_eq!(b.metric("dtls_group_keyserver_role"), Some(1));
    assert_eq!(b.metric("dtls_group_keyserver_takeovers_total"), Some(1));
    assert_eq!(b.metric("dtls_group_keyserver_lease_token"), Some(2));

    // b serves members: device 2 joins through it, and a rekey reaches device 1 at the
    // address a stored.
    let mut d2 = Device::new(&dir, 2, Role::Listener);
    d2.member.join(d2.now()).unwrap();
    d2.pump(b.addr, Duration::from_secs(20), |d| d.member.is_joined());
    let r = b.ask(&format!("rekey {GID}"));
    let epoch = r["epoch"].as_u64().expect("rekey answered") as u16;
    d1.pump(b.addr, Duration::from_secs(20), |d| d.installed(epoch));
    d2.pump(b.addr, Duration::from_secs(20), |d| d.installed(epoch));
    assert!(b.ask("status")["groups"].as_array().is_some());

    // b goes quiet (the old epoch's grace ends); the database as it is now.
    let mut c = postgres::Client::connect(&ci, postgres::NoTls).unwrap();
    let mut before = snapshot(&mut c);
    let stable = StdInstant::now();
    loop {
        std::thread::sleep(Duration::from_millis(600));
        let now = snapshot(&mut c);
        if now == before {
            break;
        }
        before = now;
        assert!(
            stable.elapsed() < Duration::from_secs(20),
            "b never went quiet"
        );
    }

    // Work waits in a's socket: a join request and a fresh device message.
    d1.sock.send_to(&join, a.addr).unwrap();
    d2.member.request_rekey(d2.now()).unwrap();
    d2.pump(a.addr, Duration::from_secs(1), |d| !d.sent.is_empty());
    a.signal("-CONT");
    let fenced = a.wait("a steps down", Duration::from_secs(10), |s| {
        s["role"] == "fenced"
    });
    eprintln!(
        "STEP DOWN: the old active server reported fenced {} ms after SIGCONT",
        fenced.as_millis()
    );
    let sa = a.status().unwrap();
    assert!(
        sa.get("groups").is_none(),
        "a fenced server shows no state: {sa}"
    );
    assert_eq!(sa["lease"]["holder"], "b");
    // Give it time to do anything it might still do.
    std::thread::sleep(lease * 2);
    let after = snapshot(&mut c);
    assert_eq!(after.1, before.1, "the lease row changed");
    assert!(
        after.0 == before.0,
        "the records changed after a was continued"
    );
    let sa = a.status().unwrap();
    assert_ne!(sa["role"], "active");
    assert_eq!(a.metric("dtls_group_keyserver_role"), Some(2), "fenced");
    assert_eq!(a.metric("dtls_group_keyserver_stepped_down_total"), Some(1));
    assert!(a.metric("dtls_group_keyserver_standby_dropped_total") >= Some(1));
    assert_eq!(b.status().unwrap()["role"], "active");
    let alog = std::fs::read_to_string(&a.log).unwrap();
    assert!(alog.contains("stepped down"), "a's log:\n{alog}");
    let blog = std::fs::read_to_string(&b.log).unwrap();
    assert!(blog.contains("lease acquired: active"), "b's log:\n{blog}");
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fence, not the clock: the lease is taken from the active server while it believes it
/// still holds it (the database's expiry moved, as a jump of the database's clock or an
/// operator would do). Its next write is refused by the database, it steps down at once, and the
/// write is not in the database.
#[test]
fn a_write_under_a_lost_lease_is_refused_by_the_database() {
    let Some(pg) = Pg::start("fence-daemon") else {
        return;
    };
    pg.create_db("ks");
    let dir = common::fresh_dir("fence-daemon");
    keyfile::generate(&dir.join("server")).unwrap();
    keyfile::generate(&dir.join("d1")).unwrap();
    keyfile::generate(&dir.join("d2")).unwrap();
    let ci = pg.conninfo("ks");
    // a renews rarely (so it still believes in its lease), b polls often.
    let a = Server::start_with(&dir, "a", &ci, true, 6000, 3000);
    a.wait("a active", Duration::from_secs(20), |s| {
        s["role"] == "active"
    });
    let b = Server::start_with(&dir, "b", &ci, false, 6000, 100);
    b.wait("b standby", Duration::from_secs(20), |s| {
        s["role"] == "standby"
    });
    let mut c = postgres::Client::connect(&ci, postgres::NoTls).unwrap();
    let (_, (_, _, generation_before)) = snapshot(&mut c);

    // Right after a renewal of a's, pause it, and hand the lease to b behind its back.
    a.wait("a just renewed", Duration::from_secs(10), |s| {
        s["lease"]["left_ms"].as_u64() > Some(5700)
    });
    a.signal("-STOP");
    c.execute("UPDATE keyserver_lease SET expires_at = now()", &[])
        .unwrap();
    b.wait("b takes over", Duration::from_secs(5), |s| {
        s["role"] == "active"
    });
    let (rows_b, lease_b) = snapshot(&mut c);
    assert_eq!((lease_b.0.as_str(), lease_b.1), ("b", 2));

    // An operator's rekey waits in a's control socket; a continues well within its own lease.
    let control = a.control.clone();
    let rekey = std::thread::spawn(move || {
        group_std::control::request(&control, &format!("rekey {GID}")).unwrap()
    });
    std::thread::sleep(Duration::from_millis(100));
    a.signal("-CONT");
    let answer: Value = serde_json::from_str(&rekey.join().unwrap()).unwrap();
    assert!(
        answer.get("error").is_some(),
        "a's rekey succeeded: {answer}"
    );
    a.wait("a fenced", Duration::from_secs(5), |s| {
        s["role"] == "fenced"
    });
    assert_eq!(
        a.metric("dtls_group_keyserver_fenced_commits_total"),
        Some(1)
    );
    let alog = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        alog.contains("write refused by the database") && alog.contains("stepped down"),
        "a's log:\n{alog}"
    );
    // Nothing of a's rekey landed: the rows are b's, the generation only moved by b's writes.
    let (rows_now, lease_now) = snapshot(&mut c);
    assert_eq!(rows_now, rows_b);
    assert_eq!((lease_now.0.as_str(), lease_now.1), ("b", 2));
    assert!(lease_now.2 > generation_before, "b's takeover wrote");
    assert_eq!(b.status().unwrap()["role"], "active");
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database restored from an older snapshot: the key server that saw the newer state refuses
/// to start on it, and says why.
#[test]
fn a_key_server_refuses_a_restored_snapshot() {
    let Some(pg) = Pg::start("restore-daemon") else {
        return;
    };
    pg.create_db("ks");
    let dir = common::fresh_dir("restore-daemon");
    keyfile::generate(&dir.join("server")).unwrap();
    keyfile::generate(&dir.join("d1")).unwrap();
    keyfile::generate(&dir.join("d2")).unwrap();
    let ci = pg.conninfo("ks");
    let stop = |mut s: Server| {
        s.signal("-TERM");
        let t0 = StdInstant::now();
        while s.child.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no clean stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let a = Server::start(&dir, "a", &ci, true);
    a.wait("a active", Duration::from_secs(20), |s| {
        s["role"] == "active"
    });
    stop(a);
    pg.copy_db("ks", "snap");
    let a = Server::start(&dir, "a", &ci, false);
    a.wait("a active again", Duration::from_secs(20), |s| {
        s["role"] == "active"
    });
    assert!(a.ask(&format!("rekey {GID}"))["epoch"].as_u64().is_some());
    stop(a);
    // The operator restores the snapshot and starts the key server on it.
    let mut a = Server::start(&dir, "a", &pg.conninfo("snap"), false);
    let t0 = StdInstant::now();
    let status = loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "started on the snapshot"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(log.contains("restored from an old snapshot"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The database drops the key server's connections (a restart or failover of PostgreSQL): the
/// active server gives the lease up, steps down, reconnects and takes the lease again (a new
/// token, the state loaded again), with nobody else there.
#[test]
fn a_lost_database_connection_is_a_step_down_and_a_new_takeover() {
    let Some(pg) = Pg::start("reconnect") else {
        return;
    };
    pg.create_db("ks");
    let dir = common::fresh_dir("reconnect");
    keyfile::generate(&dir.join("server")).unwrap();
    keyfile::generate(&dir.join("d1")).unwrap();
    keyfile::generate(&dir.join("d2")).unwrap();
    let ci = pg.conninfo("ks");
    let a = Server::start(&dir, "a", &ci, true);
    a.wait("a active", Duration::from_secs(20), |s| {
        s["role"] == "active"
    });
    let mut c = postgres::Client::connect(&ci, postgres::NoTls).unwrap();
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'dtls-group-keyserver'",
        &[],
    )
    .unwrap();
    let took = a.wait("a active again", Duration::from_secs(10), |s| {
        s["role"] == "active" && s["lease"]["my_token"] == 2
    });
    eprintln!(
        "RECONNECT: active again under token 2 {} ms after its connections were dropped",
        took.as_millis()
    );
    let s = a.status().unwrap();
    assert_eq!(
        (s["takeovers"].as_u64(), s["stepped_down"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert_eq!(
        s["groups"].as_array().map(Vec::len),
        Some(1),
        "state loaded again: {s}"
    );
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(log.contains("stepped down"), "{log}");
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}
