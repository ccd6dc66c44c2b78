//! `dtls-group keygen`, `keyserver`, `member` and `admin`: key distribution on real sockets.
//!
//! - `keygen --out PREFIX` writes `PREFIX.key` (0600) and `PREFIX.pub`.
//! - `keyserver --config FILE [--init] [--control PATH]` runs the key server (see
//!   [`crate::keyserver::KeyServerConfig`] for the TOML format) until killed.
//! - `member ...` joins a group through the key server, prints delivered records and events as
//!   JSON lines, and sends messages (from arguments or stdin lines) once it holds keys.
//! - `admin PATH status|revoke DEVICE|rekey GROUP` talks to a running key server.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use group_core::keydist::{DeviceId, MemberConfig, MemberCredentials, MemberEvent, Role};
use group_core::sequence::{MemorySequenceStore, SequenceStore, StoreError, StoredSequence};

use super::common::{BadInput, Stdout, decode_hex};
use super::net::GroupArgs;
use super::{EXIT_DROPPED, EXIT_OK};
use crate::keyfile;
use crate::keyserver::{KeyServerConfig, KeyServerDaemon};
use crate::member::MemberRuntime;
use crate::net::MulticastSocket;
use crate::store::FileSequenceStore;

/// Arguments of `keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// Output prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

/// Runs `keygen`.
pub fn keygen(args: &KeygenArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let vk = keyfile::generate(&args.out).map_err(|e| BadInput::new(format!("keygen: {e}")))?;
    out.line(format!(
        "{{\"private\":\"{}\",\"public\":\"{}\",\"public_key\":\"{}\"}}",
        keyfile::with_suffix(&args.out, ".key").display(),
        keyfile::with_suffix(&args.out, ".pub").display(),
        keyfile::public_hex(&vk)
    ));
    Ok(EXIT_OK)
}

/// Arguments of `keyserver`.
#[derive(Args)]
pub struct KeyserverArgs {
    /// TOML configuration.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Answer `dtls-group status` / `admin` on this Unix socket.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Stop after this many seconds (a decimal number; default: run until stopped).
    #[arg(long, value_name = "SECS", value_parser = super::net::parse_timeout)]
    pub timeout: Option<f64>,
    /// Check the configuration (every key file read and parsed, every group and device) and
    /// exit, without binding a socket or touching the state.
    #[arg(long, conflicts_with = "init")]
    pub check: bool,
    /// Create a new state database (first start of a new installation only; refuses if it
    /// exists). Without it the state must exist.
    #[arg(long)]
    pub init: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written on stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per entry: timestamp, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, the other fields,
    /// `target`), for log collectors.
    Json,
}

/// Logs go to stderr; `DTLS_GROUP_LOG` = debug | info (default) | warn | off.
fn init_logs(format: LogFormat) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match std::env::var("DTLS_GROUP_LOG").as_deref() {
        Ok("debug") => LevelFilter::DEBUG,
        Ok("warn") => LevelFilter::WARN,
        Ok("off") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The level sits in a reload layer, so `admin CONTROL log LEVEL` can change it while the
    // key server runs (crate::service::set_log_level).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(level);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json()).try_init(),
    };
    if installed.is_ok() {
        crate::service::register_log_level(handle);
    }
}

/// Runs `keyserver`.
pub fn keyserver(args: &KeyserverArgs, _out: &mut dyn Stdout) -> Result<u8, BadInput> {
    init_logs(args.log_format);
    let cfg = KeyServerConfig::load(&args.config).map_err(BadInput::new)?;
    if args.check {
        let report = KeyServerDaemon::check(&cfg)
            .map_err(|e| BadInput::new(format!("keyserver --check: {e}")))?;
        _out.line(report.to_string());
        return Ok(EXIT_OK);
    }
    // Bound before the state is touched, like every other socket (a busy port leaves no
    // state behind with --init).
    let metrics = super::net::bind_metrics(args.metrics)?;
    let mut daemon = KeyServerDaemon::start(&cfg, args.control.as_deref(), args.init)
        .map_err(|e| BadInput::new(format!("keyserver: {e}")))?;
    if let Some(m) = metrics {
        daemon.serve_metrics(m);
    }
    let signals = crate::service::StopSignals::install()
        .map_err(|e| BadInput::new(format!("keyserver: signal handlers: {e}")))?;
    crate::service::notify_logged("READY=1\nSTATUS=key server running");
    let deadline = super::net::deadline(args.timeout);
    daemon
        .run(|| {
            signals.received().is_some() || deadline.is_some_and(|d| std::time::Instant::now() >= d)
        })
        .map_err(|e| BadInput::new(format!("keyserver: {e}")))?;
    match signals.received() {
        Some(sig) => tracing::info!(signal = sig, "key server stopping (signal); state is saved"),
        None => tracing::info!("key server stopping (--timeout)"),
    }
    crate::service::notify_logged("STOPPING=1");
    // Dropping the daemon removes its control socket.
    drop(daemon);
    Ok(EXIT_OK)
}

