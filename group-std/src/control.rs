//! A running node's status over a Unix socket: the node binds `PATH` and answers every
//! connection with one JSON line (counters, epochs, senders); `dtls-group status PATH` asks.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use group_core::group::Group;

/// The listening side, polled from the node's own loop (no thread).
///
/// Revoke and rekey go through this socket, so it is guarded twice:
/// - it is created with mode 0600 and never exists at its path with any other mode: it is
///   bound inside a fresh private (0700) directory next to `PATH`, set to 0600 there, and only
///   then linked to `PATH` (`link(2)` fails if `PATH` exists, so nothing is ever replaced);
/// - every connection's peer credentials (`SO_PEERCRED`) are checked: only root and the
///   node's own user are answered ([`peer_allowed`]).
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket we linked at `path`: on drop only that file is removed.
    id: (u64, u64),
    own_uid: u32,
    refused: std::cell::Cell<u64>,
}

/// The peer-credential rule of the control socket: root, or the node's own user.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

fn taken(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} {why}; refusing to replace it", path.display()),
    )
}

/// Removes `path` only if it is a stale socket: a socket (by its file type) on which nothing
/// answers. Anything else that exists is an error naming it.
fn clear_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(taken(path, "exists and is not a socket"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(taken(path, "is in use (a node answers on it)")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Stale: left by a node that was killed. Remove it only if it is still the same
            // socket (not replaced in between).
            let again = std::fs::symlink_metadata(path)?;
            if again.file_type().is_socket()
                && again.ino() == meta.ino()
                && again.dev() == meta.dev()
            {
                std::fs::remove_file(path)?;
            }
            Ok(())
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{} is a socket that can't be checked: {e}", path.display()),
        )),
    }
}

static BIND_SEQ: AtomicU64 = AtomicU64::new(0);

impl ControlServer {
    /// Binds `path` as a socket of mode 0600. A stale socket left by a killed node is
    /// replaced; any other existing file (a regular file, a directory, a live socket) is an
    /// error that names it and is left alone.
    pub fn bind(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{}: not a file name", path.display())))?;
        clear_stale_socket(&path)?;
        // A private directory beside PATH (same file system, so the link works): nobody else
        // can reach the socket in it while its mode is still the umask's.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".bind-{}-{}",
            std::process::id(),
            BIND_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let dir = parent.join(tmp_name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let inner = dir.join("s");
        let result = (|| {
            let listener = UnixListener::bind(&inner)?;
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
            std::fs::hard_link(&inner, &path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    taken(&path, "appeared while binding")
                } else {
                    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                }
            })?;
            Ok::<_, io::Error>(listener)
        })();
        let _ = std::fs::remove_file(&inner);
        let _ = std::fs::remove_dir(&dir);
        let listener = result?;
        let meta = std::fs::symlink_metadata(&path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            path,
            id: (meta.dev(), meta.ino()),
            own_uid: rustix::process::geteuid().as_raw(),
            refused: std::cell::Cell::new(0),
        })
    }

    /// Connections refused because of their peer's uid.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Answers every pending connection: reads one request line (e.g. `status`, `revoke 3`)
    /// and writes `answer(request)` as one line. Never blocks for long. A peer whose uid is
    /// neither root nor the node's own gets one error line, and its request is not read.
    pub fn poll(&self, mut answer: impl FnMut(&str) -> String) {
        while let Ok((s, _)) = self.listener.accept() {
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let mut w = &s;
            let peer = rustix::net::sockopt::socket_peercred(&s).map(|c| c.uid.as_raw());
            match peer {
                Ok(uid) if peer_allowed(uid, self.own_uid) => {}
                other => {
                    self.refused.set(self.refused.get().saturating_add(1));
                    let who = other.map_or_else(|_| "unknown".to_owned(), |u| u.to_string());
                    tracing::warn!(peer_uid = %who, "control connection refused");
                    let _ = writeln!(
                        w,
                        "{}",
                        serde_json::json!({
                            "error": format!(
                                "permission denied: uid {who} is neither root nor the node's user"
                            )
                        })
                    );
                    continue;
                }
            }
            let mut request = String::new();
            let mut reader = BufReader::new(&s);
            let _ = reader.read_line(&mut request);
            let _ = writeln!(w, "{}", answer(request.trim()));
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Only our own socket: if PATH was replaced by something else meanwhile, leave it.
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
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
