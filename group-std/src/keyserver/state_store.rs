//! The daemon's store: redb (one key server, the default) or PostgreSQL (several key servers,
//! one active).

use group_core::keydist::{Row, RowVisitor, ServerStore};
use group_core::sequence::StoreError;

#[cfg(feature = "postgres")]
use super::PgServerStore;
use super::RedbServerStore;

/// Where the daemon's key server keeps its records.
#[derive(Debug)]
pub enum StateStore {
    /// A local redb file.
    Redb(RedbServerStore),
    /// A shared PostgreSQL database, written under a fencing token.
    #[cfg(feature = "postgres")]
    Postgres(Box<PgServerStore>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            StateStore::Redb($s) => $e,
            #[cfg(feature = "postgres")]
            StateStore::Postgres($s) => $e,
        }
    };
}

impl StateStore {
    /// Commits are atomic but not durable one by one until [`make_durable`](Self::make_durable).
    pub fn defer_durability(&self) -> std::io::Result<()> {
        match self {
            StateStore::Redb(s) => {
                s.defer_durability();
                Ok(())
            }
            #[cfg(feature = "postgres")]
            StateStore::Postgres(s) => s.defer_durability(),
        }
    }

    /// Makes every commit so far durable.
    pub fn make_durable(&self) -> std::io::Result<()> {
        each!(self, s => s.make_durable())
    }

    /// Records a device's last authenticated address.
    pub fn save_address(&self, device: u32, addr: std::net::SocketAddr) -> std::io::Result<()> {
        each!(self, s => s.save_address(device, addr))
    }

    /// The stored device addresses.
    pub fn addresses(&self) -> std::io::Result<Vec<(u32, std::net::SocketAddr)>> {
        each!(self, s => s.addresses())
    }

    /// Records that an operator revoked `device`.
    pub fn add_revoked(&self, device: u32) -> std::io::Result<()> {
        each!(self, s => s.add_revoked(device))
    }

    /// Forgets a revocation mark.
    pub fn remove_revoked(&self, device: u32) -> std::io::Result<()> {
        each!(self, s => s.remove_revoked(device))
    }

    /// Whether an operator revoked `device`.
    pub fn is_revoked(&self, device: u32) -> std::io::Result<bool> {
        each!(self, s => s.is_revoked(device))
    }

    /// Whether a write was refused because another key server holds the lease now.
    pub fn fenced(&self) -> bool {
        match self {
            StateStore::Redb(_) => false,
            #[cfg(feature = "postgres")]
            StateStore::Postgres(s) => s.fenced(),
        }
    }

    /// Whether the store's connection is gone (PostgreSQL): the server must step down.
    pub fn broken(&self) -> bool {
        match self {
            StateStore::Redb(_) => false,
            #[cfg(feature = "postgres")]
            StateStore::Postgres(s) => s.broken(),
        }
    }

    /// Writes refused by the fence so far.
    pub fn refused(&self) -> u64 {
        match self {
            StateStore::Redb(_) => 0,
            #[cfg(feature = "postgres")]
            StateStore::Postgres(s) => s.refused(),
        }
    }
}

impl ServerStore for StateStore {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        each!(self, s => s.load(visit))
    }

    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
        each!(self, s => s.commit(rows))
    }
}
