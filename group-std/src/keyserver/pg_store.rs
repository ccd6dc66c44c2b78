//! [`ServerStore`] on PostgreSQL, shared by several key servers of which one is active (it
//! holds the lease, [`PgLease`](super::PgLease)). A commit is one SQL transaction that first
//! raises the state generation on the condition that this server still holds the lease with
//! its token (`UPDATE keyserver_lease ... WHERE holder = me AND token = mine AND expires_at >
//! now()` must hit the row): a server that lost the lease, even one paused for minutes that
//! does not know it yet, writes nothing ([`StoreError::Fenced`]). The rows follow in the same
//! transaction, so counters reserved ahead are reserved in it.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use group_core::keydist::{Row, RowVisitor, ServerStore, Table, migrate_v2_row, state_format};
use group_core::sequence::StoreError;
use postgres::Client;

use super::high_water::HighWater;
use super::pg_schema::{self, other};

/// The key server's state in PostgreSQL, written under the fencing token `token`.
pub struct PgServerStore {
    client: RefCell<Client>,
    me: String,
    token: i64,
    fence: Arc<Mutex<HighWater>>,
    /// A commit was refused: the lease is someone else's.
    fenced: Cell<bool>,
    /// Commits refused so (for the metrics).
    refused: Cell<u64>,
    /// The statements of a commit, prepared once on this connection.
    stmts: Stmts,
}

struct Stmts {
    fence: postgres::Statement,
    upsert: postgres::Statement,
    delete: postgres::Statement,
}

impl std::fmt::Debug for PgServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServerStore")
            .field("me", &self.me)
            .field("token", &self.token)
            .field("fenced", &self.fenced)
            .finish_non_exhaustive()
    }
}

fn io(e: postgres::Error) -> std::io::Error {
    other(format!("postgres: {e}"))
}

/// The fencing condition every write of the active server carries.
const FENCE: &str = "UPDATE keyserver_lease SET generation = generation + 1 \
    WHERE id = 1 AND holder = $1 AND token = $2 AND expires_at > now() RETURNING generation";

impl PgServerStore {
    /// Opens the store (its own connection) for server `me` holding the lease with `token`.
    pub fn open(
        conninfo: &str,
        me: &str,
        token: i64,
        bound: Duration,
        fence: Arc<Mutex<HighWater>>,
    ) -> std::io::Result<Self> {
        let mut client = pg_schema::connect(conninfo, bound)?;
        pg_schema::migrate(&mut client)?;
        let stmts = Stmts {
            fence: client.prepare(FENCE).map_err(io)?,
            upsert: client
                .prepare(
                    "INSERT INTO keyserver_rows VALUES ($1, $2, $3) \
                     ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                )
                .map_err(io)?,
            delete: client
                .prepare("DELETE FROM keyserver_rows WHERE kind = $1 AND key = $2")
                .map_err(io)?,
        };
        let store = Self {
            stmts,
            client: RefCell::new(client),
            me: me.to_owned(),
            token,
            fence,
            fenced: Cell::new(false),
            refused: Cell::new(0),
        };
        store.migrate_records()?;
        Ok(store)
    }

    /// Converts records of format 2 (memberships inside the device rows) to format 3 (a row
    /// per (device, group)) in one fenced transaction, so only the lease holder migrates and a
    /// server that lost the lease meanwhile writes nothing; refuses a newer format.
    fn migrate_records(&self) -> std::io::Result<()> {
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT value FROM keyserver_rows WHERE kind = $1 AND key = 0",
                &[&Table::Counters.name()],
            )
            .map_err(io)?;
        let Some(row) = row else { return Ok(()) };
        let format = state_format(row.get::<_, &[u8]>(0))
            .ok_or_else(|| other("postgres state: the counters row does not decode"))?;
        match format {
            pg_schema::STATE_FORMAT => return Ok(()),
            2 => {}
            f if f > pg_schema::STATE_FORMAT => {
                return Err(other(format!(
                    "postgres state format {f} is newer than this key server's ({}): upgrade \
                     the key server",
                    pg_schema::STATE_FORMAT
                )));
            }
            f => return Err(other(format!("postgres state: unknown format {f}"))),
        }
        let mut failed = None;
        self.write(|tx| {
            let rows = tx.query(
                "SELECT kind, key, value FROM keyserver_rows WHERE kind = $1 OR kind = $2 \
                 FOR UPDATE",
                &[&Table::Counters.name(), &Table::Devices.name()],
            )?;
            let mut out: Vec<(Table, u64, Vec<u8>)> = Vec::new();
            for r in &rows {
                let Some(kind) = kind_of(r.get::<_, &str>(0)) else {
                    failed = Some("a row of an unknown kind".to_owned());
                    return Ok(());
                };
                let key = from_sql_key(r.get::<_, i64>(1));
                let res = migrate_v2_row(kind, key, r.get::<_, &[u8]>(2), &mut |k, key, v| {
                    out.push((k, key, v.to_vec()));
                    Ok(())
                });
                if let Err(e) = res {
                    failed = Some(format!("a row of format 2 does not decode ({e:?})"));
                    return Ok(());
                }
            }
            for (kind, key, value) in &mut out {
                tx.execute(
                    &self.stmts.upsert,
                    &[&kind.name(), &to_sql_key(*key), &value.as_slice()],
                )?;
                zeroize::Zeroize::zeroize(value);
            }
            Ok(())
        })?;
        // A row that did not convert: the transaction wrote it all or nothing; say which.
        match failed {
            Some(e) => Err(other(format!("postgres state: migrating: {e}"))),
            None => {
                tracing::info!(
                    "key-server state converted from format 2 (memberships inside device rows) \
                     to format 3 (a row per device and group)"
                );
                Ok(())
            }
        }
    }

