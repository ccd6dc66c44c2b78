//! [`ServerStore`] in a redb database: one table per record kind ([`Table`]: counters, groups,
//! devices, (device, group) memberships), one row per record. A commit is one write transaction touching only the rows the
//! key server changed, committed with redb's default (immediate) durability, so a crash at any
//! point leaves the previous or the new state, never a mix.
//!
//! A database in the single-blob format of before issue 16 (table `keyserver_state`, one row,
//! format 1) is converted on open, in one write transaction: the records are written and the
//! old table deleted together. A database of records of format 2 (each device's groups and
//! memberships inside its row) is converted on open too, in one write transaction, to format
//! 3 (a row per (device, group)). A state of a newer format is refused.

use std::path::Path;

use group_core::keydist::{
    Row, RowVisitor, ServerStore, Table, migrate_v1, migrate_v2_row, state_format,
};
use group_core::sequence::StoreError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The single-blob state of format 1 (before issue 16), migrated on open.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("keyserver_state");
const KEY: &str = "state";
/// Capacities of the daemon that wrote format 1 (`KeyServer<_, 64, 8, 16384>`).
const V1_DEVICES: usize = 64;
const V1_GROUPS: usize = 8;

/// The redb table of a record kind keyed by a device or group ID (counters, groups, devices).
fn table(t: Table) -> TableDefinition<'static, u32, &'static [u8]> {
    TableDefinition::new(t.name())
}
/// The (device, group) records, keyed by [`member_key`](group_core::keydist::member_key).
const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("keyserver_memberships");
/// The record kinds keyed by a 32-bit ID.
const ID_TABLES: [Table; 3] = [Table::Counters, Table::Groups, Table::Devices];
/// The record format this build writes (group-core's), and the one it migrates from.
const FORMAT: u8 = 3;
const V2_FORMAT: u8 = 2;
/// Written once when the state is created: an empty state is only legitimate with it.
const COMMISSIONED: TableDefinition<&str, u64> = TableDefinition::new("commissioned");
/// Last authenticated UDP address of each device, so a restarted server can reach members.
const ADDRESSES: TableDefinition<u32, &str> = TableDefinition::new("device_addresses");
/// Devices revoked by an operator: never admitted again from the config file.
const REVOKED: TableDefinition<u32, u64> = TableDefinition::new("revoked_devices");

/// The key server's state in a redb file.
pub struct RedbServerStore {
    db: Database,
    /// Commits are not made durable one by one ([`defer_durability`](Self::defer_durability)).
    deferred: std::cell::Cell<bool>,
}

impl std::fmt::Debug for RedbServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbServerStore").finish_non_exhaustive()
    }
}

/// redb holds an exclusive OS lock on its file while a [`Database`] is open: a second key
/// server on the same state is refused, and says so.
fn db_error(path: &Path, e: redb::DatabaseError) -> std::io::Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "state {} is in use by another key server process (redb's file lock)",
                path.display()
            ),
        ),
        other => std::io::Error::other(format!("state {}: {other}", path.display())),
    }
}

impl RedbServerStore {
    /// Opens an existing state database. A missing file is an error: starting a key server
    /// from nothing would hand out epochs and sender IDs again.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if !path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "state {} is missing (use --init only for a new installation)",
                    path.display()
                ),
            ));
        }
        let db = Database::create(path).map_err(|e| db_error(path, e))?;
        if migrate(&db).map_err(|e| {
            std::io::Error::other(format!("state {}: migrating: {e}", path.display()))
        })? {
            tracing::info!(
                state = %path.display(),
                "key-server state converted from the single-blob format (1) to records"
            );
        }
        if migrate_v2(&db).map_err(|e| {
            std::io::Error::other(format!("state {}: migrating: {e}", path.display()))
        })? {
            tracing::info!(
                state = %path.display(),
                "key-server state converted from format 2 (memberships inside device rows) \
                 to format 3 (a row per device and group)"
            );
        }
        Ok(Self {
            db,
            deferred: std::cell::Cell::new(false),
        })
    }

    /// Creates a new, commissioned, empty state database; refuses if the file exists.
    pub fn create_new(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "state {} exists; refusing to reset it (start without --init to use it)",
                    path.display()
                ),
            ));
        }
        let db = Database::create(path).map_err(|e| db_error(path, e))?;
        // The state holds epoch secrets: only the key server's user may read it.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let tx = db.begin_write().map_err(std::io::Error::other)?;
        {
            let mut t = tx.open_table(COMMISSIONED).map_err(std::io::Error::other)?;
            t.insert("at", 1).map_err(std::io::Error::other)?;
        }
        tx.commit().map_err(std::io::Error::other)?;
        Ok(Self {
            db,
            deferred: std::cell::Cell::new(false),
        })
    }
}

