//! The key server's UDP loop.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use group_core::keydist::{
    DeviceCredential, DeviceId, Error, KeyServer, MessageKind, Received, ServerCredentials,
    ServerEvent, ServerTables, Transmit,
};
use group_core::time::Instant;

use super::config::KeyServerConfig;
#[cfg(feature = "postgres")]
use super::ha::Ha;
use super::ha::Role;
use super::refusal::{RefusalLog, claimed_sender, log_refusal};
use super::sealing::{Outbound, SealingConfig, poll_batch};
use super::state_store::StateStore;
use super::store::RedbServerStore;
use super::tables::StdTables;
use crate::control::ControlServer;
use crate::keyfile::{self, OsRng};
use crate::metrics::{
    BundleContent, Exposition, GroupView, KeyServerMetrics, MetricsServer, ServerTotals,
};

#[cfg(feature = "postgres")]
mod lease_role;

/// How many groups one transaction of the daemon's key server stages (not a capacity: a device
/// in more groups is admitted or revoked in several transactions; the numbers of devices,
/// groups and groups per device are bounded only by memory).
pub const TXN_GROUPS: usize = 32;

/// The key server type the daemon runs: records in redb or PostgreSQL ([`StateStore`]),
/// unbounded tables in memory (a device in any number of groups), up to [`TXN_GROUPS`] groups
/// per transaction, a 64 KB buffer for one transaction's rows.
pub type DaemonServer = KeyServer<StateStore, TXN_GROUPS, StdTables, 65536>;

/// The daemon's key server on a redb store alone (benchmarks and tests that build one
/// directly): the same tables and capacities as [`DaemonServer`].
pub type ServerType = KeyServer<RedbServerStore, TXN_GROUPS, StdTables, 65536>;

/// The configuration, read and checked, kept to (re)build the key server on every takeover.
pub(super) struct Prepared {
    key: p256::ecdsa::SigningKey,
    specs: Vec<(u32, group_core::keydist::GroupSpec)>,
    devices: Vec<PreparedDevice>,
    join_update_delay_ms: u64,
}

pub(super) struct PreparedDevice {
    id: u32,
    name: String,
    groups: Vec<u32>,
    credential: DeviceCredential,
    role: group_core::keydist::Role,
}

