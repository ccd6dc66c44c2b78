//! The lease of the key servers sharing one PostgreSQL database: one row holding the current
//! holder, a fencing token and an expiry on the database's clock (`now()`), so the servers need
//! no synchronized clocks. A server acquires the lease only when it expired (or was never
//! held), and every acquisition raises the token: the token is monotonic, and every write of
//! the active server is conditional on it ([`PgServerStore`](super::PgServerStore)).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;

use super::high_water::HighWater;
use super::pg_schema::{self, other};

/// What the lease row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The server that holds (or last held) the lease; empty if never held.
    pub holder: String,
    /// The fencing token of the last acquisition.
    pub token: i64,
    /// Milliseconds until it expires on the database's clock (0: expired).
    pub expires_in_ms: i64,
    /// The state generation (raised by every commit).
    pub generation: i64,
    /// Whether the state was commissioned (`--init`).
    pub commissioned: bool,
}

/// Why a lease operation failed.
#[derive(Debug)]
pub enum LeaseError {
    /// The database is older than this server's high-water mark (a restored snapshot).
    Stale(super::high_water::Behind),
    /// The database could not be reached or refused the statement.
    Db(std::io::Error),
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Stale(b) => b.fmt(f),
            LeaseError::Db(e) => e.fmt(f),
        }
    }
}

/// One server's handle on the lease (its own connection).
pub struct PgLease {
    client: Client,
    conninfo: String,
    me: String,
    lease: Duration,
    fence: Arc<Mutex<HighWater>>,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease")
            .field("me", &self.me)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

fn db(e: postgres::Error) -> LeaseError {
    LeaseError::Db(other(format!("postgres: {e}")))
}

/// The columns of a [`LeaseView`].
const COLUMNS: &str = "holder, token, \
    GREATEST(0, (extract(epoch FROM expires_at - now()) * 1000)::bigint), generation, \
    commissioned";

fn view_of(row: &postgres::Row) -> LeaseView {
    LeaseView {
        holder: row.get(0),
        token: row.get(1),
        expires_in_ms: row.get(2),
        generation: row.get(3),
        commissioned: row.get(4),
    }
}

impl PgLease {
    /// Connects as server `me`, creates or migrates the schema, and checks the database against
    /// the high-water mark (a restored snapshot is refused here, at startup).
    pub fn connect(
        conninfo: &str,
        me: &str,
        lease: Duration,
        fence: Arc<Mutex<HighWater>>,
    ) -> Result<Self, LeaseError> {
        let mut client = pg_schema::connect(conninfo, lease).map_err(LeaseError::Db)?;
        pg_schema::migrate(&mut client).map_err(LeaseError::Db)?;
        let mut l = Self {
            client,
            conninfo: conninfo.to_owned(),
            me: me.to_owned(),
            lease,
            fence,
        };
        l.observe()?;
        Ok(l)
    }

    /// This server's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The connection string (for the store's own connection).
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// The lease duration.
    pub fn duration(&self) -> Duration {
        self.lease
    }

    /// The high-water mark shared with the store.
    pub fn fence(&self) -> Arc<Mutex<HighWater>> {
        Arc::clone(&self.fence)
    }

    /// Writes the high-water mark the commits noted since the last write.
    pub fn flush_fence(&self) -> std::io::Result<()> {
        match self.fence.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Err(other("poisoned")),
        }
    }

    fn check(&self, token: i64, generation: i64) -> Result<(), LeaseError> {
        let fence = self
            .fence
            .lock()
            .map_err(|_| LeaseError::Db(other("poisoned")))?;
        fence.check(token, generation).map_err(LeaseError::Stale)
    }

    /// The connection, opened again if the database closed it (a restart, a failover of the
    /// database, `pg_terminate_backend`).
    fn client(&mut self) -> Result<&mut Client, LeaseError> {
        if self.client.is_closed() {
            self.client = pg_schema::connect(&self.conninfo, self.lease).map_err(LeaseError::Db)?;
            tracing::info!("lease: reconnected to postgres");
        }
        Ok(&mut self.client)
    }

