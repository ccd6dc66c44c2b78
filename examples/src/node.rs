//! Lights and switches: each one a thread driving a [`MemberRuntime`] on its own sockets (a
//! unicast socket to the key server, a multicast socket for the group), reporting what happens
//! to the scenario over a channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use group_core::keydist::{DeviceId, MemberConfig, MemberCredentials, MemberEvent, Role};
use group_core::record::SealError;
use group_core::sequence::{MemorySequenceStore, SequenceStore, StoredSequence};
use group_core::wire::RecordHeader;
use group_std::endpoint::SendError;
use group_std::keyfile;
use group_std::member::MemberRuntime;
use group_std::net::{MulticastConfig, MulticastSocket};
use group_std::store::FileSequenceStore;
use serde::{Deserialize, Serialize};

use crate::command::{LightState, LightingMessage};

/// A record's identity: `(epoch, sender ID, sequence number)` — unique per record.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RecordId {
    /// Epoch.
    pub epoch: u16,
    /// Sender ID.
    pub sid: u8,
    /// Sequence number.
    pub seq: u64,
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {} sid {} seq {}", self.epoch, self.sid, self.seq)
    }
}

impl RecordId {
    /// The identity in a record's header, if it parses.
    pub fn of(record: &[u8]) -> Option<Self> {
        RecordHeader::parse(record).ok().map(|h| Self {
            epoch: h.epoch.0,
            sid: h.sender_id.0,
            seq: h.seq,
        })
    }
}

/// Which node a report comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NodeId {
    /// Light `i` (index into the scenario's lights).
    Light(usize),
    /// Switch `i`.
    Switch(usize),
}

/// What a node reports.
#[derive(Clone, Debug)]
pub enum Report {
    /// A key bundle was installed.
    Installed {
        /// Epoch.
        epoch: u16,
        /// This node's sender ID (switches).
        sid: Option<u8>,
        /// Milliseconds until it becomes current.
        activate_in_ms: u32,
    },
    /// An epoch became current.
    Activated {
        /// Epoch.
        epoch: u16,
    },
    /// The key server removed this node; its keys are erased.
    Removed {
        /// Why (`Revoked`, `Left`).
        reason: String,
    },
    /// A light applied a command.
    Applied {
        /// The record that carried it.
        record: RecordId,
        /// The command.
        message: LightingMessage,
        /// The light's state afterwards.
        state: LightState,
    },
    /// A record authenticated but its payload was refused.
    Invalid {
        /// The record.
        record: RecordId,
        /// Why.
        why: String,
    },
    /// A record was dropped by the record layer.
    Rejected {
        /// The drop reason (`OpenError::reason`).
        reason: &'static str,
        /// The error, displayed.
        detail: String,
    },
    /// The node failed (socket error) and stopped.
    Failed {
        /// What failed.
        error: String,
    },
}

/// Where a node meets the others.
#[derive(Clone, Debug)]
pub struct Network {
    /// The group socket's configuration.
    pub mcast: MulticastConfig,
    /// The key server's unicast address.
    pub server: std::net::SocketAddr,
    /// The key server's public key (hex).
    pub server_key_hex: String,
    /// The group ID.
    pub group_id: u32,
}

/// A node's identity.
#[derive(Clone, Debug)]
pub struct Device {
    /// Display name.
    pub name: String,
    /// Device ID at the key server.
    pub id: u32,
    /// Private key file (from `keyfile::generate`).
    pub key_file: PathBuf,
}

fn start_runtime<S: SequenceStore>(
    net: &Network,
    dev: &Device,
    role: Role,
    store: S,
) -> Result<MemberRuntime<S>, String> {
    let device_key = keyfile::read_private(&dev.key_file)
        .map_err(|e| format!("{}: device key: {e}", dev.name))?;
    let server_key = keyfile::parse_public(&net.server_key_hex)
        .map_err(|e| format!("{}: server key: {e}", dev.name))?;
    let mcast = MulticastSocket::open(&net.mcast)
        .map_err(|e| format!("{}: multicast socket: {e}", dev.name))?;
    let config = MemberConfig::new(DeviceId(dev.id), net.group_id, role);
    MemberRuntime::start(
        config,
        MemberCredentials::signed(device_key, server_key),
        store,
        net.server,
        mcast,
    )
    .map_err(|e| format!("{}: start: {e}", dev.name))
}

fn event_report(e: &MemberEvent) -> Option<Report> {
    match e {
        MemberEvent::BundleInstalled {
            epoch,
            sender_id,
            activate_in_ms,
        } => Some(Report::Installed {
            epoch: epoch.0,
            sid: sender_id.map(|s| s.0),
            activate_in_ms: *activate_in_ms,
        }),
        MemberEvent::EpochActivated { epoch } | MemberEvent::Recovered { epoch } => {
            Some(Report::Activated { epoch: epoch.0 })
        }
        MemberEvent::Removed { reason } => Some(Report::Removed {
            reason: format!("{reason:?}"),
        }),
        _ => None,
    }
}

