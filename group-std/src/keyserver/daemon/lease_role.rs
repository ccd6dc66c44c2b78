//! The daemon's side of the lease (PostgreSQL): taking over (load the whole state from the
//! database, then answer), stepping down (drop the state), the role in `status` and metrics.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::super::config::PgSettings;
use super::super::ha::{Ha, Role, Tick};
use super::super::high_water::HighWater;
use super::super::pg_lease::PgLease;
use super::super::pg_store::PgServerStore;
use super::super::state_store::StateStore;
use super::{KeyServerDaemon, open_and_apply, other};
use crate::metrics::{Exposition, MetricType};

/// Connects the lease (creating or migrating the schema; refusing a database behind the
/// high-water file at `high_water`), commissions a new state with `init`.
pub(super) fn connect(high_water: &Path, pg: PgSettings, init: bool) -> io::Result<Ha> {
    let fence = Arc::new(Mutex::new(HighWater::open(high_water)?));
    let mut lease = PgLease::connect(pg.conninfo.expose(), &pg.server_name, pg.lease, fence)
        .map_err(|e| other(format!("postgres: {e}")))?;
    if init {
        lease.commission()?;
        tracing::info!("postgres state commissioned (new installation)");
    }
    let view = lease
        .observe()
        .map_err(|e| other(format!("postgres: {e}")))?;
    tracing::info!(
        server = %pg.server_name,
        holder = %view.holder,
        token = view.token,
        generation = view.generation,
        "key server on postgres: standby until it holds the lease"
    );
    Ok(Ha::new(lease, pg, Some(view)))
}

impl KeyServerDaemon {
    /// Renews or acquires the lease; takes over or steps down as it says.
    pub(super) fn lease_tick(&mut self) {
        let Some(ha) = self.ha.as_mut() else {
            return;
        };
        match ha.tick() {
            Tick::Nothing => {}
            Tick::Lost(reason) => self.step_down(reason),
            Tick::Acquired(token) => self.take_over(token),
        }
    }

    /// Steps down if a write was refused by the fence.
    pub(super) fn check_fenced(&mut self) {
        if self.server.as_ref().is_some_and(|s| s.store().fenced()) {
            if let Some(ha) = self.ha.as_mut() {
                let _ = ha.lose("a write was refused by the database (fenced)");
            }
            self.step_down("a write was refused by the database (fenced)");
        } else if self.server.as_ref().is_some_and(|s| s.store().broken()) {
            // The state's connection is gone: writes can't land. Give the lease up (this server
            // or another takes over with a fresh connection and the state from the database).
            if let Some(ha) = self.ha.as_mut() {
                ha.release();
                let _ = ha.lose("the database closed the state's connection");
            }
            self.step_down("the database closed the state's connection");
        }
    }

    /// Drops the in-memory state: a server that lost the lease must not answer from it.
    fn step_down(&mut self, reason: &str) {
        let Some(ha) = self.ha.as_mut() else {
            return;
        };
        ha.role = Role::Fenced;
        ha.token = None;
        if let Some(s) = self.server.take() {
            ha.refused = ha.refused.saturating_add(s.store().refused());
        }
        self.addrs.clear();
        self.challenge_to.clear();
        let holder = ha
            .view
            .as_ref()
            .map(|v| v.holder.clone())
            .unwrap_or_default();
        let token = ha.view.as_ref().map_or(0, |v| v.token);
        tracing::warn!(
            reason,
            holder = %holder,
            token,
            "lease lost: stepped down (fenced; the in-memory state is dropped, standby until \
             the lease is free again)"
        );
    }

