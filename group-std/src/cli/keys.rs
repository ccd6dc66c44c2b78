//! `dtls-group keys native|wolfssl`: an epoch's write key and IV from key-server material.
//!
//! Both print `{"key":"HEX","iv":"HEX"}` on stdout: key material, by request. Errors name the
//! argument and the expected length, never the material.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use group_core::schedule::{EpochSecret, native_keys, wolfssl_keys};
use group_core::suite::{RecordKeys, Suite};

use super::EXIT_OK;
use super::common::{
    BadInput, Stdout, decode_hex_array, key_error, nonzero_epoch, parse_suite, read_secret,
};

/// `dtls-group keys ...`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Native schedule: HKDF-SHA256 from a 32-byte epoch secret.
    Native(NativeArgs),
    /// wolfSSL-compatible schedule: TLS 1.2 PRF from a pre-master secret and two randoms.
    Wolfssl(WolfsslArgs),
}

/// Arguments of `keys native`.
#[derive(Args)]
pub struct NativeArgs {
    /// Group ID (32 bits, decimal).
    #[arg(long, value_name = "N")]
    pub group_id: u32,
    /// Epoch (1 to 65535).
    #[arg(long, value_name = "E")]
    pub epoch: u16,
    /// Cipher suite: ccm8, ccm, gcm or chacha20.
    #[arg(long, value_parser = parse_suite)]
    pub suite: Suite,
    /// File holding the epoch secret as hex (32 bytes); mode 0600 or stricter. `-` reads it
    /// from standard input.
    #[arg(long, value_name = "FILE", required_unless_present = "secret")]
    pub secret_file: Option<PathBuf>,
    /// INSECURE: the epoch secret as hex on the command line, readable by every local user in
    /// /proc/PID/cmdline (a warning is printed). Use --secret-file.
    #[arg(long, value_name = "HEX", conflicts_with = "secret_file")]
    pub secret: Option<String>,
}

/// Arguments of `keys wolfssl`.
#[derive(Args)]
pub struct WolfsslArgs {
    /// Cipher suite: ccm8, ccm, gcm or chacha20 (wolfSSL's 0xC0AE, 0xC0AC, 0xC02B and 0xCCA9
    /// have the same record protection).
    #[arg(long, value_parser = parse_suite)]
    pub suite: Suite,
    /// File holding the pre-master secret as hex (as given to wolfSSL_set_secret); mode 0600
    /// or stricter. `-` reads it from standard input.
    #[arg(long, value_name = "FILE", required_unless_present = "pms")]
    pub pms_file: Option<PathBuf>,
    /// INSECURE: the pre-master secret as hex on the command line, readable by every local
    /// user in /proc/PID/cmdline (a warning is printed). Use --pms-file.
    #[arg(long, value_name = "HEX", conflicts_with = "pms_file")]
    pub pms: Option<String>,
    /// Client random, hex (32 bytes).
    #[arg(long, value_name = "HEX")]
    pub client_random: String,
    /// Server random, hex (32 bytes).
    #[arg(long, value_name = "HEX")]
    pub server_random: String,
}

/// Runs a `keys` subcommand.
pub fn run(cmd: &KeysCommand, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let keys = match cmd {
        KeysCommand::Native(a) => native(a, out)?,
        KeysCommand::Wolfssl(a) => wolfssl(a, out)?,
    };
    out.line(format!(
        "{{\"key\":\"{}\",\"iv\":\"{}\"}}",
        hex::encode(keys.key()),
        hex::encode(keys.iv())
    ));
    Ok(EXIT_OK)
}

/// `keys native`: HKDF-SHA256 schedule (wire-format.md §9).
fn native(a: &NativeArgs, out: &mut dyn Stdout) -> Result<RecordKeys, BadInput> {
    let epoch = nonzero_epoch(a.epoch)?;
    let bytes = read_secret(
        "--secret",
        a.secret.as_deref(),
        a.secret_file.as_deref(),
        out,
    )?;
    let secret = EpochSecret(
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| BadInput::new("--secret: wrong length (expected 32 bytes)"))?,
    );
    native_keys(a.group_id, epoch, a.suite, &secret).map_err(|e| key_error(e, a.suite))
}

/// `keys wolfssl`: the TLS 1.2 PRF schedule of `wolfSSL_set_secret`.
fn wolfssl(a: &WolfsslArgs, out: &mut dyn Stdout) -> Result<RecordKeys, BadInput> {
    let pms = read_secret("--pms", a.pms.as_deref(), a.pms_file.as_deref(), out)?;
    if pms.is_empty() {
        return Err(BadInput::new("--pms: empty"));
    }
    let client_random = decode_hex_array::<32>("--client-random", &a.client_random)?;
    let server_random = decode_hex_array::<32>("--server-random", &a.server_random)?;
    wolfssl_keys(a.suite, &pms, &client_random, &server_random)
        .map(|d| d.keys)
        .map_err(|e| key_error(e, a.suite))
}