    /// Reads the lease row; checks it against the high-water mark and raises the mark to it.
    pub fn observe(&mut self) -> Result<LeaseView, LeaseError> {
        let row = self
            .client()?
            .query_one(
                &format!("SELECT {COLUMNS} FROM keyserver_lease WHERE id = 1"),
                &[],
            )
            .map_err(db)?;
        let v = view_of(&row);
        self.check(v.token, v.generation)?;
        if let Ok(mut f) = self.fence.lock() {
            f.raise(v.token, v.generation).map_err(LeaseError::Db)?;
        }
        Ok(v)
    }

    /// Marks the state commissioned (`--init`, a new installation). Refuses a database whose
    /// state was commissioned already.
    pub fn commission(&mut self) -> std::io::Result<()> {
        let n = self
            .client()
            .map_err(|e| other(e.to_string()))?
            .execute(
                "UPDATE keyserver_lease SET commissioned = true WHERE id = 1 AND NOT commissioned",
                &[],
            )
            .map_err(|e| other(format!("postgres: {e}")))?;
        if n != 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the postgres state is commissioned already; refusing to reset it (start \
                 without --init to use it)",
            ));
        }
        Ok(())
    }

    /// Takes the lease if it expired or was never held: the token goes up by one. Returns the
    /// new token, or `None` if another server holds the lease. A database behind the
    /// high-water mark is refused before anything is written.
    pub fn try_acquire(&mut self) -> Result<Option<i64>, LeaseError> {
        Ok(self.acquire()?.map(|v| v.token))
    }

    /// [`try_acquire`](Self::try_acquire), returning the lease row as it is now.
    pub fn acquire(&mut self) -> Result<Option<LeaseView>, LeaseError> {
        let ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let me = self.me.clone();
        let fence = Arc::clone(&self.fence);
        let mut tx = self.client()?.transaction().map_err(db)?;
        let row = tx
            .query_one(
                "SELECT token, generation, expires_at <= now() FROM keyserver_lease \
                 WHERE id = 1 FOR UPDATE",
                &[],
            )
            .map_err(db)?;
        let (token, generation, free): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        {
            let fence = fence
                .lock()
                .map_err(|_| LeaseError::Db(other("poisoned")))?;
            fence.check(token, generation).map_err(LeaseError::Stale)?;
        }
        if !free {
            return Ok(None);
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE keyserver_lease SET holder = $1, token = token + 1, \
                     expires_at = now() + $2::bigint * interval '1 millisecond' \
                     WHERE id = 1 RETURNING {COLUMNS}"
                ),
                &[&me, &ms],
            )
            .map_err(db)?;
        let v = view_of(&row);
        tx.commit().map_err(db)?;
        if let Ok(mut f) = self.fence.lock() {
            f.raise(v.token, generation).map_err(LeaseError::Db)?;
        }
        Ok(Some(v))
    }

    /// Extends the lease held with `token` by the lease duration from now. `false`: it is no
    /// longer ours (expired, or taken over).
    pub fn renew(&mut self, token: i64) -> Result<bool, LeaseError> {
        Ok(self.renew_view(token)?.is_some())
    }

    /// [`renew`](Self::renew), returning the lease row as it is now (`None`: not ours).
    pub fn renew_view(&mut self, token: i64) -> Result<Option<LeaseView>, LeaseError> {
        let ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let me = self.me.clone();
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "UPDATE keyserver_lease SET expires_at = now() + $3::bigint * interval '1 millisecond' \
                     WHERE id = 1 AND holder = $1 AND token = $2 AND expires_at > now() \
                     RETURNING {COLUMNS}"
                ),
                &[&me, &token, &ms],
            )
            .map_err(db)?;
        Ok(row.as_ref().map(view_of))
    }

    /// Gives the lease up (a clean stop): a standby takes over at once instead of waiting for
    /// the expiry.
    pub fn release(&mut self, token: i64) -> Result<(), LeaseError> {
        let me = self.me.clone();
        self.client()?
            .execute(
                "UPDATE keyserver_lease SET expires_at = now() \
                 WHERE id = 1 AND holder = $1 AND token = $2 AND expires_at > now()",
                &[&me, &token],
            )
            .map_err(db)?;
        Ok(())
    }
}