    /// Loads the whole state from the database under the new token, then answers.
    fn take_over(&mut self, token: i64) {
        let Some(ha) = self.ha.as_mut() else {
            return;
        };
        let started = std::time::Instant::now();
        let opened = PgServerStore::open(
            ha.lease.conninfo(),
            ha.lease.me(),
            token,
            ha.settings.lease,
            ha.lease.fence(),
        )
        .and_then(|store| {
            open_and_apply(
                &self.state_label,
                &self.prepared,
                StateStore::Postgres(Box::new(store)),
                &mut self.rng,
            )
        });
        let previous = ha.previous.clone();
        match opened {
            Ok((server, addrs)) => {
                self.server = Some(server);
                self.addrs = addrs;
                self.challenge_to = HashMap::new();
                ha.role = Role::Active;
                tracing::warn!(
                    token,
                    previous = %previous,
                    load_ms = started.elapsed().as_millis() as u64,
                    devices_with_address = self.addrs.len(),
                    "lease acquired: active (state loaded from postgres)"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, token, "lease acquired but the state did not load; giving the lease up");
                ha.release();
                let _ = ha.lose("the state did not load");
            }
        }
    }

    /// Counts a key-distribution message dropped because this server is not active.
    pub(super) fn count_dropped(&mut self) {
        if let Some(ha) = self.ha.as_mut() {
            ha.dropped = ha.dropped.saturating_add(1);
        }
    }

    /// The role and the lease in `status`.
    pub(super) fn lease_status(&self, s: &mut serde_json::Value) {
        let Some(ha) = self.ha.as_ref() else {
            return;
        };
        if let Some(o) = s.as_object_mut() {
            o.insert("server".into(), ha.settings.server_name.clone().into());
            o.insert("store".into(), "postgres".into());
            if let Some(v) = &ha.view {
                o.insert(
                    "lease".into(),
                    serde_json::json!({
                        "holder": v.holder,
                        "token": v.token,
                        "expires_in_ms": v.expires_in_ms,
                        "generation": v.generation,
                        "held_here": ha.token.is_some(),
                        "left_ms": ha.left().map(|d| d.as_millis() as u64),
                        "my_token": ha.token,
                    }),
                );
            }
            o.insert("takeovers".into(), ha.takeovers.into());
            o.insert("stepped_down".into(), ha.lost.into());
            o.insert("standby_dropped".into(), ha.dropped.into());
            if let Some(e) = &ha.last_error {
                o.insert("lease_error".into(), e.clone().into());
            }
        }
    }

    /// The role gauge, the lease token, takeovers, refused commits and dropped messages.
    pub(super) fn render_lease(&self, page: &mut Exposition) {
        let Some(ha) = self.ha.as_ref() else {
            return;
        };
        let refused = ha
            .refused
            .saturating_add(self.server.as_ref().map_or(0, |s| s.store().refused()));
        page.family(
            "dtls_group_keyserver_role",
            MetricType::Gauge,
            "This key server's role: 0 standby, 1 active (holds the lease), 2 fenced (lost it).",
        )
        .sample(&[], u64::from(ha.role.gauge()));
        page.family(
            "dtls_group_keyserver_lease_token",
            MetricType::Gauge,
            "The fencing token of the lease as last seen (held here while the role is active).",
        )
        .sample(
            &[],
            u64::try_from(ha.token.or(ha.view.as_ref().map(|v| v.token)).unwrap_or(0)).unwrap_or(0),
        );
        page.family(
            "dtls_group_keyserver_takeovers_total",
            MetricType::Counter,
            "Times this key server acquired the lease and loaded the state.",
        )
        .sample(&[], ha.takeovers);
        page.family(
            "dtls_group_keyserver_stepped_down_total",
            MetricType::Counter,
            "Times this key server lost the lease and dropped its state.",
        )
        .sample(&[], ha.lost);
        page.family(
            "dtls_group_keyserver_fenced_commits_total",
            MetricType::Counter,
            "Writes the database refused because the lease had passed to another server.",
        )
        .sample(&[], refused);
        page.family(
            "dtls_group_keyserver_standby_dropped_total",
            MetricType::Counter,
            "Key-distribution messages dropped because this server was not active.",
        )
        .sample(&[], ha.dropped);
    }
}

impl Drop for KeyServerDaemon {
    fn drop(&mut self) {
        // A clean stop gives the lease up: a standby takes over at once.
        self.server = None;
        if let Some(ha) = self.ha.as_mut() {
            ha.release();
        }
    }
}
