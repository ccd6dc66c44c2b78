//! The key server's TOML configuration.
//!
//! ```toml
//! listen = "127.0.0.1:47000"        # UDP unicast address for key distribution
//! state = "keyserver.redb"           # durable state (epochs, sender IDs, counters, secrets)
//! server_key = "server.key"          # from `dtls-group keygen --out server`
//! join_update_delay_ms = 250         # join storms: members' list updates wait up to this
//!
//! [store]                          # optional; without it: redb in `state`
//! kind = "redb"                      # or "postgres": several key servers, one active
//!
//! [[group]]
//! id = 1
//! suite = "ccm"                      # ccm8 | ccm | gcm | chacha20
//! multicast = "239.255.0.1:40000"    # where members meet (for members' configs; informative)
//! admission = "trust-first"          # or "strict"
//! signatures = false                 # signed records (source authentication)
//! grace_ms = 5000
//! activation_delay_ms = 1000
//! rotation_interval_ms = 0           # 0: no scheduled rotation
//! rekey_on_join = true               # backward secrecy for joiners
//!
//! [[device]]
//! id = 1
//! name = "switch-a"
//! public_key = "switch-a.pub"        # a file from keygen, or the hex itself (66 or 130 digits)
//! role = "sender"                    # or "listener"
//! groups = [1]
//! ```
//!
//! With PostgreSQL (feature `postgres`, on by default), `state` names this server's local
//! high-water file (the largest lease token and generation it saw: an older database, restored
//! from a snapshot, is refused), and the state itself lives in the database:
//!
//! ```toml
//! [store]
//! kind = "postgres"
//! conninfo = "host=db.example port=5432 user=keyserver dbname=keyserver"
//! server_name = "ks-a"               # unique per key server
//! lease_ms = 3000                    # default 3000
//! renew_ms = 1000                    # default lease_ms / 3
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use group_core::keydist::{GroupSpec, Role, WireAdmission};
use group_core::policy;
use group_core::suite::Suite;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// redb state file (relative paths are relative to the config file).
    pub state: PathBuf,
    /// Server private key file.
    pub server_key: PathBuf,
    /// Groups.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfigFile>,
    /// Admitted devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// Where the state lives (default: redb in `state`).
    #[serde(default)]
    pub store: StoreConfig,
    /// How long the bundles telling a group's members about a new sender may wait, so that
    /// the joins of a storm share them (`KeyServer::set_join_update_delay_ms`; default
    /// [`DEFAULT_JOIN_UPDATE_DELAY_MS`], 0: at once).
    #[serde(default = "default_join_update_delay")]
    pub join_update_delay_ms: u64,
}

/// The default `join_update_delay_ms`: well under the default activation delay (2 s), so a
/// rekey-on-join epoch still reaches every member before it is used.
pub const DEFAULT_JOIN_UPDATE_DELAY_MS: u64 = 250;

fn default_join_update_delay() -> u64 {
    DEFAULT_JOIN_UPDATE_DELAY_MS
}

/// The `[store]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `redb` (default) or `postgres`.
    #[serde(default)]
    pub kind: StoreKind,
    /// PostgreSQL connection string (libpq keywords or a URL).
    pub conninfo: Option<Conninfo>,
    /// This server's name in the lease (unique among the key servers of one database).
    pub server_name: Option<String>,
    /// Lease duration in milliseconds (default 3000).
    pub lease_ms: Option<u64>,
    /// Renewal interval in milliseconds (default a third of the lease).
    pub renew_ms: Option<u64>,
}

/// A PostgreSQL connection string. It may hold the database password (`password=...` or
/// `postgresql://user:PASSWORD@host`), so its `Debug` shows none of it: a configuration printed
/// with `{:?}`, in a log or an error, does not leak the password.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Conninfo(String);

impl Conninfo {
    /// The connection string itself, for the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Conninfo {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::fmt::Debug for Conninfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conninfo(<redacted>)")
    }
}

/// Which store.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A local redb file (one key server).
    #[default]
    Redb,
    /// A shared PostgreSQL database (several key servers, one active).
    Postgres,
}

/// The checked PostgreSQL settings of a `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// Connection string.
    pub conninfo: Conninfo,
    /// This server's name in the lease.
    pub server_name: String,
    /// Lease duration.
    pub lease: std::time::Duration,
    /// Renewal interval.
    pub renew: std::time::Duration,
}

