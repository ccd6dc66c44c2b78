//! Command-line syntax of `dtls-group` (clap derive).
//!
//! Secret inputs (`--key`, `--iv`, `--secret`, `--pms`) are taken as plain strings and decoded
//! by [`super::run`], so that a malformed secret is never echoed back in an error message (clap
//! quotes the offending value when its own value parser fails). The argument structs have no
//! `Debug` implementation for the same reason.

use clap::{Args, ColorChoice, Parser, Subcommand};
use group_core::suite::Suite;

/// `dtls-group`: inspect, open and seal DTLS 1.2 group records, and derive group keys.
#[derive(Parser)]
#[command(
    name = "dtls-group",
    version,
    color = ColorChoice::Never,
    about = "Open and seal DTLS 1.2 group records, and derive group keys"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Open or seal records.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Derive an epoch's record key and IV.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `dtls-group record ...`
#[derive(Subcommand)]
pub enum RecordCommand {
    /// Open records as one stream into one receiver; prints one JSON object per record.
    Open(OpenArgs),
    /// Seal one record; prints the record as hex.
    Seal(SealArgs),
}

/// `dtls-group keys ...`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Native schedule: HKDF-SHA256 from a 32-byte epoch secret.
    Native(NativeArgs),
    /// wolfSSL-compatible schedule: TLS 1.2 PRF from a pre-master secret and two randoms.
    Wolfssl(WolfsslArgs),
}

/// Record protection shared by `record open` and `record seal`.
#[derive(Args)]
pub struct CipherArgs {
    /// Cipher suite: ccm8, ccm, gcm or chacha20.
    #[arg(long, value_parser = parse_suite)]
    pub suite: Suite,
    /// Write key, hex (16 bytes for AES suites, 32 for chacha20).
    #[arg(long, value_name = "HEX")]
    pub key: String,
    /// Write IV, hex (4 bytes for AES suites, 12 for chacha20).
    #[arg(long, value_name = "HEX")]
    pub iv: String,
}

/// Arguments of `record open`.
#[derive(Args)]
pub struct OpenArgs {
    /// Suite, key and IV.
    #[command(flatten)]
    pub cipher: CipherArgs,
    /// Accept any explicit nonce (compatibility profile, needed for wolfSSL's AES senders);
    /// by default a record whose explicit nonce is not epoch||sid||seq is refused.
    #[arg(long)]
    pub compat: bool,
    /// Install the key under this epoch (default: the epoch of the first record whose header
    /// parses and whose epoch is not 0).
    #[arg(long, value_name = "E")]
    pub epoch: Option<u16>,
    /// Treat each argument as a datagram that may hold several records (one output line per
    /// record) instead of exactly one record.
    #[arg(long)]
    pub datagram: bool,
    /// Records (or datagrams, with --datagram) as hex, in receive order.
    #[arg(value_name = "RECORD_HEX", required = true)]
    pub records: Vec<String>,
}

/// Arguments of `record seal`.
#[derive(Args)]
pub struct SealArgs {
    /// Suite, key and IV.
    #[command(flatten)]
    pub cipher: CipherArgs,
    /// Epoch (1 to 65535).
    #[arg(long, value_name = "E")]
    pub epoch: u16,
    /// Sender ID (0 to 255).
    #[arg(long, value_name = "S")]
    pub sender_id: u8,
    /// Sequence number (0 to 2^40 - 1). Never seal two records with the same epoch, sender ID
    /// and sequence number under one key: that reuses a nonce.
    #[arg(long, value_name = "Q")]
    pub seq: u64,
    /// Content type (default 23, application data).
    #[arg(long, value_name = "T", default_value_t = 23)]
    pub content_type: u8,
    /// Plaintext, hex (may be empty: "").
    #[arg(value_name = "PLAINTEXT_HEX")]
    pub plaintext: String,
}

/// Arguments of `keys native`.
#[derive(Args)]
pub struct NativeArgs {
    /// Group ID (32 bits).
    #[arg(long, value_name = "N")]
    pub group_id: u32,
    /// Epoch (1 to 65535).
    #[arg(long, value_name = "E")]
    pub epoch: u16,
    /// Cipher suite: ccm8, ccm, gcm or chacha20.
    #[arg(long, value_parser = parse_suite)]
    pub suite: Suite,
    /// The epoch secret, hex (32 bytes).
    #[arg(long, value_name = "HEX")]
    pub secret: String,
}

/// Arguments of `keys wolfssl`.
#[derive(Args)]
pub struct WolfsslArgs {
    /// Cipher suite: ccm8, ccm, gcm or chacha20 (wolfSSL's 0xC0AE, 0xC0AC, 0xC02B and 0xCCA9
    /// have the same record protection).
    #[arg(long, value_parser = parse_suite)]
    pub suite: Suite,
    /// Pre-master secret, hex (as given to wolfSSL_set_secret).
    #[arg(long, value_name = "HEX")]
    pub pms: String,
    /// Client random, hex (32 bytes).
    #[arg(long, value_name = "HEX")]
    pub client_random: String,
    /// Server random, hex (32 bytes).
    #[arg(long, value_name = "HEX")]
    pub server_random: String,
}

/// Parses a suite name as [`Suite::from_name`] knows it; refuses suites not compiled in.
fn parse_suite(name: &str) -> Result<Suite, String> {
    let suite = Suite::from_name(name)
        .ok_or_else(|| "unknown suite (expected ccm8, ccm, gcm or chacha20)".to_owned())?;
    if suite.is_enabled() {
        Ok(suite)
    } else {
        Err("suite not enabled in this build (enable the chacha20 feature)".to_owned())
    }
}
