//! The key server's schema on PostgreSQL, created and migrated by the daemon, versioned in
//! `keyserver_schema_version`. Every migration runs in one transaction under an advisory lock,
//! so several key servers starting together migrate once.
//!
//! Version 1:
//! - `keyserver_rows (kind text, key bigint, value bytea)`: the key server's records, keyed by
//!   (record kind, key) like the redb store's tables.
//! - `keyserver_lease`: one row (id 1): the lease (`holder`, fencing `token`, `expires_at` on
//!   the database's clock), the state `generation` (raised by every commit) and whether the
//!   state was `commissioned` (`--init`).
//! - `keyserver_device_addresses (device, addr)`: each device's last authenticated address, so
//!   that a server taking over reaches members for rekeys.
//! - `keyserver_revoked (device)`: devices an operator revoked.
//!
//! Version 2 (the same tables): `keyserver_rows` also holds the (device, group) records
//! (kind `keyserver_memberships`, the key's 64 bits stored bit for bit in the `bigint`), and
//! the records are of state format 3; records of format 2 (memberships inside the device rows)
//! are converted by the lease holder when it opens the store (`PgServerStore::open`), in one
//! fenced transaction. A key server of version 1 refuses the schema (it would write device
//! rows of format 2).

use std::time::Duration;

use postgres::{Client, NoTls};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 2;

/// The key server's state format (group-core's) the rows of this schema hold.
pub const STATE_FORMAT: u8 = 3;

/// Any advisory-lock key, the same in every server: serializes migrations.
const MIGRATION_LOCK: i64 = 0x6474_6c73_6b73; // "dtlsks"

const V1: &str = "
CREATE TABLE keyserver_rows (
    kind text NOT NULL,
    key bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE keyserver_lease (
    id int PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    token bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    generation bigint NOT NULL,
    commissioned boolean NOT NULL
);
INSERT INTO keyserver_lease VALUES (1, '', 0, 'epoch', 0, false);
CREATE TABLE keyserver_device_addresses (
    device bigint PRIMARY KEY,
    addr text NOT NULL
);
CREATE TABLE keyserver_revoked (
    device bigint PRIMARY KEY
);
";

pub(crate) fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Connects to `conninfo` (a libpq connection string or URL) with bounded waits: a stopped
/// peer holding a row lock, or a database that stops answering, can't hang the key server
/// for longer than `bound`. A transaction left open (this process paused) is ended by the
/// database after `bound` too, so its row locks don't block the server taking over.
pub fn connect(conninfo: &str, bound: Duration) -> std::io::Result<Client> {
    let mut cfg: postgres::Config = conninfo
        .parse()
        .map_err(|e| other(format!("postgres conninfo: {e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    cfg.application_name("dtls-group-keyserver");
    let mut client = cfg
        .connect(NoTls)
        .map_err(|e| other(format!("postgres: {e}")))?;
    let ms = bound.as_millis().max(1);
    client
        .batch_execute(&format!(
            "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
             SET idle_in_transaction_session_timeout = {ms};"
        ))
        .map_err(|e| other(format!("postgres: {e}")))?;
    Ok(client)
}

/// Creates or migrates the schema to [`SCHEMA_VERSION`]; refuses a newer one. Returns the
/// version found before.
pub fn migrate(client: &mut Client) -> std::io::Result<i32> {
    let e = |e: postgres::Error| other(format!("postgres schema: {e}"));
    let mut tx = client.transaction().map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(e)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS keyserver_schema_version (version int NOT NULL)")
        .map_err(e)?;
    let found: i32 = tx
        .query_opt("SELECT max(version) FROM keyserver_schema_version", &[])
        .map_err(e)?
        .and_then(|r| r.get::<_, Option<i32>>(0))
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(other(format!(
            "postgres schema version {found} is newer than this key server's \
             ({SCHEMA_VERSION}): upgrade the key server"
        )));
    }
    if found < 1 {
        tx.batch_execute(V1).map_err(e)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM keyserver_schema_version", &[])
            .map_err(e)?;
        tx.execute(
            "INSERT INTO keyserver_schema_version VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .map_err(e)?;
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "postgres schema created or migrated"
        );
    }
    tx.commit().map_err(e)?;
    Ok(found)
}
