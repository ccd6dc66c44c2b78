//! The daemon's role among several key servers on one PostgreSQL database: active (holds the
//! lease, answers devices, writes), standby (waits for the lease; drops key-distribution
//! messages so members' retries move on to the next address), fenced (lost the lease: its
//! in-memory state dropped; a standby until it acquires the lease again).
//!
//! Timing: the active server renews every `renew` interval; if a renewal has not succeeded
//! within the lease duration of the last successful one's *start* it steps down by itself
//! (the database's expiry is at least that late: `now() + lease` at the database, after the
//! statement was sent). A standby tries to acquire at every interval; the database grants it
//! only after the expiry. No clocks are compared between machines.

#[cfg(feature = "postgres")]
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use super::config::PgSettings;
#[cfg(feature = "postgres")]
use super::pg_lease::{LeaseError, LeaseView, PgLease};

/// A key server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease (or is the only server, on redb): answers devices and writes.
    Active,
    /// Waits for the lease; answers no device.
    Standby,
    /// Lost the lease (a renewal failed or a write was refused): dropped its state; waits for
    /// the lease like a standby.
    Fenced,
}

impl Role {
    /// The name in `status` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
        }
    }

    /// The value of the role gauge (0 standby, 1 active, 2 fenced).
    pub fn gauge(self) -> u8 {
        match self {
            Role::Standby => 0,
            Role::Active => 1,
            Role::Fenced => 2,
        }
    }
}

/// What a tick of the lease did.
#[cfg(feature = "postgres")]
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tick {
    /// Nothing changed.
    Nothing,
    /// This server acquired the lease with this token: load the state, then answer.
    Acquired(i64),
    /// This server lost the lease: drop the state now.
    Lost(&'static str),
}

/// The lease side of a daemon on PostgreSQL.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(super) struct Ha {
    pub(super) lease: PgLease,
    pub(super) settings: PgSettings,
    pub(super) role: Role,
    /// The token while active.
    pub(super) token: Option<i64>,
    /// When the last successful renewal (or the acquisition) was sent.
    renewed_at: Option<Instant>,
    next_at: Instant,
    /// The lease row as last read.
    pub(super) view: Option<LeaseView>,
    /// Who held the lease before this server's last acquisition.
    pub(super) previous: String,
    /// Acquisitions by this server.
    pub(super) takeovers: u64,
    /// Times this server lost the lease.
    pub(super) lost: u64,
    /// Key-distribution messages dropped while not active.
    pub(super) dropped: u64,
    /// Writes refused by the fence (of state dropped since).
    pub(super) refused: u64,
    /// The last lease error (a database behind the high-water mark, unreachable, ...).
    pub(super) last_error: Option<String>,
}

#[cfg(feature = "postgres")]
impl Ha {
    pub(super) fn new(lease: PgLease, settings: PgSettings, view: Option<LeaseView>) -> Self {
        Self {
            lease,
            settings,
            role: Role::Standby,
            token: None,
            renewed_at: None,
            next_at: Instant::now(),
            view,
            previous: String::new(),
            takeovers: 0,
            lost: 0,
            dropped: 0,
            refused: 0,
            last_error: None,
        }
    }

    fn error(&mut self, e: &LeaseError) {
        let s = e.to_string();
        if self.last_error.as_deref() != Some(&s) {
            match e {
                LeaseError::Stale(_) => tracing::error!(error = %s, "lease: database refused"),
                LeaseError::Db(_) => tracing::warn!(error = %s, "lease: database error"),
            }
        }
        self.last_error = Some(s);
    }

    /// Renews, acquires or gives up the lease as its timers say.
    pub(super) fn tick(&mut self) -> Tick {
        let now = Instant::now();
        if let (Some(token), Some(at)) = (self.token, self.renewed_at) {
            if now.saturating_duration_since(at) >= self.settings.lease {
                return self.lose("the lease expired before a renewal succeeded");
            }
            if now < self.next_at {
                return Tick::Nothing;
            }
            if let Err(e) = self.lease.flush_fence() {
                tracing::warn!(error = %e, "could not write the high-water file");
            }
            match self.lease.renew_view(token) {
                Ok(Some(v)) => {
                    self.view = Some(v);
                    self.renewed_at = Some(now);
                    self.next_at = now + self.settings.renew;
                    self.last_error = None;
                    Tick::Nothing
                }
                Ok(None) => self.lose("the lease is no longer ours (expired or taken over)"),
                Err(e) => {
                    // Try again soon; the expiry check above steps down in time.
                    self.error(&e);
                    self.next_at = now + self.settings.renew / 4;
                    Tick::Nothing
                }
            }
        } else {
            if now < self.next_at {
                return Tick::Nothing;
            }
            self.next_at = now + self.settings.renew;
            match self.lease.observe() {
                Ok(v) => self.view = Some(v),
                Err(e) => {
                    self.error(&e);
                    return Tick::Nothing;
                }
            }
            match self.lease.acquire() {
                Ok(Some(v)) => {
                    let token = v.token;
                    self.previous = self
                        .view
                        .as_ref()
                        .map(|v| v.holder.clone())
                        .unwrap_or_default();
                    self.view = Some(v);
                    self.token = Some(token);
                    self.renewed_at = Some(now);
                    self.next_at = now + self.settings.renew;
                    self.takeovers = self.takeovers.saturating_add(1);
                    self.last_error = None;
                    Tick::Acquired(token)
                }
                Ok(None) => Tick::Nothing,
                Err(e) => {
                    self.error(&e);
                    Tick::Nothing
                }
            }
        }
    }

    /// Steps down: no token, role fenced.
    pub(super) fn lose(&mut self, reason: &'static str) -> Tick {
        self.token = None;
        self.renewed_at = None;
        self.role = Role::Fenced;
        self.lost = self.lost.saturating_add(1);
        self.next_at = Instant::now() + self.settings.renew;
        // Who holds it now (for status and the log).
        if let Ok(v) = self.lease.observe() {
            self.view = Some(v);
        }
        Tick::Lost(reason)
    }

    /// The time left on the lease as this server counts it (while active).
    pub(super) fn left(&self) -> Option<Duration> {
        self.renewed_at
            .map(|at| self.settings.lease.saturating_sub(at.elapsed()))
    }

    /// Gives the lease up (a clean stop).
    pub(super) fn release(&mut self) {
        if let Err(e) = self.lease.flush_fence() {
            tracing::warn!(error = %e, "could not write the high-water file");
        }
        if let Some(t) = self.token.take() {
            match self.lease.release(t) {
                Ok(()) => tracing::info!(token = t, "lease released"),
                Err(e) => tracing::warn!(error = %e, "could not release the lease"),
            }
        }
    }
}
