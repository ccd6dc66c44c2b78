//! The key server daemon: the core's [`KeyServer`] state machine over UDP unicast, with its
//! records in a redb database (one table per record kind, [`StdTables`] in memory: no
//! capacity; crash-safe: every state change is a committed transaction
//! before any message that depends on it leaves), configured from a TOML file.
//!
//! With the `postgres` feature the records can live in a PostgreSQL database shared by several
//! key servers, of which the one holding the lease is active ([`Role`]); every write of the
//! active server is conditional on its fencing token ([`PgServerStore`]).

mod config;
mod daemon;
mod ha;
mod high_water;
mod mem_store;
#[cfg(feature = "postgres")]
mod pg_lease;
#[cfg(feature = "postgres")]
mod pg_schema;
#[cfg(feature = "postgres")]
mod pg_store;
mod refusal;
mod sealing;
mod state_store;
mod store;
mod tables;

pub use config::{
    DEFAULT_JOIN_UPDATE_DELAY_MS, DeviceConfig, GroupConfigFile, KeyServerConfig, PgSettings,
    StoreConfig, StoreKind,
};
pub use daemon::{DaemonServer, KeyServerDaemon, ServerType, TXN_GROUPS};
pub use ha::Role;
pub use high_water::{Behind, HighWater};
pub use mem_store::MemRowStore;
#[cfg(feature = "postgres")]
pub use pg_lease::{LeaseError, LeaseView, PgLease};
#[cfg(feature = "postgres")]
pub use pg_schema::SCHEMA_VERSION;
#[cfg(feature = "postgres")]
pub use pg_store::PgServerStore;
pub use sealing::{Batch, Outbound, SealingConfig, poll_batch};
pub use state_store::StateStore;
pub use store::RedbServerStore;
pub use tables::StdTables;

pub use group_core::keydist::KeyServer;