    /// The fencing token this store writes under.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Whether a write was refused because the lease is no longer this server's.
    pub fn fenced(&self) -> bool {
        self.fenced.get()
    }

    /// Whether the database closed this store's connection (a restart or failover of the
    /// database): the server steps down and opens a new store when it holds the lease again.
    pub fn broken(&self) -> bool {
        self.client.try_borrow().is_ok_and(|c| c.is_closed())
    }

    /// Writes refused by the fence.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Commits are atomic but not flushed one by one until [`make_durable`](Self::make_durable)
    /// (the daemon applies its configuration so).
    pub fn defer_durability(&self) -> std::io::Result<()> {
        self.client
            .borrow_mut()
            .batch_execute("SET synchronous_commit = off")
            .map_err(io)?;
        Ok(())
    }

    /// Flushes every commit so far (the next synchronous commit flushes the log before it)
    /// and commits durably from now on.
    pub fn make_durable(&self) -> std::io::Result<()> {
        self.client
            .borrow_mut()
            .batch_execute("SET synchronous_commit = on")
            .map_err(io)?;
        // One fenced, durable (empty) commit: flushes everything before it.
        self.write(|_| Ok(()))
    }

    /// Runs `f` in one transaction that first passes the fence; raises the high-water mark
    /// after it committed.
    fn write(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<(), postgres::Error>,
    ) -> std::io::Result<()> {
        let f = |tx: &mut postgres::Transaction<'_>, _: &Stmts| f(tx);
        match self.fenced_tx(f) {
            Ok(()) => Ok(()),
            Err(StoreError::Fenced) => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "fenced: the lease passed to another key server; nothing was written",
            )),
            Err(e) => Err(other(e)),
        }
    }

    fn fenced_tx(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &Stmts) -> Result<(), postgres::Error>,
    ) -> Result<(), StoreError> {
        let log = |e: postgres::Error| {
            tracing::warn!(error = %e, "postgres write failed");
            StoreError::Io
        };
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(log)?;
        let generation: Option<i64> = tx
            .query_opt(&self.stmts.fence, &[&self.me, &self.token])
            .map_err(log)?
            .map(|r| r.get(0));
        let Some(generation) = generation else {
            drop(tx);
            self.fenced.set(true);
            self.refused.set(self.refused.get().saturating_add(1));
            tracing::warn!(
                token = self.token,
                "write refused by the database: this server no longer holds the lease (fenced)"
            );
            return Err(StoreError::Fenced);
        };
        f(&mut tx, &self.stmts).map_err(log)?;
        tx.commit().map_err(log)?;
        // Noted in memory; the lease writes it to the file at its next renewal.
        if let Ok(mut h) = self.fence.lock() {
            h.note(self.token, generation);
        }
        Ok(())
    }

    /// Records a device's last authenticated address (fenced like every write).
    pub fn save_address(&self, device: u32, addr: std::net::SocketAddr) -> std::io::Result<()> {
        let a = addr.to_string();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO keyserver_device_addresses VALUES ($1, $2) \
                 ON CONFLICT (device) DO UPDATE SET addr = excluded.addr",
                &[&i64::from(device), &a],
            )
            .map(drop)
        })
    }

    /// The stored device addresses.
    pub fn addresses(&self) -> std::io::Result<Vec<(u32, std::net::SocketAddr)>> {
        let rows = self
            .client
            .borrow_mut()
            .query("SELECT device, addr FROM keyserver_device_addresses", &[])
            .map_err(io)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let d = u32::try_from(r.get::<_, i64>(0)).ok()?;
                let a = r.get::<_, String>(1).parse().ok()?;
                Some((d, a))
            })
            .collect())
    }

    /// Records that an operator revoked `device`.
    pub fn add_revoked(&self, device: u32) -> std::io::Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO keyserver_revoked VALUES ($1) ON CONFLICT DO NOTHING",
                &[&i64::from(device)],
            )
            .map(drop)
        })
    }

    /// Forgets a revocation mark.
    pub fn remove_revoked(&self, device: u32) -> std::io::Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM keyserver_revoked WHERE device = $1",
                &[&i64::from(device)],
            )
            .map(drop)
        })
    }

    /// Whether an operator revoked `device`.
    pub fn is_revoked(&self, device: u32) -> std::io::Result<bool> {
        Ok(self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT 1 FROM keyserver_revoked WHERE device = $1",
                &[&i64::from(device)],
            )
            .map_err(io)?
            .is_some())
    }
}