impl StoreConfig {
    /// The PostgreSQL settings, checked; `None` for redb.
    pub fn postgres(&self) -> Result<Option<PgSettings>, String> {
        if self.kind == StoreKind::Redb {
            if self.conninfo.is_some() || self.server_name.is_some() {
                return Err("[store]: conninfo and server_name need kind = \"postgres\"".into());
            }
            return Ok(None);
        }
        if !cfg!(feature = "postgres") {
            return Err(
                "[store] kind = \"postgres\": this dtls-group was built without the \
                 `postgres` feature"
                    .into(),
            );
        }
        let conninfo = self
            .conninfo
            .clone()
            .ok_or("[store] kind = \"postgres\" needs conninfo")?;
        let server_name = self
            .server_name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or("[store] kind = \"postgres\" needs server_name (unique per key server)")?;
        let lease_ms = self.lease_ms.unwrap_or(3000);
        let renew_ms = self.renew_ms.unwrap_or(lease_ms / 3);
        if lease_ms < 100 || renew_ms == 0 || renew_ms.saturating_mul(2) > lease_ms {
            return Err(format!(
                "[store]: lease_ms {lease_ms} and renew_ms {renew_ms}: the lease must be at \
                 least 100 ms and renewed at least twice per lease"
            ));
        }
        Ok(Some(PgSettings {
            conninfo,
            server_name,
            lease: std::time::Duration::from_millis(lease_ms),
            renew: std::time::Duration::from_millis(renew_ms),
        }))
    }
}

fn default_grace() -> u32 {
    policy::DEFAULT_GRACE_MS
}
fn default_activation() -> u32 {
    policy::DEFAULT_ACTIVATION_DELAY_MS
}
fn default_rekey_on_join() -> bool {
    policy::DEFAULT_REKEY_ON_JOIN
}
fn default_admission() -> String {
    "trust-first".into()
}

/// One group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfigFile {
    /// Group ID.
    pub id: u32,
    /// Suite name.
    pub suite: String,
    /// Multicast address (informative for the server).
    pub multicast: Option<SocketAddr>,
    /// `trust-first` or `strict`.
    #[serde(default = "default_admission")]
    pub admission: String,
    /// Signed records.
    #[serde(default)]
    pub signatures: bool,
    /// Grace period of the previous epoch.
    #[serde(default = "default_grace")]
    pub grace_ms: u32,
    /// Delay between staging and activating a new epoch.
    #[serde(default = "default_activation")]
    pub activation_delay_ms: u32,
    /// Scheduled rotation (0 = none).
    #[serde(default)]
    pub rotation_interval_ms: u64,
    /// New epoch when a member joins.
    #[serde(default = "default_rekey_on_join")]
    pub rekey_on_join: bool,
}

/// One admitted device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device ID (unique).
    pub id: u32,
    /// A name for logs.
    #[serde(default)]
    pub name: String,
    /// Public key: a file path or the hex.
    pub public_key: String,
    /// `sender` or `listener`.
    pub role: String,
    /// Groups it may join.
    pub groups: Vec<u32>,
}

impl KeyServerConfig {
    /// Reads and checks a config file; errors are one line naming the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of the config file at `path` (named in errors; relative
    /// paths in the file are taken relative to its directory). Reads no file: key files are
    /// read when the daemon starts. [`load`](Self::load) is this after reading the file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| {
            format!(
                "config {}: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.state, &mut cfg.server_key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        // A public key is its hex (33 or 65 bytes) or a file name relative to this file:
        // never "a file if it exists, else hex", so a mistyped name is "not found: PATH".
        for d in cfg.devices.iter_mut() {
            if !crate::keyfile::is_public_hex(&d.public_key)
                && Path::new(&d.public_key).is_relative()
            {
                d.public_key = base.join(&d.public_key).to_string_lossy().into_owned();
            }
        }
        cfg.store.postgres()?;
        for g in &cfg.groups {
            g.spec()?;
        }
        for d in &cfg.devices {
            d.role()?;
            for gid in &d.groups {
                if !cfg.groups.iter().any(|g| g.id == *gid) {
                    return Err(format!("device {}: unknown group {gid}", d.id));
                }
            }
        }
        let mut ids: Vec<u32> = cfg.devices.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("config: two devices with the same id".into());
        }
        Ok(cfg)
    }
}