/// Arguments of `admin`.
#[derive(Args)]
pub struct AdminArgs {
    /// The key server's control socket; several, comma-separated, for a highly available
    /// deployment: each is tried in order and the first active server answers.
    #[arg(value_name = "CONTROL[,CONTROL...]", value_parser = parse_controls)]
    pub control: ControlSockets,
    /// `status`, `revoke DEVICE`, `rekey GROUP` or `log debug|info|warn|off`.
    #[arg(num_args = 1..=2, required = true)]
    pub request: Vec<String>,
}

/// One or more control sockets (`admin`'s first argument, comma-separated).
#[derive(Clone, Debug)]
pub struct ControlSockets(pub Vec<PathBuf>);

fn parse_controls(text: &str) -> Result<ControlSockets, String> {
    let paths: Vec<PathBuf> = text
        .split(',')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() {
        return Err("no control socket".into());
    }
    Ok(ControlSockets(paths))
}

/// Whether a control answer comes from a server that is not the active one, and its role: a
/// standby or fenced server refuses requests with an error saying it is `not active` (and
/// naming the holder of the lease), and its status says `"role":"standby"|"fenced"`.
pub fn not_active(answer: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(answer).ok()?;
    if let Some(role) = v
        .get("role")
        .and_then(|r| r.as_str())
        .filter(|r| matches!(*r, "standby" | "fenced"))
    {
        return Some(role.to_owned());
    }
    v.get("error")
        .and_then(|e| e.as_str())
        .filter(|e| e.contains("not active") || matches!(*e, "standby" | "fenced"))
        .map(str::to_owned)
}

