//! [`ServerStore`] in a redb database: one table, one row holding the key server's state.
//! A save is one write transaction committed with redb's default (immediate) durability, so a
//! crash at any point leaves the previous or the new state, never a mix.

use std::path::Path;

use group_core::keydist::ServerStore;
use group_core::sequence::StoreError;
use redb::{Database, ReadableDatabase, TableDefinition};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("keyserver_state");
const KEY: &str = "state";
/// Written once when the state is created: an empty state is only legitimate with it.
const COMMISSIONED: TableDefinition<&str, u64> = TableDefinition::new("commissioned");
/// Last authenticated UDP address of each device, so a restarted server can reach members.
const ADDRESSES: TableDefinition<u32, &str> = TableDefinition::new("device_addresses");
/// Devices revoked by an operator: never admitted again from the config file.
const REVOKED: TableDefinition<u32, u64> = TableDefinition::new("revoked_devices");

/// The key server's state in a redb file.
pub struct RedbServerStore {
    db: Database,
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
        Ok(Self { db })
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
        Ok(Self { db })
    }
}

impl RedbServerStore {
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

impl ServerStore for RedbServerStore {
    fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError> {
        let tx = self.db.begin_read().map_err(|_| StoreError::Io)?;
        let commissioned = match tx.open_table(COMMISSIONED) {
            Ok(t) => t.get("at").map_err(|_| StoreError::Corrupt)?.is_some(),
            Err(redb::TableError::TableDoesNotExist(_)) => false,
            Err(_) => return Err(StoreError::Io),
        };
        let table = match tx.open_table(STATE) {
            Ok(t) => t,
            // Never written: fine only for a database made by `create_new`.
            Err(redb::TableError::TableDoesNotExist(_)) if commissioned => return Ok(None),
            Err(redb::TableError::TableDoesNotExist(_)) => return Err(StoreError::Missing),
            Err(_) => return Err(StoreError::Io),
        };
        let Some(v) = table.get(KEY).map_err(|_| StoreError::Corrupt)? else {
            return Err(StoreError::Missing);
        };
        let bytes = v.value();
        let dst = buf.get_mut(..bytes.len()).ok_or(StoreError::Corrupt)?;
        dst.copy_from_slice(bytes);
        Ok(Some(bytes.len()))
    }

    fn save(&mut self, state: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|_| StoreError::Io)?;
        {
            let mut table = tx.open_table(STATE).map_err(|_| StoreError::Io)?;
            table.insert(KEY, state).map_err(|_| StoreError::Io)?;
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
        let mut buf = [0u8; 64];
        assert_eq!(s.load(&mut buf), Ok(None));
        s.save(b"state-1").unwrap();
        s.save(b"state-2").unwrap();
        drop(s);
        assert!(RedbServerStore::create_new(&p).is_err(), "must not reset");
        let mut s = RedbServerStore::open(&p).unwrap();
        assert_eq!(s.load(&mut buf), Ok(Some(7)));
        assert_eq!(&buf[..7], b"state-2");
        drop(s);
        // A database that is not ours (no commissioning mark) is not an empty state.
        let other = dir.join("other.redb");
        drop(Database::create(&other).unwrap());
        let mut s = RedbServerStore::open(&other).unwrap();
        assert_eq!(s.load(&mut buf), Err(StoreError::Missing));
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