impl RedbServerStore {
    /// From now on commits are atomic but not durable one by one, until
    /// [`make_durable`](Self::make_durable) (redb's `Durability::None`: a crash loses them
    /// together, back to the last durable commit). The daemon uses it only while it applies
    /// its configuration at startup, before anything leaves: admitting 10,000 devices then
    /// costs one disk flush, not 10,000, and a crash in between loses only admissions nobody
    /// has heard of.
    pub fn defer_durability(&self) {
        self.deferred.set(true);
    }

    /// Makes every commit so far durable (one empty durable transaction) and commits durably
    /// from now on.
    pub fn make_durable(&self) -> std::io::Result<()> {
        self.deferred.set(false);
        let tx = self.db.begin_write().map_err(std::io::Error::other)?;
        tx.commit().map_err(std::io::Error::other)
    }

    fn put<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
        key: K::SelfType<'_>,
        value: V::SelfType<'_>,
    ) -> std::io::Result<()> {
        let tx = self.db.begin_write().map_err(std::io::Error::other)?;
        {
            let mut t = tx.open_table(table).map_err(std::io::Error::other)?;
            t.insert(key, value).map_err(std::io::Error::other)?;
        }
        tx.commit().map_err(std::io::Error::other)
    }

    /// Records a device's last authenticated address.
    pub fn save_address(&self, device: u32, addr: std::net::SocketAddr) -> std::io::Result<()> {
        self.put(ADDRESSES, device, addr.to_string().as_str())
    }

    /// The stored device addresses.
    pub fn addresses(&self) -> std::io::Result<Vec<(u32, std::net::SocketAddr)>> {
        let tx = self.db.begin_read().map_err(std::io::Error::other)?;
        let t = match tx.open_table(ADDRESSES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let mut out = Vec::new();
        for row in redb::ReadableTable::iter(&t).map_err(std::io::Error::other)? {
            let (k, v) = row.map_err(std::io::Error::other)?;
            if let Ok(a) = v.value().parse() {
                out.push((k.value(), a));
            }
        }
        Ok(out)
    }

    /// Records that an operator revoked `device`.
    pub fn add_revoked(&self, device: u32) -> std::io::Result<()> {
        self.put(REVOKED, device, 1)
    }

    /// Forgets a revocation mark (the revocation itself failed).
    pub fn remove_revoked(&self, device: u32) -> std::io::Result<()> {
        let tx = self.db.begin_write().map_err(std::io::Error::other)?;
        {
            let mut t = tx.open_table(REVOKED).map_err(std::io::Error::other)?;
            t.remove(device).map_err(std::io::Error::other)?;
        }
        tx.commit().map_err(std::io::Error::other)
    }

    /// Whether an operator revoked `device`.
    pub fn is_revoked(&self, device: u32) -> std::io::Result<bool> {
        let tx = self.db.begin_read().map_err(std::io::Error::other)?;
        match tx.open_table(REVOKED) {
            Ok(t) => Ok(t.get(device).map_err(std::io::Error::other)?.is_some()),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Converts a single-blob state (format 1) to records in one write transaction. Returns whether
/// there was one.
fn migrate(db: &Database) -> Result<bool, String> {
    let blob = {
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let t = match tx.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        match t.get(KEY).map_err(|e| e.to_string())? {
            Some(v) => v.value().to_vec(),
            None => return Ok(false),
        }
    };
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut tables = ID_TABLES
            .iter()
            .map(|t| tx.open_table(table(*t)).map(|o| (*t, o)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut members = tx.open_table(MEMBERS).map_err(|e| e.to_string())?;
        if tables
            .iter()
            .any(|(_, t)| t.first().ok().flatten().is_some())
            || members.first().ok().flatten().is_some()
        {
            return Err("both the single-blob state and records are present".into());
        }
        migrate_v1::<V1_DEVICES, V1_GROUPS>(&blob, &mut |kind, key, value| {
            insert(&mut tables, &mut members, kind, key, value)
        })
        .map_err(|e| format!("the single-blob state does not decode ({e:?})"))?;
    }
    tx.delete_table(STATE).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(true)
}

/// Writes row (`kind`, `key`) in the open tables of a write transaction.
fn insert(
    tables: &mut [(Table, redb::Table<'_, u32, &'static [u8]>)],
    members: &mut redb::Table<'_, u64, &'static [u8]>,
    kind: Table,
    key: u64,
    value: &[u8],
) -> Result<(), StoreError> {
    if kind == Table::Memberships {
        members.insert(key, value).map_err(|_| StoreError::Io)?;
        return Ok(());
    }
    let key = u32::try_from(key).map_err(|_| StoreError::Corrupt)?;
    let (_, t) = tables
        .iter_mut()
        .find(|(k, _)| *k == kind)
        .ok_or(StoreError::Io)?;
    t.insert(key, value).map_err(|_| StoreError::Io)?;
    Ok(())
}

/// Converts a state of format 2 (memberships inside the device rows) to format 3 in one write
/// transaction; refuses a newer format. Returns whether there was one to convert.
fn migrate_v2(db: &Database) -> Result<bool, String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    let format = {
        let t = tx
            .open_table(table(Table::Counters))
            .map_err(|e| e.to_string())?;
        let row = t.get(0).map_err(|e| e.to_string())?;
        match row {
            None => None,
            Some(v) => Some(state_format(v.value()).ok_or("the counters row does not decode")?),
        }
    };
    match format {
        // Never written, or already of this format.
        None | Some(FORMAT) => {
            tx.abort().map_err(|e| e.to_string())?;
            return Ok(false);
        }
        Some(V2_FORMAT) => {}
        Some(f) if f > FORMAT => {
            return Err(format!(
                "state format {f} is newer than this key server's ({FORMAT}): upgrade the key server"
            ));
        }
        Some(f) => return Err(format!("unknown state format {f}")),
    }
    {
        let mut old: Vec<(Table, u64, Vec<u8>)> = Vec::new();
        for kind in [Table::Counters, Table::Devices] {
            let t = tx.open_table(table(kind)).map_err(|e| e.to_string())?;
            for row in t.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                old.push((kind, u64::from(k.value()), v.value().to_vec()));
            }
        }
        let mut tables = ID_TABLES
            .iter()
            .map(|t| tx.open_table(table(*t)).map(|o| (*t, o)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut members = tx.open_table(MEMBERS).map_err(|e| e.to_string())?;
        for (kind, key, mut value) in old {
            let r = migrate_v2_row(kind, key, &value, &mut |k, key, v| {
                insert(&mut tables, &mut members, k, key, v)
            });
            zeroize::Zeroize::zeroize(&mut value);
            r.map_err(|e| format!("a row of format 2 does not decode ({e:?})"))?;
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    Ok(true)
}

impl ServerStore for RedbServerStore {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        let tx = self.db.begin_read().map_err(|_| StoreError::Io)?;
        let commissioned = match tx.open_table(COMMISSIONED) {
            Ok(t) => t.get("at").map_err(|_| StoreError::Corrupt)?.is_some(),
            Err(redb::TableError::TableDoesNotExist(_)) => false,
            Err(_) => return Err(StoreError::Io),
        };
        let mut written = false;
        for kind in ID_TABLES {
            let t = match tx.open_table(table(kind)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(_) => return Err(StoreError::Io),
            };
            for row in t.iter().map_err(|_| StoreError::Io)? {
                let (k, v) = row.map_err(|_| StoreError::Corrupt)?;
                written = true;
                visit(kind, u64::from(k.value()), v.value())?;
            }
        }
        match tx.open_table(MEMBERS) {
            Ok(t) => {
                for row in t.iter().map_err(|_| StoreError::Io)? {
                    let (k, v) = row.map_err(|_| StoreError::Corrupt)?;
                    written = true;
                    visit(Table::Memberships, k.value(), v.value())?;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(_) => return Err(StoreError::Io),
        }
        match (written, commissioned) {
            (true, _) => Ok(true),
            // Never written: fine only for a database made by `create_new`.
            (false, true) => Ok(false),
            (false, false) => Err(StoreError::Missing),
        }
    }

    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|_| StoreError::Io)?;
        if self.deferred.get() {
            tx.set_durability(redb::Durability::None)
                .map_err(|_| StoreError::Io)?;
        }
        for kind in ID_TABLES {
            if !rows.iter().any(|r| r.table == kind) {
                continue;
            }
            let mut t = tx.open_table(table(kind)).map_err(|_| StoreError::Io)?;
            for r in rows.iter().filter(|r| r.table == kind) {
                let key = u32::try_from(r.key).map_err(|_| StoreError::Corrupt)?;
                match r.value {
                    Some(v) => {
                        t.insert(key, v).map_err(|_| StoreError::Io)?;
                    }
                    None => {
                        t.remove(key).map_err(|_| StoreError::Io)?;
                    }
                }
            }
        }
        if rows.iter().any(|r| r.table == Table::Memberships) {
            let mut t = tx.open_table(MEMBERS).map_err(|_| StoreError::Io)?;
            for r in rows.iter().filter(|r| r.table == Table::Memberships) {
                match r.value {
                    Some(v) => {
                        t.insert(r.key, v).map_err(|_| StoreError::Io)?;
                    }
                    None => {
                        t.remove(r.key).map_err(|_| StoreError::Io)?;
                    }
                }
            }
        }
        tx.commit().map_err(|_| StoreError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_state_is_never_an_empty_state() {
        let dir = std::env::temp_dir().join(format!("dtls-group-redb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ks.redb");
        assert!(
            RedbServerStore::open(&p).is_err(),
            "missing file must not open"
        );
        let mut s = RedbServerStore::create_new(&p).unwrap();
        let mut rows = Vec::new();
        let mut all = |s: &mut RedbServerStore| {
            rows.clear();
            let r = s.load(&mut |t, k, v| {
                rows.push((t, k, v.to_vec()));
                Ok(())
            });
            (r, rows.clone())
        };
        assert_eq!(all(&mut s), (Ok(false), vec![]));
        let row = |table, key, value| Row { table, key, value };
        // A counters row of this build's format (postcard `Meta`: format 3, reserved 1): `open`
        // reads the format from it.
        s.commit(&[
            row(Table::Counters, 0, Some(&[FORMAT, 1][..])),
            row(Table::Groups, 7, Some(b"g7")),
            row(Table::Devices, 1, Some(b"d1")),
        ])
        .unwrap();
        s.commit(&[
            row(Table::Devices, 1, None),
            row(Table::Devices, 2, Some(b"d2")),
        ])
        .unwrap();
        drop(s);
        assert!(RedbServerStore::create_new(&p).is_err(), "must not reset");
        let mut s = RedbServerStore::open(&p).unwrap();
        assert_eq!(
            all(&mut s),
            (
                Ok(true),
                vec![
                    (Table::Counters, 0, vec![FORMAT, 1]),
                    (Table::Groups, 7, b"g7".to_vec()),
                    (Table::Devices, 2, b"d2".to_vec())
                ]
            )
        );
        drop(s);
        // A database that is not ours (no commissioning mark) is not an empty state.
        let other = dir.join("other.redb");
        drop(Database::create(&other).unwrap());
        let mut s = RedbServerStore::open(&other).unwrap();
        assert_eq!(all(&mut s).0, Err(StoreError::Missing));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_file_is_open_once() {
        let dir = std::env::temp_dir().join(format!("dtls-group-redb-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ks.redb");
        let s = RedbServerStore::create_new(&p).unwrap();
        let e = RedbServerStore::open(&p).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(s);
        assert!(RedbServerStore::open(&p).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
