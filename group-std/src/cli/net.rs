//! `dtls-group listen` and `dtls-group send` with static keys (keys provisioned out of band,
//! as wolfSSL users and pre-provisioned installations do), on real multicast sockets.
//!
//! - `listen` prints one JSON object per delivered record and, on exit, one summary object
//!   with the counters by drop reason. It stops after `--count` records or `--timeout`
//!   seconds (whichever comes first); with neither it runs until killed.
//! - `send` seals each message as one record and sends it as one datagram, continuing from
//!   (and reserving ahead in) the sequence store file, and prints one JSON object per record.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use group_core::group::{Group, GroupConfig};
use group_core::record::{NonceProfile, SealError};
use group_core::sequence::{SequenceStore, StoreError};
use group_core::wire::{RecordHeader, SenderId};

use super::common::{BadInput, CipherArgs, Stdout, decode_hex, key_error, nonzero_epoch};
use super::{EXIT_DROPPED, EXIT_OK};
use crate::endpoint::{Clock, GroupEndpoint};
use crate::net::{Interface, MulticastConfig, MulticastSocket};
use crate::store::FileSequenceStore;

/// Where the group is.
#[derive(Args, Debug, Clone)]
pub struct GroupArgs {
    /// Multicast group and port, e.g. `239.255.0.1:40000` or `[ff02::1:7]:40000`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub group: SocketAddr,
    /// Interface: an IPv4 address for IPv4 groups (default 127.0.0.1, so that nothing leaves
    /// this machine unless asked), an interface name or index for IPv6 groups (required).
    #[arg(long, value_name = "ADDR|NAME")]
    pub iface: Option<String>,
    /// IPv4 TTL / IPv6 hop limit of sent datagrams.
    #[arg(long, default_value_t = 1)]
    pub ttl: u32,
}

impl GroupArgs {
    /// The socket configuration (checked).
    pub fn config(&self) -> Result<MulticastConfig, BadInput> {
        if !self.group.ip().is_multicast() {
            return Err(BadInput::new("--group: not a multicast address"));
        }
        let interface = match (&self.iface, self.group.ip()) {
            (None, IpAddr::V4(_)) => Interface::V4(Ipv4Addr::LOCALHOST),
            (None, IpAddr::V6(_)) => {
                return Err(BadInput::new("--iface: required for an IPv6 group"));
            }
            (Some(s), _) => {
                Interface::parse(s).map_err(|e| BadInput::new(format!("--iface: {e}")))?
            }
        };
        Ok(MulticastConfig {
            group: self.group,
            interface,
            loopback: true,
            ttl: self.ttl,
            reuse: true,
            read_timeout: Some(Duration::from_millis(100)),
        })
    }
}

/// Arguments of `listen`.
#[derive(Args)]
pub struct ListenArgs {
    /// Group, interface.
    #[command(flatten)]
    pub net: GroupArgs,
    /// Suite, key and IV.
    #[command(flatten)]
    pub cipher: CipherArgs,
    /// Accept any explicit nonce (compatibility profile, for wolfSSL's AES senders).
    #[arg(long)]
    pub compat: bool,
    /// Install the key under this epoch (default: the epoch of the first record received).
    #[arg(long, value_name = "E")]
    pub epoch: Option<u16>,
    /// Stop after this many delivered records.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds (a decimal number, e.g. 2.5).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,
    /// Answer `dtls-group status PATH` on this Unix socket while running.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// The one `--timeout SECS` format of `listen`, `member` and `keyserver`: a non-negative
/// decimal number of seconds (`60`, `2.5`).
pub fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!(
            "{s:?} is not a number of seconds (a non-negative decimal number, e.g. 60 or 2.5)"
        )),
    }
}

/// The instant `timeout` seconds from now (`None`: no timeout).
pub fn deadline(timeout: Option<f64>) -> Option<std::time::Instant> {
    timeout.and_then(|t| std::time::Instant::now().checked_add(Duration::from_secs_f64(t.min(1e9))))
}

/// Binds `--metrics ADDR:PORT`.
pub fn bind_metrics(
    addr: Option<SocketAddr>,
) -> Result<Option<crate::metrics::MetricsServer>, BadInput> {
    addr.map(crate::metrics::MetricsServer::bind)
        .transpose()
        .map_err(|e| BadInput::new(format!("--metrics: {e}")))
}