fn kind_of(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.name() == name)
}

/// A row key as PostgreSQL's `bigint` (bit for bit: a (device, group) key may use all 64
/// bits; a device or group ID is the same number).
fn to_sql_key(key: u64) -> i64 {
    i64::from_be_bytes(key.to_be_bytes())
}

/// The row key of a `bigint`.
fn from_sql_key(key: i64) -> u64 {
    u64::from_be_bytes(key.to_be_bytes())
}

impl ServerStore for PgServerStore {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        let mut client = self.client.borrow_mut();
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|_| StoreError::Io)?;
        let commissioned: bool = tx
            .query_one("SELECT commissioned FROM keyserver_lease WHERE id = 1", &[])
            .map_err(|_| StoreError::Io)?
            .get(0);
        let rows = tx
            .query("SELECT kind, key, value FROM keyserver_rows", &[])
            .map_err(|_| StoreError::Io)?;
        let mut written = false;
        for r in &rows {
            let kind = kind_of(r.get::<_, &str>(0)).ok_or(StoreError::Corrupt)?;
            let key = from_sql_key(r.get::<_, i64>(1));
            written = true;
            visit(kind, key, r.get::<_, &[u8]>(2))?;
        }
        tx.commit().map_err(|_| StoreError::Io)?;
        match (written, commissioned) {
            (true, _) => Ok(true),
            (false, true) => Ok(false),
            (false, false) => Err(StoreError::Missing),
        }
    }

    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
        self.fenced_tx(|tx, st| {
            for r in rows {
                let key = to_sql_key(r.key);
                match r.value {
                    Some(v) => tx.execute(&st.upsert, &[&r.table.name(), &key, &v])?,
                    None => tx.execute(&st.delete, &[&r.table.name(), &key])?,
                };
            }
            Ok(())
        })
    }
}
