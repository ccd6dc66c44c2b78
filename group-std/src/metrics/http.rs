//! The `/metrics` responder: a minimal HTTP/1.1 server in its own thread, answered from the
//! node's loop, and a small client for tests and users without curl.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::exposition::CONTENT_TYPE;

/// How long the responder waits for a request, or for the node to render the page.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head read.
const MAX_REQUEST: usize = 8192;

/// One scrape waiting for the page.
struct Scrape {
    reply: mpsc::SyncSender<String>,
}

/// A `/metrics` endpoint: an HTTP/1.1 responder in its own thread, answered from the node's
/// loop through [`poll`](Self::poll). Dropping it stops the thread and closes the port.
pub struct MetricsServer {
    requests: mpsc::Receiver<Scrape>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` (TCP) and starts the responder thread. Errors name the address.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // At most a few scrapes wait at once; more are answered 503 by the responder.
        let (tx, rx) = mpsc::sync_channel::<Scrape>(2);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &tx, &stop_thread))?;
        Ok(Self {
            requests: rx,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the port chosen, if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers the scrapes waiting now (if any) with `render()`, called at most once.
    pub fn poll(&self, render: impl FnOnce() -> String) {
        let Ok(first) = self.requests.try_recv() else {
            return;
        };
        let page = render();
        let mut next = Some(first);
        while let Some(s) = next {
            let _ = s.reply.try_send(page.clone());
            next = self.requests.try_recv().ok();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, tx: &mpsc::SyncSender<Scrape>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, tx, stop);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads the request head (up to the blank line, at most [`MAX_REQUEST`] bytes).
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            return Err(io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    Ok(head)
}

/// What a request line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (with or without a query); `head` for `HEAD`.
    Metrics {
        /// A HEAD request: headers only.
        head: bool,
    },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP request line.
    BadRequest,
}

/// Routes an HTTP request line (`GET /metrics HTTP/1.1`).
pub fn route(request_line: &str) -> Route {
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path == "/metrics" {
        Route::Metrics { head }
    } else {
        Route::NotFound
    }
}

fn answer(
    mut stream: TcpStream,
    tx: &mpsc::SyncSender<Scrape>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let (status, body, head_only) = match route(line) {
        Route::Metrics { head } => {
            let (reply, page) = mpsc::sync_channel(1);
            match tx.try_send(Scrape { reply }) {
                Ok(()) => {
                    // The node answers from its loop (every 20 to 100 ms); give up after the
                    // timeout, or when the server is being dropped.
                    let deadline = Instant::now() + IO_TIMEOUT;
                    let mut got = None;
                    while got.is_none()
                        && Instant::now() < deadline
                        && !stop.load(Ordering::Relaxed)
                    {
                        got = page.recv_timeout(Duration::from_millis(50)).ok();
                    }
                    match got {
                        Some(p) => ("200 OK", p, head),
                        None => (
                            "503 Service Unavailable",
                            "the node did not answer\n".into(),
                            head,
                        ),
                    }
                }
                Err(_) => ("503 Service Unavailable", "busy\n".into(), head),
            }
        }
        Route::NotFound => ("404 Not Found", "try /metrics\n".into(), false),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "GET /metrics\n".into(), false),
        Route::BadRequest => ("400 Bad Request", "bad request\n".into(), false),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        if status.starts_with("200") {
            CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Fetches `http://addr/metrics` (for tests and `dtls-group` users without curl): the status
/// code and the body.
pub fn fetch(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no HTTP head"))?;
    let code = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("no status code"))?;
    Ok((code, body.to_owned()))
}