/// Arguments of `status`.
#[derive(Args)]
pub struct StatusArgs {
    /// The running node's control socket (its `--control PATH`).
    pub control: PathBuf,
}

/// Runs `status`: prints the node's status line.
pub fn status(args: &StatusArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let line = crate::control::query(&args.control).map_err(|e| {
        BadInput::new(format!(
            "no node answering on {}: {e}",
            args.control.display()
        ))
    })?;
    out.line(line);
    Ok(EXIT_OK)
}

/// Arguments of `send`.
#[derive(Args)]
pub struct SendArgs {
    /// Group, interface, TTL.
    #[command(flatten)]
    pub net: GroupArgs,
    /// Suite, key and IV.
    #[command(flatten)]
    pub cipher: CipherArgs,
    /// Epoch to send in (1 to 65535).
    #[arg(long, value_name = "E")]
    pub epoch: u16,
    /// This sender's ID (unique in the group for the key's lifetime).
    #[arg(long, value_name = "S")]
    pub sender_id: u8,
    /// Sequence store file. Sending continues from it and reserves ahead in it.
    #[arg(long, value_name = "FILE")]
    pub seq_store: PathBuf,
    /// Create the sequence store (for a new sender); refuses if the file exists.
    #[arg(long)]
    pub init_seq_store: bool,
    /// Sequence numbers reserved per store write (K).
    #[arg(long, value_name = "K", default_value_t = 1000)]
    pub reserve_step: u64,
    /// Milliseconds to wait between records.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub interval: u64,
    /// Messages, hex; each becomes one record.
    #[arg(value_name = "MESSAGE_HEX", required = true)]
    pub messages: Vec<String>,
}

fn json_counters(g: &Group) -> String {
    let c = g.counters();
    let dropped: Vec<String> = c
        .drop_reasons()
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!(
        "{{\"summary\":{{\"accepted\":{},\"dropped\":{{{}}}}}}}",
        c.accepted,
        dropped.join(",")
    )
}