/// Runs `admin`. With several control sockets, the request goes to each in turn until an
/// active server answers (one that can't be reached, a standby and a fenced server are
/// skipped, and named on stderr if none answers).
pub fn admin(args: &AdminArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let req = args.request.join(" ");
    let [only] = args.control.0.as_slice() else {
        let mut tried = Vec::new();
        for path in &args.control.0 {
            match crate::control::request(path, &req) {
                Ok(answer) => match not_active(&answer) {
                    Some(role) => tried.push(format!("{}: {role}", path.display())),
                    None => {
                        let failed = answer.contains("\"error\"");
                        out.line(answer);
                        return Ok(if failed { EXIT_DROPPED } else { EXIT_OK });
                    }
                },
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
        return Err(BadInput::new(format!(
            "no active key server among {} control sockets ({})",
            args.control.0.len(),
            tried.join("; ")
        )));
    };
    let answer = crate::control::request(only, &req)
        .map_err(|e| BadInput::new(format!("no key server on {}: {e}", only.display())))?;
    let failed = answer.contains("\"error\"");
    out.line(answer);
    Ok(if failed { EXIT_DROPPED } else { EXIT_OK })
}

/// Arguments of `member`.
#[derive(Args)]
pub struct MemberArgs {
    /// Key server address; repeat it (or list several, comma-separated) for a highly available
    /// deployment: requests go to one, and move to the next when it does not answer.
    #[arg(long, value_name = "ADDR:PORT", required = true, value_delimiter = ',')]
    pub server: Vec<SocketAddr>,
    /// Key server public key (a .pub file or hex).
    #[arg(long, value_name = "FILE|HEX")]
    pub server_key: String,
    /// This device's private key file.
    #[arg(long, value_name = "FILE")]
    pub device_key: PathBuf,
    /// This device's ID at the key server.
    #[arg(long, value_name = "N")]
    pub device_id: u32,
    /// The group ID to join.
    #[arg(long, value_name = "G")]
    pub group_id: u32,
    /// Group address, interface, TTL.
    #[command(flatten)]
    pub net: GroupArgs,
    /// `sender` or `listener`.
    #[arg(long, default_value = "listener")]
    pub role: String,
    /// Sequence store file (senders).
    #[arg(long, value_name = "FILE")]
    pub seq_store: Option<PathBuf>,
    /// Create the sequence store (a new sender); refuses if it exists.
    #[arg(long)]
    pub init_seq_store: bool,
    /// Messages (hex) to send once joined.
    #[arg(long = "send", value_name = "HEX")]
    pub send: Vec<String>,
    /// Also send each hex line read from stdin (until EOF).
    #[arg(long)]
    pub stdin: bool,
    /// Milliseconds between sent messages.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub interval: u64,
    /// Stop after this many delivered records.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds (a decimal number, e.g. 2.5).
    #[arg(long, value_name = "SECS", value_parser = super::net::parse_timeout)]
    pub timeout: Option<f64>,
    /// Answer `dtls-group status PATH` on this Unix socket.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// After this many join requests without a key bundle, the member says on stderr what it saw
/// of the key server.
const UNANSWERED_JOINS_BEFORE_TELLING: u64 = 3;

/// Why a member has not joined, from what it saw of the key server: a class (to say each once)
/// and the sentence for the operator. `servers` is every configured key-server address; the
/// last one tried (`current`) is named when one answers.
pub fn join_diagnosis(
    servers: &[SocketAddr],
    current: SocketAddr,
    c: &crate::member::Contact,
) -> (u8, String) {
    let server = current;
    if c.received == 0 && servers.len() > 1 {
        let all: Vec<String> = servers.iter().map(ToString::to_string).collect();
        return (
            0,
            format!(
                "no answer from any of the key servers at {} to {} requests (moved to the next \
                 address {} times): none is active or reachable (check --server, firewalls, \
                 and the servers' roles with `dtls-group status`), or the active one refuses \
                 this device (see its log)",
                all.join(", "),
                c.sent,
                c.failovers
            ),
        );
    }
    if c.received == 0 {
        return (
            0,
            format!(
                "no answer from the key server at {server} to {} join requests: it is not \
                 running or not reachable at that address (check --server and firewalls), or it \
                 refuses this device: a device ID, device key, group or role it does not admit, \
                 or a --server-key that is not its public key (the key server logs each refusal \
                 at info level with the device ID and the reason)",
                c.sent
            ),
        );
    }
    if c.refused >= c.received {
        let last = c.last_refusal.as_deref().unwrap_or("refused");
        let hint = match last {
            "bad signature" => "; is --server-key the key server's public key (its .pub)?",
            "message for another device" => "; is --device-id this device's ID?",
            "message for another group" => "; is --group-id right?",
            _ => "",
        };
        return (
            1,
            format!(
                "the key server at {server} answers, but this member refuses its {} messages: \
                 {last}{hint}",
                c.received
            ),
        );
    }
    (
        2,
        format!(
            "the key server at {server} answers ({} messages, {} refused here{}) but has not \
             sent this device its keys yet",
            c.received,
            c.refused,
            c.last_refusal
                .as_deref()
                .map(|r| format!(", last: {r}"))
                .unwrap_or_default()
        ),
    )
}

/// A sequence store chosen at run time.
enum AnyStore {
    File(FileSequenceStore),
    Memory(MemorySequenceStore),
}

impl SequenceStore for AnyStore {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        match self {
            AnyStore::File(s) => s.load(),
            AnyStore::Memory(s) => s.load(),
        }
    }
    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        match self {
            AnyStore::File(s) => s.save(state),
            AnyStore::Memory(s) => s.save(state),
        }
    }
}

fn event_json(e: &MemberEvent) -> String {
    match e {
        MemberEvent::BundleInstalled {
            epoch,
            sender_id,
            activate_in_ms,
        } => format!(
            "{{\"event\":\"bundle_installed\",\"epoch\":{},\"sender_id\":{},\"activate_in_ms\":{}}}",
            epoch.0,
            sender_id.map_or("null".to_owned(), |s| s.0.to_string()),
            activate_in_ms
        ),
        MemberEvent::EpochActivated { epoch } => {
            format!("{{\"event\":\"epoch_activated\",\"epoch\":{}}}", epoch.0)
        }
        MemberEvent::Recovered { epoch } => {
            format!("{{\"event\":\"recovered\",\"epoch\":{}}}", epoch.0)
        }
        MemberEvent::Removed { reason } => {
            format!("{{\"event\":\"removed\",\"reason\":\"{reason:?}\"}}")
        }
        MemberEvent::KeysExpired { epoch } => {
            format!("{{\"event\":\"keys_expired\",\"epoch\":{}}}", epoch.0)
        }
        MemberEvent::Group(g) => format!("{{\"event\":\"group\",\"detail\":\"{g:?}\"}}"),
        _ => "{\"event\":\"other\"}".to_owned(),
    }
}

/// Runs `member`.
pub fn member(args: &MemberArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    init_logs(args.log_format);
    let role = match args.role.as_str() {
        "sender" => Role::Sender,
        "listener" => Role::Listener,
        _ => return Err(BadInput::new("--role: sender or listener")),
    };
    let mut queue: std::collections::VecDeque<Vec<u8>> = args
        .send
        .iter()
        .map(|m| decode_hex("--send", m))
        .collect::<Result<_, _>>()?;
    let device_key = keyfile::read_private(&args.device_key)
        .map_err(|e| BadInput::new(format!("--device-key: {e}")))?;
    let server_key = keyfile::read_public(&args.server_key)
        .map_err(|e| BadInput::new(format!("--server-key: {e}")))?;
    let store = match (&args.seq_store, role) {
        (Some(p), _) if args.init_seq_store => AnyStore::File(
            FileSequenceStore::commission(p)
                .map_err(|e| BadInput::new(format!("--init-seq-store: {e}")))?,
        ),
        (Some(p), _) => AnyStore::File(
            FileSequenceStore::open(p).map_err(|e| BadInput::new(format!("--seq-store: {e}")))?,
        ),
        (None, Role::Sender) => {
            return Err(BadInput::new("--seq-store: required for a sender"));
        }
        (None, _) => AnyStore::Memory(MemorySequenceStore::commissioned()),
    };
    let mcast = MulticastSocket::open(&args.net.config()?)
        .map_err(|e| BadInput::new(format!("socket: {e}")))?;
    let control = args
        .control
        .as_ref()
        .map(crate::control::ControlServer::bind)
        .transpose()
        .map_err(|e| BadInput::new(format!("--control: {e}")))?;
    let metrics = super::net::bind_metrics(args.metrics)?;
    let metric_labels = [
        ("group", args.net.group.to_string()),
        ("group_id", args.group_id.to_string()),
        ("device", args.device_id.to_string()),
    ];
    let mut record_metrics = crate::metrics::RecordMetrics::new();
    let config = MemberConfig::new(DeviceId(args.device_id), args.group_id, role);
    let creds = MemberCredentials::signed(device_key, server_key);
    let mut rt = MemberRuntime::start_with_servers(config, creds, store, &args.server, mcast)
        .map_err(|e| BadInput::new(format!("member: {e}")))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    if args.stdin {
        std::thread::spawn(move || {
            for (n, line) in std::io::stdin().lock().lines().enumerate() {
                let Ok(line) = line else { break };
                match hex::decode(line.trim()) {
                    Ok(b) => {
                        if tx.send(b).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(
                        line = n.saturating_add(1),
                        error = %e,
                        "--stdin: a line that is not hex was skipped (one message per line, as hex)"
                    ),
                }
            }
        });
    } else {
        drop(tx);
    }
    let deadline = super::net::deadline(args.timeout);
    let interval = Duration::from_millis(args.interval);
    let mut last_send: Option<std::time::Instant> = None;
    let mut delivered = 0u64;
    let mut joined_ever = false;
    let mut told: Option<u8> = None;
    let signals = crate::service::StopSignals::install()
        .map_err(|e| BadInput::new(format!("member: signal handlers: {e}")))?;
    crate::service::notify_logged("READY=1\nSTATUS=joining");
    loop {
        if !joined_ever && rt.member().is_joined() {
            crate::service::notify_logged("STATUS=joined");
        }
        joined_ever |= rt.member().is_joined();
        if let Some(sig) = signals.received() {
            tracing::info!(signal = sig, "member stopping (signal)");
            crate::service::notify_logged("STOPPING=1");
            break;
        }
        if !joined_ever && rt.contact().sent >= UNANSWERED_JOINS_BEFORE_TELLING {
            let (class, why) = join_diagnosis(rt.servers(), rt.server(), rt.contact());
            if told != Some(class) {
                tracing::warn!(
                    device = args.device_id,
                    group = args.group_id,
                    "not joined: {why}"
                );
                told = Some(class);
            }
        }
        if args.count.is_some_and(|n| delivered >= n)
            || deadline.is_some_and(|d| std::time::Instant::now() >= d)
        {
            break;
        }
        let polled = match rt.poll() {
            Ok(p) => p,
            // A signal interrupted the wait: the loop checks for it next.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BadInput::new(format!("member: {e}"))),
        };
        for e in &polled.events {
            if let MemberEvent::Group(g) = e {
                record_metrics.count_event(g);
            }
            out.line(event_json(e));
        }
        if let Some(g) = rt.member().group() {
            record_metrics.observe(g, std::time::Instant::now());
        }
        if polled
            .events
            .iter()
            .any(|e| matches!(e, MemberEvent::Removed { .. }))
            && args.count.is_none()
            && !args.stdin
            && queue.is_empty()
            && deadline.is_none()
        {
            break;
        }
        for r in polled.delivered {
            delivered = delivered.saturating_add(1);
            out.line(super::common::delivered_line(&r));
        }
        while let Ok(m) = rx.try_recv() {
            queue.push_back(m);
        }
        let ready = rt.member().is_joined()
            && rt
                .member()
                .group()
                .is_some_and(|g| g.current_epoch().is_some())
            && last_send.is_none_or(|t| t.elapsed() >= interval);
        if ready && let Some(m) = queue.pop_front() {
            match rt.send(&m) {
                Ok(record) => {
                    last_send = Some(std::time::Instant::now());
                    let h = group_core::wire::RecordHeader::parse(&record)
                        .map_err(|e| BadInput::new(e.to_string()))?;
                    out.line(format!(
                        "{{\"sent\":{{\"epoch\":{},\"sender_id\":{},\"seq\":{}}}}}",
                        h.epoch.0, h.sender_id.0, h.seq
                    ));
                }
                Err(e) => {
                    out.line(serde_json::json!({ "send_error": e.to_string() }).to_string());
                }
            }
        }
        if let Some(c) = &control {
            c.poll(|_| {
                let m = rt.member();
                let group = m
                    .group()
                    .map(crate::control::group_status)
                    .unwrap_or_else(|| serde_json::json!({}));
                let k = rt.contact();
                serde_json::json!({
                    "state": format!("{:?}", m.state()),
                    "joined": m.is_joined(),
                    "group": group,
                    "key_server": {
                        "current": rt.server().to_string(),
                        "configured": rt.servers().len(),
                        "failovers": k.failovers,
                        "followed": k.followed,
                    },
                })
                .to_string()
            });
        }
        if let Some(m) = &metrics {
            m.poll(|| member_metrics(&rt, &record_metrics, &metric_labels));
        }
    }
    if let Some(g) = rt.member().group() {
        out.line(format!(
            "{{\"summary\":{}}}",
            crate::control::group_status(g)
        ));
    } else if !joined_ever {
        let (_, why) = join_diagnosis(rt.servers(), rt.server(), rt.contact());
        let c = rt.contact();
        out.line(
            serde_json::json!({"summary": {
                "state": format!("{:?}", rt.member().state()),
                "join_requests": c.sent,
                "answers": c.received,
                "refused": c.refused,
                "why": why,
            }})
            .to_string(),
        );
    } else {
        out.line(format!(
            "{{\"summary\":{{\"state\":\"{:?}\"}}}}",
            rt.member().state()
        ));
    }
    // Exit 1 if the device never joined, or --count was given and not reached.
    Ok(
        if !joined_ever || args.count.is_some_and(|n| delivered < n) {
            EXIT_DROPPED
        } else {
            EXIT_OK
        },
    )
}

/// The member's metrics page: its state, and its group's record layer once it holds keys.
fn member_metrics<S: SequenceStore>(
    rt: &MemberRuntime<S>,
    record_metrics: &crate::metrics::RecordMetrics,
    labels: &[(&str, String)],
) -> String {
    use crate::metrics::{Exposition, MetricType};
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut page = Exposition::new();
    crate::metrics::render_build_info(&mut page, "member");
    let m = rt.member();
    page.family(
        "dtls_group_member_joined",
        MetricType::Gauge,
        "1 while the member holds the group's keys (state Joined), else 0.",
    )
    .sample(&labels, m.is_joined());
    if let Some(g) = m.group() {
        record_metrics.render(&mut page, g, &labels, std::time::Instant::now());
    }
    page.finish()
}
