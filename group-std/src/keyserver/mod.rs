//! The key server daemon: the core's [`KeyServer`] state machine over UDP unicast, with its
//! state in a redb database (crash-safe: every state change is a committed transaction
//! before any message that depends on it leaves), configured from a TOML file.

mod config;
mod daemon;
mod store;

pub use config::{DeviceConfig, GroupConfigFile, KeyServerConfig};
pub use daemon::{KeyServerDaemon, ServerType};
pub use store::RedbServerStore;

pub use group_core::keydist::KeyServer;