/// A running light.
pub struct LightHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LightHandle {
    /// Stops the light and waits for its thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LightHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a light: it joins as a listener and applies every command it can authenticate.
pub fn spawn_light(
    index: usize,
    net: &Network,
    dev: &Device,
    tx: Sender<(NodeId, Report)>,
) -> Result<LightHandle, String> {
    let mut rt = start_runtime(
        net,
        dev,
        Role::Listener,
        MemorySequenceStore::commissioned(),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let me = NodeId::Light(index);
    let thread = std::thread::Builder::new()
        .name(dev.name.clone())
        .spawn(move || {
            let mut state = LightState::default();
            while !flag.load(Ordering::Relaxed) {
                let polled = match rt.poll() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send((
                            me,
                            Report::Failed {
                                error: e.to_string(),
                            },
                        ));
                        return;
                    }
                };
                let mut reports = Vec::new();
                reports.extend(polled.events.iter().filter_map(event_report));
                for r in &polled.delivered {
                    let record = RecordId {
                        epoch: r.epoch.0,
                        sid: r.sender_id.0,
                        seq: r.seq,
                    };
                    match LightingMessage::decode(&r.plaintext) {
                        Ok(message) => {
                            state = state.apply(message.command);
                            reports.push(Report::Applied {
                                record,
                                message,
                                state,
                            });
                        }
                        Err(e) => reports.push(Report::Invalid {
                            record,
                            why: e.to_string(),
                        }),
                    }
                }
                for e in &polled.dropped {
                    reports.push(Report::Rejected {
                        reason: e.reason(),
                        detail: e.to_string(),
                    });
                }
                for r in reports {
                    if tx.send((me, r)).is_err() {
                        return;
                    }
                }
            }
        })
        .map_err(|e| format!("{}: thread: {e}", dev.name))?;
    Ok(LightHandle {
        stop,
        thread: Some(thread),
    })
}

/// A record a switch sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its identity.
    pub id: RecordId,
    /// The record bytes.
    pub record: Vec<u8>,
}

enum SwitchRequest {
    Send(LightingMessage, Sender<Result<Sent, String>>),
    Store(Sender<Option<StoredSequence>>),
}

/// A running switch.
pub struct SwitchHandle {
    requests: Option<Sender<SwitchRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl SwitchHandle {
    /// Seals and sends `message` once the switch holds a current epoch (waiting up to
    /// `limit`); returns the record.
    pub fn send(&self, message: LightingMessage, limit: Duration) -> Result<Sent, String> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .as_ref()
            .ok_or("switch stopped")?
            .send(SwitchRequest::Send(message, tx))
            .map_err(|_| "switch stopped".to_owned())?;
        match rx.recv_timeout(limit.saturating_add(Duration::from_secs(1))) {
            Ok(r) => r,
            Err(_) => Err("switch did not answer".into()),
        }
    }

    /// What the switch's sequence store holds now.
    pub fn stored(&self) -> Option<StoredSequence> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .as_ref()?
            .send(SwitchRequest::Store(tx))
            .ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok().flatten()
    }

    /// Powers the switch off: the thread ends and the runtime (sockets, keys) is dropped; only
    /// the sequence store file remains.
    pub fn stop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SwitchHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a switch (a sender) on the sequence store file `store` (created if `commission`).
pub fn spawn_switch(
    index: usize,
    net: &Network,
    dev: &Device,
    store: &std::path::Path,
    commission: bool,
    tx: Sender<(NodeId, Report)>,
) -> Result<SwitchHandle, String> {
    let store = if commission {
        FileSequenceStore::commission(store)
            .map_err(|e| format!("{}: sequence store: {e}", dev.name))?
    } else {
        FileSequenceStore::open(store).map_err(|e| format!("{}: sequence store: {e}", dev.name))?
    };
    let mut rt = start_runtime(net, dev, Role::Sender, store)?;
    let (req_tx, req_rx) = mpsc::channel::<SwitchRequest>();
    let me = NodeId::Switch(index);
    let thread = std::thread::Builder::new()
        .name(dev.name.clone())
        .spawn(move || switch_loop(&mut rt, &req_rx, me, &tx))
        .map_err(|e| format!("{}: thread: {e}", dev.name))?;
    Ok(SwitchHandle {
        requests: Some(req_tx),
        thread: Some(thread),
    })
}

fn switch_poll(
    rt: &mut MemberRuntime<FileSequenceStore>,
    me: NodeId,
    tx: &Sender<(NodeId, Report)>,
) -> bool {
    match rt.poll() {
        Ok(p) => {
            for r in p.events.iter().filter_map(event_report) {
                let _ = tx.send((me, r));
            }
            true
        }
        Err(e) => {
            let _ = tx.send((
                me,
                Report::Failed {
                    error: e.to_string(),
                },
            ));
            false
        }
    }
}

fn switch_loop(
    rt: &mut MemberRuntime<FileSequenceStore>,
    requests: &Receiver<SwitchRequest>,
    me: NodeId,
    tx: &Sender<(NodeId, Report)>,
) {
    loop {
        match requests.try_recv() {
            Ok(SwitchRequest::Send(message, reply)) => {
                let deadline = Instant::now() + Duration::from_secs(5);
                let payload = message.encode();
                let result = loop {
                    match rt.send(&payload) {
                        Ok(record) => match RecordId::of(&record) {
                            Some(id) => break Ok(Sent { id, record }),
                            None => break Err("sent a record that does not parse".to_owned()),
                        },
                        // Joining or waiting for an epoch to activate: keep polling.
                        Err(SendError::Seal(SealError::NoCurrentEpoch))
                            if Instant::now() < deadline =>
                        {
                            if !switch_poll(rt, me, tx) {
                                break Err("socket failed".to_owned());
                            }
                        }
                        Err(e) => break Err(e.to_string()),
                    }
                };
                let _ = reply.send(result);
            }
            Ok(SwitchRequest::Store(reply)) => {
                let _ = reply.send(rt.member_mut().store_mut().load().ok().flatten());
            }
            Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if !switch_poll(rt, me, tx) {
            return;
        }
    }
}

/// Receives one report, waiting up to `limit`.
pub fn recv(rx: &Receiver<(NodeId, Report)>, limit: Duration) -> Option<(NodeId, Report)> {
    rx.recv_timeout(limit).ok()
}
