//! Shared by the integration tests that run the `dtls-group` binary: a fresh directory, key
//! pairs, free loopback ports, a check for an external tool, a small key-server configuration,
//! and a child process whose JSON output lines are collected as they come.
//!
//! Each test crate uses only part of it, hence `dead_code` allowed here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");

/// `$TMPDIR/dtls-group-TAG-PID`, emptied and created.
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dtls-group-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `dir/NAME` as a string, for command lines.
pub fn path_in(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// `dtls-group keygen --out dir/NAME` for each name; each must succeed.
pub fn keygen_all(dir: &Path, names: &[&str]) {
    for n in names {
        let out = Command::new(BIN)
            .args(["keygen", "--out", &path_in(dir, n)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keygen {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `dtls-group keyserver` arguments of the tests: configuration `config`, control socket
/// `control`, running at most `timeout_secs`, and `--init` (create the state) when `init`.
pub fn keyserver_args(config: &str, control: &Path, timeout_secs: u32, init: bool) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "keyserver".into(),
        "--config".into(),
        config.into(),
        "--control".into(),
        control.to_string_lossy().into_owned(),
        "--timeout".into(),
        timeout_secs.to_string(),
    ];
    if init {
        a.push("--init".into());
    }
    a
}

/// A free UDP port on 127.0.0.1 (bound, read, released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `tool --version` runs; if not, either skip (`SKIP_VAR=1`, returns false, and says
/// so) or fail with how to get it (`apt-get install PACKAGE`).
pub fn have_tool(tool: &str, package: &str, skip_var: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var(skip_var).as_deref() == Ok("1") {
        println!("SKIPPED: {tool} is not installed and {skip_var}=1");
        return false;
    }
    panic!(
        "{tool} is not installed: `apt-get install {package}` (Debian), or set \
         {skip_var}=1 to skip this test"
    );
}

/// Writes `dir/ks.toml`: a key server on 127.0.0.1:`port` (state `ks.redb`, key `server.key`)
/// with group 1 (`ccm`, informative address `group`) and device 2, `light` (`light.pub`), a
/// listener.
pub fn write_light_config(dir: &Path, port: u16, group: &str) {
    std::fs::write(
        dir.join("ks.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\nmulticast = \"{group}\"\n\n\
             [[device]]\nid = 2\nname = \"light\"\npublic_key = \"light.pub\"\nrole = \"listener\"\ngroups = [1]\n"
        ),
    )
    .unwrap();
}

/// A child process (`DTLS_GROUP_LOG=warn`, stderr inherited) whose stdout lines that are JSON
/// are collected as they come; killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Proc {
    /// Runs the binary under test with `args`; `stdin`: a pipe to write to, else none.
    pub fn spawn(name: &str, args: &[String], stdin: bool) -> Self {
        Self::spawn_program(name, BIN, args, stdin)
    }

    /// Runs `program` with `args`.
    pub fn spawn_program(name: &str, program: &str, args: &[String], stdin: bool) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("DTLS_GROUP_LOG", "warn")
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            name: name.into(),
            child,
            stdin,
            lines,
        }
    }

    /// Whether a line so far satisfies `pred`.
    pub fn has(&self, pred: impl Fn(&Value) -> bool) -> bool {
        self.lines.lock().unwrap().iter().any(pred)
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `pred`; fails after `limit`, showing the output.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.has(&pred) {
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; output: {:?}",
                self.name,
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `text`, hex-encoded, as one line to its standard input.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", hex::encode(text)).unwrap();
        stdin.flush().unwrap();
    }

    /// Whether it printed a delivered record whose plaintext is `text`.
    pub fn received(&self, text: &str) -> bool {
        let h = hex::encode(text);
        self.has(|v| v["plaintext"] == h.as_str())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub mod pg;
pub mod v2;
