//! Issue 10, operator findings 2, 3, 9, 10 and 12: what a careless operator (or another local
//! user) could do to a node through its files, sockets and arguments.
//!
//! Every process is bounded (a `--timeout`, a message count, or a deadline after which the test
//! kills it); network traffic stays on 127.0.0.1.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use group_std::control::ControlServer;

const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");
const KEY: &str = "0f0e0d0c0b0a09080706050403020100";
const IV: &str = "a1a2a3a4";
const SECRET: &str = "4242424242424242424242424242424242424242424242424242424242424242";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dtls-group-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process did not stop by itself within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Finding 2: `--control PATH` must never delete anything but a stale socket.

#[test]
fn control_bind_refuses_to_delete_a_file_that_is_not_a_stale_socket() {
    let d = tmpdir("ctl-file");
    // The typo of the finding: `--control ks.redb`.
    let state = d.join("ks.redb");
    std::fs::write(&state, b"the key server's state").unwrap();
    let e = ControlServer::bind(&state).expect_err("binding over a regular file must fail");
    assert!(
        e.to_string().contains(&state.display().to_string()),
        "the error names the file: {e}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), b"the key server's state");
    // A directory is not removed either.
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(ControlServer::bind(&sub).is_err());
    assert!(sub.is_dir());
    // A live socket (another node answering) is not taken over.
    let live = d.join("live.sock");
    let listener = UnixListener::bind(&live).unwrap();
    let e = ControlServer::bind(&live).expect_err("a live socket is in use");
    assert!(e.to_string().contains("live.sock"), "{e}");
    assert!(
        UnixStream::connect(&live).is_ok(),
        "the live socket still works"
    );
    drop(listener);
    // Now nothing answers on it: it is stale, and is replaced.
    let ctl = ControlServer::bind(&live).expect("a stale socket is replaced");
    assert!(UnixStream::connect(&live).is_ok());
    drop(ctl);
    assert!(!live.exists(), "the node removes its own socket on exit");
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// Finding 9: the control socket is 0600 from its creation, and peers of other users are refused.

#[test]
fn control_socket_appears_with_mode_0600_and_is_never_chmodded_in_place() {
    use rustix::fs::inotify;
    let d = tmpdir("ctl-mode");
    let path = d.join("node.sock");
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(
        &fd,
        &d,
        inotify::WatchFlags::CREATE | inotify::WatchFlags::ATTRIB,
    )
    .unwrap();
    let ctl = ControlServer::bind(&path).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "mode right after bind"
    );
    // Every change to the directory's entry `node.sock`: it must appear (create) and never have
    // its attributes changed afterwards (a chmod after bind means it existed with umask bits).
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut reader = inotify::Reader::new(&fd, &mut buf);
    let mut events = Vec::new();
    while let Ok(ev) = reader.next() {
        if ev.file_name().is_some_and(|n| n.to_bytes() == b"node.sock") {
            events.push(ev.events());
        }
    }
    assert!(
        events
            .iter()
            .any(|e| e.contains(inotify::ReadFlags::CREATE)),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.contains(inotify::ReadFlags::ATTRIB)),
        "the socket's mode was changed after it appeared at its path: {events:?}"
    );
    drop(ctl);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn control_socket_refuses_a_peer_of_another_uid() {
    // The decision itself, whatever user runs the tests.
    use group_std::control::peer_allowed;
    assert!(peer_allowed(0, 1000));
    assert!(peer_allowed(1000, 1000));
    assert!(!peer_allowed(65534, 1000));
    assert!(!peer_allowed(1000, 0));

    let root = rustix::process::geteuid().is_root();
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() {
        eprintln!("not root or no setpriv: only the decision function was tested");
        return;
    }
    // A real peer of another uid. The socket is 0600 (root's), so for this test it is opened
    // to everyone (as a careless `chmod 666` would) and its directory made searchable: the
    // peer-credential check is what must refuse.
    let d = tmpdir("ctl-peer");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = d.join("node.sock");
    let ctl = ControlServer::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            ctl.poll(|_| "{\"answered\":true}".to_owned());
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let ask = |as_nobody: bool| -> Output {
        let mut c = if as_nobody {
            let mut c = Command::new(setpriv);
            c.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                BIN,
            ]);
            c
        } else {
            Command::new(BIN)
        };
        let child = c
            .arg("status")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, Duration::from_secs(15))
    };
    let own = ask(false);
    let own_out = String::from_utf8_lossy(&own.stdout).into_owned();
    let other = ask(true);
    let other_out = String::from_utf8_lossy(&other.stdout).into_owned();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(own_out.contains("answered"), "root is answered: {own:?}");
    assert!(
        !other_out.contains("answered"),
        "uid 65534 must be refused: {other:?}"
    );
    assert!(
        other_out.contains("65534") || stderr(&other).contains("65534"),
        "the refusal names the uid: {other:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// Finding 10: one process per sequence store.

fn group() -> String {
    format!("239.255.48.7:{}", 30_000 + std::process::id() % 20_000)
}

fn send_cmd(store: &Path, init: bool, msgs: &[&str], interval_ms: u64) -> Command {
    let mut c = Command::new(BIN);
    c.args(["send", "--group", &group(), "--suite", "gcm"])
        .args(["--key", KEY, "--iv", IV])
        .args(["--epoch", "4", "--sender-id", "12", "--seq-store"])
        .arg(store)
        .args(["--interval", &interval_ms.to_string()])
        .args(msgs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if init {
        c.arg("--init-seq-store");
    }
    c
}

#[test]
fn two_send_processes_on_one_store_the_second_is_refused() {
    let d = tmpdir("seq-lock");
    let store = d.join("s.seq");
    let first = wait_output(
        send_cmd(&store, true, &["01"], 0).spawn().unwrap(),
        Duration::from_secs(20),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    // A long-running sender (40 messages, 100 ms apart: about 4 s).
    let msgs = vec!["6f6e"; 40];
    let mut running = send_cmd(&store, false, &msgs, 100).spawn().unwrap();
    let pid = running.id();
    // Wait until it has sent (it then holds the store).
    let mut stdout = running.stdout.take().unwrap();
    let mut first_line = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first_line).unwrap();
    // Its restarted twin on the same store.
    let twin = wait_output(
        send_cmd(&store, false, &["74776f"], 0).spawn().unwrap(),
        Duration::from_secs(20),
    );
    let err = stderr(&twin);
    running.stdout = Some(stdout);
    let running = wait_output(running, Duration::from_secs(30));
    assert!(running.status.success(), "{}", stderr(&running));
    assert_eq!(
        twin.status.code(),
        Some(2),
        "the twin must be refused: {twin:?}"
    );
    assert!(twin.stdout.is_empty(), "the twin sent nothing");
    assert!(err.contains("s.seq") && err.contains("in use"), "{err}");
    assert!(
        err.contains(&format!("pid {pid}")),
        "names the holder: {err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// Finding 12: `keyserver --init` writes no state unless the whole configuration works.

fn keygen(prefix: &Path) {
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn keyserver_init(cfg: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    let child = Command::new(BIN)
        .args(["keyserver", "--init", "--timeout", "1", "--config"])
        .arg(cfg)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(20))
}

#[test]
fn keyserver_init_writes_no_state_until_keys_and_sockets_are_ready() {
    let d = tmpdir("init");
    keygen(&d.join("server"));
    keygen(&d.join("dev"));
    let state = d.join("ks.redb");
    let cfg = d.join("ks.toml");
    let text = |port: u16, server_key: &str, dev_pub: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"{server_key}\"\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\n\
             [[device]]\nid = 1\npublic_key = \"{dev_pub}\"\nrole = \"sender\"\ngroups = [1]\n"
        )
    };
    let free_port = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };

    // A mistyped server key path.
    std::fs::write(&cfg, text(free_port(), "sever.key", "dev.pub")).unwrap();
    let out = keyserver_init(&cfg, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("not found") && stderr(&out).contains("sever.key"));
    assert!(!state.exists(), "a bad server key path left a state file");

    // A mistyped device public key path: "not found", never parsed as hex.
    std::fs::write(&cfg, text(free_port(), "server.key", "dve.pub")).unwrap();
    let out = keyserver_init(&cfg, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("not found") && err.contains("dve.pub"),
        "{err}"
    );
    assert!(!state.exists(), "a bad device key path left a state file");

    // A busy port.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    std::fs::write(&cfg, text(port, "server.key", "dev.pub")).unwrap();
    let out = keyserver_init(&cfg, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        !state.exists(),
        "a busy port left a state file: {}",
        stderr(&out)
    );
    drop(busy);

    // A control path that is taken (a regular file).
    let taken = d.join("taken");
    std::fs::write(&taken, b"x").unwrap();
    std::fs::write(&cfg, text(free_port(), "server.key", "dev.pub")).unwrap();
    let out = keyserver_init(&cfg, &["--control".as_ref(), taken.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!state.exists(), "a bad control path left a state file");
    assert_eq!(std::fs::read(&taken).unwrap(), b"x");

    // Fixed: the retry with --init works.
    let out = keyserver_init(&cfg, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(state.exists());
    // And a second --init says to start without it.
    let out = keyserver_init(&cfg, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("without --init"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// Finding 3: secrets from files (refused if group/other can read them) or standard input.

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    wait_output(child, Duration::from_secs(20))
}

#[test]
fn secrets_are_read_from_private_files_or_stdin_and_hex_arguments_warn() {
    let d = tmpdir("secrets");
    let native = [
        "keys",
        "native",
        "--group-id",
        "7",
        "--epoch",
        "1",
        "--suite",
        "ccm",
    ];
    let by_arg = run_with_stdin(&[&native[..], &["--secret", SECRET]].concat(), "");
    assert!(by_arg.status.success(), "{}", stderr(&by_arg));
    let err = stderr(&by_arg);
    assert!(
        err.starts_with("warning:") && err.contains("--secret") && !err.contains(SECRET),
        "a secret given as an argument is warned about: {err:?}"
    );

    let secret = d.join("epoch.secret");
    let s = secret.to_str().unwrap();
    write_mode(&secret, &format!("{SECRET}\n"), 0o644);
    let out = run_with_stdin(&[&native[..], &["--secret-file", s]].concat(), "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(s) && err.contains("0644"),
        "names file and mode: {err}"
    );
    assert!(!err.contains(SECRET));
    assert!(out.stdout.is_empty());

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_with_stdin(&[&native[..], &["--secret-file", s]].concat(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, by_arg.stdout);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    let out = run_with_stdin(&[&native[..], &["--secret-file", "-"]].concat(), SECRET);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, by_arg.stdout);

    let missing = d.join("nope.secret");
    let out = run_with_stdin(
        &[&native[..], &["--secret-file", missing.to_str().unwrap()]].concat(),
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // Record keys from files give the same record as from arguments.
    let key = d.join("k");
    let iv = d.join("iv");
    write_mode(&key, KEY, 0o600);
    write_mode(&iv, IV, 0o600);
    let seal = [
        "record",
        "seal",
        "--suite",
        "ccm",
        "--epoch",
        "1",
        "--sender-id",
        "2",
    ];
    let a = run_with_stdin(
        &[&seal[..], &["--seq", "3", "--key", KEY, "--iv", IV, "6869"]].concat(),
        "",
    );
    let b = run_with_stdin(
        &[
            &seal[..],
            &["--seq", "3", "--key-file", key.to_str().unwrap()],
            &["--iv-file", iv.to_str().unwrap(), "6869"],
        ]
        .concat(),
        "",
    );
    assert!(a.status.success() && b.status.success(), "{b:?}");
    assert_eq!(a.stdout, b.stdout);
    assert!(b.stderr.is_empty());

    // A device's private key file readable by others is refused too, naming it and its mode.
    keygen(&d.join("dev"));
    let dev_key = d.join("dev.key");
    std::fs::set_permissions(&dev_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run_with_stdin(
        &[
            "member",
            "--server",
            "127.0.0.1:9",
            "--server-key",
            d.join("dev.pub").to_str().unwrap(),
            "--device-key",
            dev_key.to_str().unwrap(),
            "--device-id",
            "1",
            "--group-id",
            "1",
            "--group",
            &group(),
            "--timeout",
            "1",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("dev.key") && stderr(&out).contains("0640"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&d);
}