/// Runs `listen`.
pub fn listen(args: &ListenArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let keys = args.cipher.record_keys(out)?;
    let cfg = args.net.config()?;
    let epoch = args.epoch.map(nonzero_epoch).transpose()?;
    let socket = MulticastSocket::open(&cfg).map_err(|e| BadInput::new(format!("socket: {e}")))?;
    let profile = if args.compat {
        NonceProfile::Compatibility
    } else {
        NonceProfile::Strict
    };
    let gcfg = GroupConfig::new(0).with_nonce_profile(profile);
    let group: Group = Group::new(gcfg);
    let clock = Clock::new();
    let store = group_core::sequence::MemorySequenceStore::commissioned();
    let mut ep = GroupEndpoint::new(socket, group, store, clock);
    let control = args
        .control
        .as_ref()
        .map(crate::control::ControlServer::bind)
        .transpose()
        .map_err(|e| BadInput::new(format!("--control: {e}")))?;
    let metrics = bind_metrics(args.metrics)?;
    let group_label = args.net.group.to_string();
    let mut record_metrics = crate::metrics::RecordMetrics::new();
    let mut installed = false;
    if let Some(e) = epoch {
        ep.group_mut()
            .install_and_activate(e, &keys, clock.now())
            .map_err(|e| key_error(e, args.cipher.suite))?;
        installed = true;
    }
    let deadline = deadline(args.timeout);
    let mut delivered = 0u64;
    loop {
        if let Some(c) = &control {
            c.poll(|_| crate::control::group_status(ep.group()).to_string());
        }
        while let Some(e) = ep.group_mut().poll_event() {
            record_metrics.count_event(&e);
        }
        record_metrics.observe(ep.group(), std::time::Instant::now());
        if let Some(m) = &metrics {
            m.poll(|| {
                let mut page = crate::metrics::Exposition::new();
                crate::metrics::render_build_info(&mut page, "listen");
                record_metrics.render(
                    &mut page,
                    ep.group(),
                    &[("group", &group_label)],
                    std::time::Instant::now(),
                );
                page.finish()
            });
        }
        if args.count.is_some_and(|n| delivered >= n) {
            break;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        if !installed {
            // Static keys, no --epoch: install them under the epoch of the first record that
            // authenticates under them (a stray datagram can't pick the epoch).
            let mut buf = vec![0u8; crate::endpoint::MAX_DATAGRAM];
            let Ok(n) = ep.socket().as_udp().peek(&mut buf) else {
                continue;
            };
            if let Some(e) = authentic_epoch(&keys, profile, buf.get_mut(..n).unwrap_or(&mut [])) {
                ep.group_mut()
                    .install_and_activate(e, &keys, clock.now())
                    .map_err(|e| key_error(e, args.cipher.suite))?;
                installed = true;
            }
        }
        let (got, _) = ep
            .recv()
            .map_err(|e| BadInput::new(format!("receive: {e}")))?;
        for r in got {
            delivered = delivered.saturating_add(1);
            out.line(super::common::delivered_line(&r));
        }
    }
    out.line(json_counters(ep.group()));
    // Exit 1 only if --count was given and not reached; drops are in the summary.
    Ok(if args.count.is_some_and(|n| delivered < n) {
        EXIT_DROPPED
    } else {
        EXIT_OK
    })
}

/// The epoch of the first record in `datagram` if it authenticates under `keys`.
fn authentic_epoch(
    keys: &group_core::suite::RecordKeys,
    profile: NonceProfile,
    datagram: &mut [u8],
) -> Option<group_core::wire::Epoch> {
    let cipher = group_core::suite::EpochCipher::new(keys).ok()?;
    let (record, _) = group_core::wire::split_record_mut(datagram).ok()?;
    let (h, _) = group_core::record::open_in_place(&cipher, record, profile).ok()?;
    (h.epoch.0 != 0).then_some(h.epoch)
}

fn store_error(path: &std::path::Path, e: StoreError) -> BadInput {
    let p = path.display();
    BadInput::new(match e {
        StoreError::Missing => format!(
            "sequence store {p} is missing: for a new sender create it with --init-seq-store; \
             if it was lost, this sender must get a new epoch or sender ID before sending"
        ),
        StoreError::Corrupt => format!(
            "sequence store {p} is corrupt: refusing to send (a new epoch or sender ID is needed)"
        ),
        other => format!("sequence store {p}: {other}"),
    })
}

/// Runs `send`.
pub fn send(args: &SendArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let keys = args.cipher.record_keys(out)?;
    let cfg = args.net.config()?;
    let epoch = nonzero_epoch(args.epoch)?;
    let messages = args
        .messages
        .iter()
        .map(|m| decode_hex("MESSAGE_HEX", m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = if args.init_seq_store {
        FileSequenceStore::commission(&args.seq_store)
            .map_err(|e| BadInput::new(format!("--init-seq-store: {e}")))?
    } else {
        FileSequenceStore::open(&args.seq_store).map_err(|e| BadInput::new(e.to_string()))?
    };
    // Refuse early, with a clear message, if the store can't be used.
    store.load().map_err(|e| store_error(&args.seq_store, e))?;
    let socket = MulticastSocket::open(&cfg).map_err(|e| BadInput::new(format!("socket: {e}")))?;
    let mut gcfg = GroupConfig::new(0).with_sender_id(SenderId(args.sender_id));
    gcfg.sequence_reserve_step = args.reserve_step.max(1);
    let mut group: Group = Group::new(gcfg);
    let clock = Clock::new();
    group
        .install_and_activate(epoch, &keys, clock.now())
        .map_err(|e| key_error(e, args.cipher.suite))?;
    let mut ep = GroupEndpoint::new(socket, group, store, clock);
    for (i, m) in messages.iter().enumerate() {
        if i > 0 && args.interval > 0 {
            std::thread::sleep(Duration::from_millis(args.interval));
        }
        let record = ep.send(m).map_err(|e| match e {
            crate::endpoint::SendError::Seal(SealError::SequenceStateLost(s)) => {
                store_error(&args.seq_store, s)
            }
            crate::endpoint::SendError::Seal(SealError::SequenceStale) => BadInput::new(format!(
                "sequence store {} holds a newer epoch or another sender ID for this epoch: \
                 refusing to send (nonce reuse risk)",
                args.seq_store.display()
            )),
            other => BadInput::new(other.to_string()),
        })?;
        let h = RecordHeader::parse(&record).map_err(|e| BadInput::new(e.to_string()))?;
        out.line(format!(
            "{{\"epoch\":{},\"sender_id\":{},\"seq\":{},\"record\":\"{}\"}}",
            h.epoch.0,
            h.sender_id.0,
            h.seq,
            hex::encode(&record)
        ));
    }
    Ok(EXIT_OK)
}
