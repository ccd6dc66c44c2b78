//! [`ServerStore`] in memory, without a capacity: for benchmarks and simulations of large key
//! servers (it is not durable).

use std::collections::BTreeMap;

use group_core::keydist::{Row, RowVisitor, ServerStore, Table};
use group_core::sequence::StoreError;

/// Rows in a map; a commit applies all of its rows. Counts commits and rows written.
#[derive(Default, Debug, Clone)]
pub struct MemRowStore {
    rows: BTreeMap<(Table, u64), Vec<u8>>,
    commits: u64,
    rows_written: u64,
    bytes_written: u64,
}

impl MemRowStore {
    /// A commissioned, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Rows written or deleted so far.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// Value bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }
}

impl ServerStore for MemRowStore {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        for ((t, k), v) in &self.rows {
            visit(*t, *k, v)?;
        }
        Ok(self.commits > 0 || !self.rows.is_empty())
    }

    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
        for r in rows {
            self.rows_written += 1;
            match r.value {
                Some(v) => {
                    self.bytes_written += v.len() as u64;
                    self.rows.insert((r.table, r.key), v.to_vec());
                }
                None => {
                    self.rows.remove(&(r.table, r.key));
                }
            }
        }
        self.commits += 1;
        Ok(())
    }
}
