//! The key server daemon: the core's [`KeyServer`] state machine over UDP unicast, with its
//! records in a redb database (one table per record kind, [`StdTables`] in memory: no
//! capacity; crash-safe: every state change is a committed transaction
//! before any message that depends on it leaves), configured from a TOML file.

mod config;
mod daemon;
mod mem_store;
mod sealing;
mod store;
mod tables;

pub use config::{DeviceConfig, GroupConfigFile, KeyServerConfig};
pub use daemon::{DEVICE_GROUPS, KeyServerDaemon, ServerType};
pub use mem_store::MemRowStore;
pub use sealing::{Batch, Outbound, SealingConfig, poll_batch};
pub use store::RedbServerStore;
pub use tables::StdTables;

pub use group_core::keydist::KeyServer;