/// Wall-clock milliseconds: the server persists activation and rotation times, so its clock
/// must survive restarts.
fn wall_now() -> Instant {
    Instant(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// A running key server.
pub struct KeyServerDaemon {
    /// The key server while this daemon is active; `None` while standby or fenced.
    server: Option<DaemonServer>,
    prepared: Prepared,
    /// Where the state is, for messages (a redb path or `postgres`).
    state_label: String,
    /// The lease, on PostgreSQL.
    #[cfg(feature = "postgres")]
    ha: Option<Ha>,
    socket: UdpSocket,
    addrs: HashMap<DeviceId, SocketAddr>,
    /// Where to send a device's join challenge: the source of the join request it answers
    /// (not the device's address: an unchallenged request proves nothing). In memory only;
    /// at most one entry per admitted device.
    challenge_to: HashMap<DeviceId, SocketAddr>,
    rng: OsRng,
    control: Option<ControlServer>,
    rejected: u64,
    group_ids: Vec<u32>,
    /// The configured device IDs (for the devices-per-group metric).
    device_ids: Vec<u32>,
    /// The configured devices' names, by ID (for `admin status`).
    device_names: Vec<(u32, String)>,
    metrics: Option<MetricsServer>,
    stats: KeyServerMetrics,
    refusal_log: RefusalLog,
    /// How bundles are sealed: on one worker per CPU for the batches of a large rekey.
    sealing: SealingConfig,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Opens the key server on `store` and applies the checked configuration: creates the groups
/// and admits the devices that are not in the state yet.
fn open_and_apply(
    state: &str,
    prepared: &Prepared,
    store: StateStore,
    rng: &mut OsRng,
) -> io::Result<(DaemonServer, HashMap<DeviceId, SocketAddr>)> {
    let mut server: DaemonServer =
        KeyServer::open(ServerCredentials::new(prepared.key.clone()), store)
            .map_err(|e| other(format!("state {state}: {e}")))?;
    server.set_join_update_delay_ms(prepared.join_update_delay_ms);
    let now = wall_now();
    // The configuration is applied before anything leaves: one disk flush at the end.
    server.store().defer_durability()?;
    for (gid, spec) in &prepared.specs {
        let gid = *gid;
        match server.create_group(*spec, now, rng) {
            Ok(()) => tracing::info!(group = gid, "group created"),
            Err(Error::AlreadyExists) => {
                if server.group_spec(gid) != Some(spec) {
                    tracing::warn!(
                        group = gid,
                        "the config's settings for this group differ from the running \
                             state; the state is kept (create a new group to change them)"
                    );
                }
            }
            Err(e) => return Err(other(format!("group {gid}: {e}"))),
        }
    }
    for d in &prepared.devices {
        if server.store().is_revoked(d.id)? {
            if server.device(DeviceId(d.id)).is_some() {
                // A revocation that did not complete (a device in more groups than one
                // transaction takes, and a crash or a failed write in between): finish it.
                server
                    .revoke_device(DeviceId(d.id), now, rng)
                    .map_err(|e| {
                        other(format!("device {}: finishing its revocation: {e}", d.id))
                    })?;
                tracing::warn!(device = d.id, "revocation finished");
            }
            tracing::warn!(
                device = d.id,
                "revoked earlier: not admitted (remove it from the config)"
            );
            continue;
        }
        match server.admit_device(DeviceId(d.id), d.credential.clone(), d.role, &d.groups) {
            Ok(()) => tracing::info!(device = d.id, name = %d.name, "device admitted"),
            Err(Error::AlreadyExists) => {
                let mut want = d.groups.clone();
                want.sort_unstable();
                want.dedup();
                let have: Vec<u32> = server.device_groups(DeviceId(d.id)).collect();
                let same = server
                    .device(DeviceId(d.id))
                    .is_some_and(|(c, r)| *c == d.credential && r == d.role && have == want);
                if !same {
                    tracing::warn!(
                        device = d.id,
                        name = %d.name,
                        "the config's key, role or groups for this device differ from the \
                         running state; the state is kept (revoke it and admit the device \
                         under a new id to change them)"
                    );
                }
            }
            Err(e) => return Err(other(format!("device {}: {e}", d.id))),
        }
    }
    server.store().make_durable()?;
    let addrs: HashMap<DeviceId, SocketAddr> = server
        .store()
        .addresses()?
        .into_iter()
        .map(|(d, a)| (DeviceId(d), a))
        .collect();
    Ok((server, addrs))
}

impl KeyServerDaemon {
    /// Checks `cfg` as [`start`](Self::start) does before it binds anything: every key file
    /// read and parsed, every group and device checked. Binds no socket, opens no state (it
    /// only says whether the state file exists). Returns a summary for the operator.
    pub fn check(cfg: &KeyServerConfig) -> io::Result<serde_json::Value> {
        keyfile::read_private(&cfg.server_key)
            .map_err(|e| io::Error::new(e.kind(), format!("server_key: {e}")))?;
        for g in &cfg.groups {
            g.spec()
                .map_err(|e| other(format!("group {}: {e}", g.id)))?;
        }
        for d in &cfg.devices {
            keyfile::read_public(&d.public_key)
                .map_err(|e| io::Error::new(e.kind(), format!("device {}: {e}", d.id)))?;
            d.role().map_err(other)?;
        }
        Ok(serde_json::json!({
            "config": "ok",
            "listen": cfg.listen.to_string(),
            "groups": cfg.groups.iter().map(|g| g.id).collect::<Vec<_>>(),
            "devices": cfg.devices.len(),
            "state": cfg.state.display().to_string(),
            "state_exists": cfg.state.exists(),
            "store": if cfg.store.kind == super::StoreKind::Postgres { "postgres" } else { "redb" },
        }))
    }

    /// Checks the whole configuration, binds every socket, then opens the state and applies
    /// the configuration (creates groups and admits devices that are not there yet).
    ///
    /// `init` creates a new state database (a new installation); without it the state must
    /// exist, so a lost database can't silently restart epochs and sender IDs. The order makes
    /// `--init` atomic: every key file is read and parsed, every group and device checked, the
    /// UDP socket and the control socket bound, and only then is the state file created. A
    /// mistyped key path or a busy port leaves no state behind, and the retry with `--init`
    /// works.
    pub fn start(
        cfg: &KeyServerConfig,
        control: Option<&std::path::Path>,
        init: bool,
    ) -> io::Result<Self> {
        // 1. Everything the configuration names, read and checked; nothing written yet.
        let pg = cfg.store.postgres().map_err(other)?;
        let key = keyfile::read_private(&cfg.server_key)
            .map_err(|e| io::Error::new(e.kind(), format!("server_key: {e}")))?;
        let mut specs = Vec::with_capacity(cfg.groups.len());
        for g in &cfg.groups {
            specs.push((g.id, g.spec().map_err(other)?));
        }
        let mut devices = Vec::with_capacity(cfg.devices.len());
        for d in &cfg.devices {
            let pk = keyfile::read_public(&d.public_key)
                .map_err(|e| io::Error::new(e.kind(), format!("device {}: {e}", d.id)))?;
            let role = d.role().map_err(other)?;
            devices.push(PreparedDevice {
                id: d.id,
                name: d.name.clone(),
                groups: d.groups.clone(),
                credential: DeviceCredential::public_key(&pk),
                role,
            });
        }
        let prepared = Prepared {
            key,
            specs,
            devices,
            join_update_delay_ms: cfg.join_update_delay_ms,
        };
        // 2. Every socket bound.
        let socket = UdpSocket::bind(cfg.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("listen {}: {e}", cfg.listen)))?;
        let control = control
            .map(ControlServer::bind)
            .transpose()
            .map_err(|e| io::Error::new(e.kind(), format!("control socket: {e}")))?;
        let mut rng = keyfile::os_rng();
        // 3. Only now the state.
        let mut daemon = Self {
            server: None,
            prepared,
            state_label: cfg.state.display().to_string(),
            #[cfg(feature = "postgres")]
            ha: None,
            socket,
            addrs: HashMap::new(),
            challenge_to: HashMap::new(),
            rng: keyfile::os_rng(),
            control,
            rejected: 0,
            group_ids: cfg.groups.iter().map(|g| g.id).collect(),
            device_ids: cfg.devices.iter().map(|d| d.id).collect(),
            device_names: cfg.devices.iter().map(|d| (d.id, d.name.clone())).collect(),
            metrics: None,
            stats: KeyServerMetrics::new(),
            refusal_log: RefusalLog::default(),
            sealing: SealingConfig::from_machine(),
        };
        if let Some(pg) = pg {
            #[cfg(feature = "postgres")]
            {
                daemon.ha = Some(lease_role::connect(&cfg.state, pg, init)?);
                daemon.state_label = "postgres".into();
                tracing::info!(listen = %cfg.listen, "key server running (standby until it holds the lease)");
                return Ok(daemon);
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = pg;
                return Err(other("built without the postgres feature"));
            }
        }
        let store = if init {
            RedbServerStore::create_new(&cfg.state)?
        } else {
            RedbServerStore::open(&cfg.state)?
        };
        match open_and_apply(
            &daemon.state_label,
            &daemon.prepared,
            StateStore::Redb(store),
            &mut rng,
        ) {
            Ok((server, addrs)) => {
                daemon.server = Some(server);
                daemon.addrs = addrs;
                daemon.rng = rng;
            }
            Err(e) => {
                // A state this call created and could not complete is removed (the database
                // is closed by now), so that the retry with --init works.
                if init {
                    let _ = std::fs::remove_file(&cfg.state);
                }
                return Err(e);
            }
        };
        tracing::info!(listen = %cfg.listen, "key server running");
        Ok(daemon)
    }

    /// The state machine while this server is active (`None` on a standby or fenced server:
    /// it holds no state).
    pub fn active_server(&self) -> Option<&DaemonServer> {
        self.server.as_ref()
    }

    /// This server's role: always active on redb; on PostgreSQL, whether it holds the lease.
    pub fn role(&self) -> Role {
        #[cfg(feature = "postgres")]
        if let Some(ha) = &self.ha {
            return ha.role;
        }
        Role::Active
    }

    /// Serves Prometheus metrics on `server` (bound by the caller) from now on.
    pub fn serve_metrics(&mut self, server: MetricsServer) {
        self.metrics = Some(server);
    }

    /// Counts a key-server event for the metrics.
    fn count_event(&mut self, e: &ServerEvent) {
        let now = std::time::Instant::now();
        match *e {
            ServerEvent::Joined {
                device, group_id, ..
            } => self.stats.joined(device.0, group_id),
            ServerEvent::Left { group_id, .. } => self.stats.left(group_id),
            ServerEvent::Revoked { device } => {
                self.stats.revoked();
                self.stats.forget_device(device.0);
            }
            ServerEvent::EpochCreated {
                group_id,
                epoch,
                cause,
            } => self.stats.epoch_created(
                group_id,
                epoch,
                crate::metrics::cause_label(&format!("{cause:?}")),
                now,
            ),
            _ => {}
        }
    }

    /// Observes the rekeys that completed: their epoch is current and no member is pending.
    fn check_rekeys(&mut self) {
        let Some(server) = self.server.as_ref() else {
            return;
        };
        let done: Vec<(u32, u16)> = self
            .stats
            .rekeys_in_progress()
            .filter(|(g, e)| {
                server
                    .epochs(*g)
                    .is_some_and(|(current, _)| current == Some(*e))
                    && !server.members(*g).any(|(d, _)| server.is_pending(d, *g))
            })
            .collect();
        let now = std::time::Instant::now();
        for (g, e) in done {
            self.stats.rekey_done(g, e, now);
        }
    }

    /// The metrics page.
    pub fn metrics_page(&self) -> String {
        let mut page = Exposition::new();
        crate::metrics::render_build_info(&mut page, "keyserver");
        #[cfg(feature = "postgres")]
        self.render_lease(&mut page);
        let Some(server) = self.server.as_ref() else {
            // Not active: no state to show.
            self.stats.render(
                &mut page,
                &[],
                ServerTotals {
                    rejected: self.rejected,
                    replays: 0,
                    challenges_issued: 0,
                    events_dropped: 0,
                },
            );
            return page.finish();
        };
        // Configured devices per group, in one pass over the devices.
        let mut per_group: HashMap<u32, usize> = HashMap::new();
        for d in &self.device_ids {
            for g in server.device_groups(DeviceId(*d)) {
                *per_group.entry(g).or_default() += 1;
            }
        }
        let groups: Vec<GroupView> = self
            .group_ids
            .iter()
            .map(|gid| {
                let (current, staged) = server.epochs(*gid).unwrap_or((None, None));
                GroupView {
                    id: *gid,
                    devices: per_group.get(gid).copied().unwrap_or(0),
                    members: server.members(*gid).count(),
                    pending: server
                        .members(*gid)
                        .filter(|(d, _)| server.is_pending(*d, *gid))
                        .count(),
                    current: current.unwrap_or(0),
                    staged: staged.unwrap_or(0),
                }
            })
            .collect();
        self.stats.render(
            &mut page,
            &groups,
            ServerTotals {
                rejected: self.rejected,
                replays: server.replays(),
                challenges_issued: server.challenges_issued(),
                events_dropped: server.events_dropped(),
            },
        );
        page.finish()
    }

    /// Runs until `stop()` is true.
    pub fn run(&mut self, stop: impl Fn() -> bool) -> io::Result<()> {
        while !stop() {
            self.step()?;
        }
        Ok(())
    }

    /// One turn of the loop: timers, transmissions, events, control requests, and at most one
    /// datagram (waiting up to 20 ms).
    pub fn step(&mut self) -> io::Result<()> {
        #[cfg(feature = "postgres")]
        self.lease_tick();
        let now = wall_now();
        if let Some(server) = self.server.as_mut()
            && let Err(e) = server.handle_timeout(now, &mut self.rng)
        {
            tracing::warn!(error = %e, "timer work failed (state not saved); will retry");
        }
        self.flush(now)?;
        while let Some(e) = self.server.as_mut().and_then(|s| s.poll_event()) {
            tracing::info!(event = ?e, "key server");
            self.count_event(&e);
        }
        self.check_rekeys();
        #[cfg(feature = "postgres")]
        self.check_fenced();
        if let Some(c) = self.control.take() {
            c.poll(|req| self.answer(req));
            self.control = Some(c);
        }
        if let Some(m) = &self.metrics {
            m.poll(|| self.metrics_page());
        }
        self.socket
            .set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut rbuf = [0u8; 4096];
        match self.socket.recv_from(&mut rbuf) {
            Ok((n, from)) => {
                let now = wall_now();
                let Some(server) = self.server.as_mut() else {
                    // Not active: members' retries move on to the next key-server address.
                    #[cfg(feature = "postgres")]
                    self.count_dropped();
                    return Ok(());
                };
                match server.handle_message(now, &mut self.rng, rbuf.get(..n).unwrap_or(&[])) {
                    // The address moves only on a message that proved freshness (finding 4): a
                    // replayed ack or join from elsewhere must not redirect bundles and notices.
                    Ok(Received::Fresh(device)) => {
                        if self.addrs.insert(device, from) != Some(from)
                            && let Err(e) = server.store().save_address(device.0, from)
                        {
                            tracing::warn!(error = %e, "could not store a device address");
                        }
                    }
                    Ok(Received::Challenged(device)) => {
                        self.challenge_to.insert(device, from);
                    }
                    Ok(Received::Unproven(device)) => {
                        tracing::debug!(
                            %from,
                            device = device.0,
                            "duplicate or replayed message: address kept"
                        );
                    }
                    Err(e) => {
                        self.rejected = self.rejected.saturating_add(1);
                        let reason = crate::metrics::reason_label(&format!("{e:?}"));
                        self.stats.refused(reason.clone());
                        let claimed = claimed_sender(rbuf.get(..n).unwrap_or(&[]));
                        if let Some(suppressed) = self.refusal_log.allow(claimed, &reason) {
                            log_refusal(claimed, from, &e, &reason, suppressed);
                        }
                    }
                }
                self.flush(now)?;
                #[cfg(feature = "postgres")]
                self.check_fenced();
            }
            // A signal (SIGTERM: the caller's stop check) interrupts the wait: not an error.
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::TimedOut
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let Some(server) = self.server.as_mut() else {
                return Ok(());
            };
            // Bundles of a large rekey are sealed in batches on one worker per CPU
            // (keyserver/sealing.rs); everything else of each message was done in order.
            let batch = poll_batch(server, now, &mut self.rng, &self.sealing);
            if batch.messages.is_empty() && batch.stopped.is_none() {
                return Ok(());
            }
            for m in batch.messages {
                match m {
                    Ok(out) => self.send(&out),
                    Err(e) => {
                        self.stats.send_failed();
                        tracing::warn!(error = %e, "transmit failed");
                    }
                }
            }
            if let Some(e) = batch.stopped {
                tracing::warn!(error = %e, "transmit failed");
                return Ok(());
            }
        }
    }

    /// Sends one message to its device's address.
    fn send(&mut self, out: &Outbound) {
        let t = &out.transmit;
        let addr = if t.kind == MessageKind::JoinChallenge {
            self.challenge_to
                .remove(&t.device_id)
                .or_else(|| self.addrs.get(&t.device_id).copied())
        } else {
            self.addrs.get(&t.device_id).copied()
        };
        match addr {
            Some(addr) => {
                if let Err(e) = self.socket.send_to(&out.bytes, addr) {
                    self.stats.send_failed();
                    tracing::warn!(device = t.device_id.0, error = %e, "send failed");
                } else {
                    self.count_sent(t, &out.bytes);
                }
            }
            // Retransmission brings it back once the device has spoken to us.
            None => {
                self.stats.send_failed();
                tracing::debug!(device = t.device_id.0, "no address yet");
            }
        }
    }

    /// Counts a message sent (for the metrics): bundles by content, so that one sent again
    /// unchanged counts as a retransmission.
    fn count_sent(&mut self, t: &Transmit, bytes: &[u8]) {
        match t.kind {
            MessageKind::KeyBundle => {
                if let Ok(p) = group_core::keydist::parse(bytes)
                    && let group_core::keydist::Message::KeyBundle(b) = p.message
                {
                    self.stats.bundle_sent(
                        t.device_id.0,
                        b.header.group_id,
                        BundleContent {
                            epoch: b.epoch,
                            sender_id: b.sender_id,
                            senders: b.senders.iter().map(|s| s.sender_id).collect(),
                            stale: b.stale.iter().copied().collect(),
                        },
                    );
                }
            }
            MessageKind::JoinChallenge => self.stats.challenge_sent(),
            MessageKind::Removed => self.stats.removal_notice_sent(),
            _ => {}
        }
    }

    /// Revokes a device: it is recorded as revoked (never admitted again from the config
    /// file), removed from every group, and each remaining group is rekeyed.
    pub fn revoke(&mut self, device: u32) -> Result<(), String> {
        let now = wall_now();
        if self.server.is_none() {
            return Err(self.not_active());
        }
        let server = self.server.as_mut().ok_or("not active")?;
        let store = server.store();
        let marked_before = store.is_revoked(device).map_err(|e| e.to_string())?;
        // The mark is written first so that a crash right after the revocation can't let the
        // config file admit the device again. If the revocation fails (a mistyped ID), a mark
        // this call added is taken back; one from an earlier, completed revocation stays.
        store.add_revoked(device).map_err(|e| e.to_string())?;
        if let Err(e) = server.revoke_device(DeviceId(device), now, &mut self.rng) {
            if !marked_before {
                let _ = server.store().remove_revoked(device);
            }
            return Err(e.to_string());
        }
        let sent = self.flush(now).map_err(|e| e.to_string());
        #[cfg(feature = "postgres")]
        self.check_fenced();
        sent
    }

    /// The error of an operator request on a server that is not active: its role (`standby` or
    /// `fenced`), what `admin` with several control sockets skips.
    fn not_active(&self) -> String {
        self.role().name().to_owned()
    }

    /// The control answer to a request a server that is not active refuses:
    /// `{"error":"standby"|"fenced","active":HOLDER,"message":...}`.
    fn refuse_not_active(&self) -> String {
        let role = self.role().name();
        #[cfg(feature = "postgres")]
        let holder = self
            .ha
            .as_ref()
            .and_then(|ha| ha.view.as_ref())
            .map(|v| v.holder.clone())
            .unwrap_or_default();
        #[cfg(not(feature = "postgres"))]
        let holder = String::new();
        serde_json::json!({
            "error": role,
            "active": holder,
            "message": format!(
                "this key server is {role} (not active): ask the active one ({holder:?})"
            ),
        })
        .to_string()
    }

    /// Starts a new epoch for `group` now; returns it.
    pub fn rekey(&mut self, group: u32) -> Result<u16, String> {
        let now = wall_now();
        if self.server.is_none() {
            return Err(self.not_active());
        }
        let server = self.server.as_mut().ok_or("not active")?;
        let e = server.rekey(group, now, &mut self.rng);
        #[cfg(feature = "postgres")]
        self.check_fenced();
        let e = e.map_err(|e| e.to_string())?;
        self.flush(now).map_err(|e| e.to_string())?;
        Ok(e)
    }

    /// Answers a control request: `status`, `revoke DEVICE`, `rekey GROUP`.
    fn answer(&mut self, req: &str) -> String {
        let mut words = req.split_whitespace();
        let error = |e: String| serde_json::json!({ "error": e }).to_string();
        match (
            words.next(),
            words.next().and_then(|w| w.parse::<u32>().ok()),
        ) {
            (Some("revoke" | "rekey"), Some(_)) if self.server.is_none() => {
                self.refuse_not_active()
            }
            (Some("revoke"), Some(d)) => match self.revoke(d) {
                Ok(()) => serde_json::json!({ "revoked": d }).to_string(),
                Err(e) => error(e),
            },
            (Some("rekey"), Some(g)) => match self.rekey(g) {
                Ok(e) => serde_json::json!({ "group": g, "epoch": e }).to_string(),
                Err(e) => error(e),
            },
            (Some("status") | None, _) => self.status().to_string(),
            (Some("log"), _) => match req
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| "log needs a level (debug | info | warn | off)".to_owned())
                .and_then(crate::service::set_log_level)
            {
                Ok(level) => {
                    tracing::warn!(level, "log level changed (admin log)");
                    serde_json::json!({ "log": level }).to_string()
                }
                Err(e) => error(e),
            },
            _ => error(format!(
                "unknown request {req:?} (status | revoke DEVICE | rekey GROUP | log LEVEL)"
            )),
        }
    }

    /// Adds the lease to a status (PostgreSQL; nothing on redb).
    fn add_lease(&self, _status: &mut serde_json::Value) {
        #[cfg(feature = "postgres")]
        self.lease_status(_status);
    }

    /// Groups, epochs and members as JSON.
    pub fn status(&self) -> serde_json::Value {
        let Some(server) = self.server.as_ref() else {
            // Not active: the role and the lease, no state.
            let mut s = serde_json::json!({
                "role": self.role().name(),
                "rejected": self.rejected,
            });
            self.add_lease(&mut s);
            return s;
        };
        let groups: Vec<serde_json::Value> = self
            .group_ids
            .iter()
            .filter_map(|gid| server.epochs(*gid).map(|e| (*gid, e)))
            .map(|(gid, (current, staged))| {
                let members: Vec<serde_json::Value> = server
                    .members(gid)
                    .map(|(d, sid)| {
                        serde_json::json!({
                            "device": d.0,
                            "sender_id": sid,
                            "pending": server.is_pending(d, gid),
                        })
                    })
                    .collect();
                serde_json::json!({"id": gid, "current": current, "staged": staged, "members": members})
            })
            .collect();
        // Every device of the configuration, admitted or not, joined or not.
        let devices: Vec<serde_json::Value> = self
            .device_names
            .iter()
            .map(|(id, name)| {
                let admitted = server.device(DeviceId(*id));
                let mut joined: Vec<u32> = server
                    .tables()
                    .member_of(DeviceId(*id))
                    .filter(|m| m.is_member())
                    .map(|m| m.group_id())
                    .collect();
                joined.sort_unstable();
                let groups: Vec<u32> = server.device_groups(DeviceId(*id)).collect();
                serde_json::json!({
                    "id": id,
                    "name": name,
                    "admitted": admitted.is_some(),
                    "revoked": server.store().is_revoked(*id).unwrap_or(false),
                    "role": admitted.map(|(_, role)| format!("{role:?}").to_lowercase()),
                    "groups": groups,
                    "joined": joined,
                })
            })
            .collect();
        let mut s = serde_json::json!({
            "groups": groups,
            "devices": devices,
            "rejected": self.rejected,
            "replays": server.replays(),
            "challenges": server.challenges_issued(),
            "role": self.role().name(),
        });
        self.add_lease(&mut s);
        s
    }
}
