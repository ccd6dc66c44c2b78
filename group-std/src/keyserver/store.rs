//! [`ServerStore`] in a redb database: one table, one row holding the key server's state.
//! A save is one write transaction committed with redb's default (immediate) durability, so a
//! crash at any point leaves the previous or the new state, never a mix.

use std::path::Path;

use group_core::keydist::ServerStore;
use group_core::sequence::StoreError;
use redb::{Database, ReadableDatabase, TableDefinition};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("keyserver_state");
const KEY: &str = "state";

/// The key server's state in a redb file.
pub struct RedbServerStore {
    db: Database,
}

impl std::fmt::Debug for RedbServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbServerStore").finish_non_exhaustive()
    }
}

impl RedbServerStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, redb::DatabaseError> {
        Ok(Self {
            db: Database::create(path)?,
        })
    }
}

impl ServerStore for RedbServerStore {
    fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError> {
        let tx = self.db.begin_read().map_err(|_| StoreError::Io)?;
        let table = match tx.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(_) => return Err(StoreError::Io),
        };
        let Some(v) = table.get(KEY).map_err(|_| StoreError::Corrupt)? else {
            return Ok(None);
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
