//! A running node's status over a Unix socket: the node binds `PATH` and answers every
//! connection with one JSON line (counters, epochs, senders); `dtls-group status PATH` asks.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use group_core::group::Group;

/// The listening side, polled from the node's own loop (no thread).
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (a stale socket file left by a killed node is replaced).
    pub fn bind(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if path.exists() && UnixStream::connect(&path).is_err() {
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        // Revoke and rekey go through this socket: only the node's user may connect.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    /// Answers every pending connection: reads one request line (e.g. `status`, `revoke 3`)
    /// and writes `answer(request)` as one line. Never blocks for long.
    pub fn poll(&self, mut answer: impl FnMut(&str) -> String) {
        while let Ok((s, _)) = self.listener.accept() {
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let mut request = String::new();
            let mut reader = BufReader::new(&s);
            let _ = reader.read_line(&mut request);
            let mut w = &s;
            let _ = writeln!(w, "{}", answer(request.trim()));
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Asks the node at `path` for its status line.
pub fn query(path: &Path) -> io::Result<String> {
    request(path, "status")
}

/// Sends one request line to the node at `path` and returns its one-line answer.
pub fn request(path: &Path, line: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{line}")?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    Ok(answer.trim_end().to_owned())
}

/// A group's status as one JSON object: counters by outcome, epochs, known senders.
pub fn group_status<const N: usize, const W: usize>(g: &Group<N, W>) -> serde_json::Value {
    let c = g.counters();
    let mut dropped = serde_json::Map::new();
    for (k, v) in c.drop_reasons() {
        dropped.insert(k.to_owned(), v.into());
    }
    let e = g.epochs();
    let senders: Vec<serde_json::Value> = g
        .senders()
        .map(|s| {
            serde_json::json!({
                "sender_id": s.sender_id.0,
                "epoch": s.current.map(|(e, _)| e.0),
                "highest_seq": s.current.and_then(|(_, h)| h),
            })
        })
        .collect();
    serde_json::json!({
        "accepted": c.accepted,
        "sealed": c.sealed,
        "dropped": dropped,
        "epochs": {
            "previous": e.previous().map(|x| x.0),
            "current": e.current().map(|x| x.epoch().0),
            "staged": e.staged().map(|x| x.0),
        },
        "next_send": g.next_send_seq().map(|(e, s)| serde_json::json!({"epoch": e.0, "seq": s})),
        "senders": senders,
    })
}