impl GroupConfigFile {
    /// The core's group spec.
    pub fn spec(&self) -> Result<GroupSpec, String> {
        let suite = Suite::from_name(&self.suite)
            .filter(|s| s.is_enabled())
            .ok_or_else(|| {
                format!(
                    "group {}: unknown or disabled suite {:?}",
                    self.id, self.suite
                )
            })?;
        let mut spec = GroupSpec::new(self.id, suite)
            .with_grace_ms(self.grace_ms)
            .with_activation_delay_ms(self.activation_delay_ms)
            .with_rotation_interval_ms(self.rotation_interval_ms)
            .with_rekey_on_join(self.rekey_on_join);
        match self.admission.as_str() {
            "trust-first" => {}
            "strict" => spec = spec.with_strict_admission(),
            other => {
                return Err(format!(
                    "group {}: admission {other:?} (trust-first|strict)",
                    self.id
                ));
            }
        }
        if self.signatures {
            spec = spec.with_signatures();
        }
        debug_assert!(matches!(
            spec.policy.admission,
            WireAdmission::TrustFirst | WireAdmission::Strict
        ));
        Ok(spec)
    }
}

impl DeviceConfig {
    /// The role.
    pub fn role(&self) -> Result<Role, String> {
        match self.role.as_str() {
            "sender" => Ok(Role::Sender),
            "listener" => Ok(Role::Listener),
            other => Err(format!(
                "device {}: role {other:?} (sender|listener)",
                self.id
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(store: &str) -> Result<KeyServerConfig, String> {
        KeyServerConfig::parse(
            &format!("listen = \"127.0.0.1:1\"\nstate = \"s\"\nserver_key = \"k\"\n{store}"),
            Path::new("/etc/ks.toml"),
        )
    }

    #[test]
    fn the_join_update_delay_defaults_to_250_ms() {
        assert_eq!(parse("").unwrap().join_update_delay_ms, 250);
        assert_eq!(
            parse("join_update_delay_ms = 0")
                .unwrap()
                .join_update_delay_ms,
            0
        );
        assert!(parse("join_update_delay_ms = -1").is_err());
    }

    #[test]
    fn the_store_section_is_checked() {
        let redb = parse("").unwrap();
        assert_eq!(redb.store.postgres(), Ok(None));
        let pg =
            parse("[store]\nkind = \"postgres\"\nconninfo = \"host=db\"\nserver_name = \"ks-a\"\n")
                .unwrap();
        let s = pg.store.postgres().unwrap().unwrap();
        assert_eq!(
            (
                s.lease.as_millis(),
                s.renew.as_millis(),
                s.server_name.as_str()
            ),
            (3000, 1000, "ks-a")
        );
        for (bad, why) in [
            (
                "[store]\nkind = \"postgres\"\nserver_name = \"a\"\n",
                "needs conninfo",
            ),
            (
                "[store]\nkind = \"postgres\"\nconninfo = \"x\"\n",
                "needs server_name",
            ),
            (
                "[store]\nkind = \"postgres\"\nconninfo = \"x\"\nserver_name = \"a\"\nlease_ms = 1000\nrenew_ms = 600\n",
                "renewed at least twice",
            ),
            ("[store]\nconninfo = \"x\"\n", "need kind = \"postgres\""),
            ("[store]\nkind = \"mysql\"\n", "unknown variant"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_database_password_never_shows_in_debug() {
        for conninfo in [
            "host=db user=ks password=hunter2-secret dbname=ks",
            "postgresql://ks:hunter2-secret@db/ks",
        ] {
            let cfg = parse(&format!(
                "[store]\nkind = \"postgres\"\nconninfo = \"{conninfo}\"\nserver_name = \"a\"\n"
            ))
            .unwrap();
            let settings = cfg.store.postgres().unwrap().unwrap();
            assert_eq!(settings.conninfo.expose(), conninfo);
            for shown in [format!("{cfg:?}"), format!("{settings:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
                assert!(shown.contains("Conninfo(<redacted>)"), "{shown}");
            }
        }
    }
}
