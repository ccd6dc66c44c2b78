//! The `dtls-group` command-line tool as a library: [`run`] parses the arguments, does the work
//! and returns an [`Outcome`] (exit code and output lines), so that it can be tested in process;
//! `src/bin/dtls-group.rs` only prints the outcome.
//!
//! ```text
//! dtls-group record open --suite S --key HEX --iv HEX [--compat] [--epoch E] [--datagram] RECORD_HEX...
//! dtls-group record seal --suite S --key HEX --iv HEX --epoch E --sender-id S --seq Q [--content-type T] PLAINTEXT_HEX
//! dtls-group keys native --group-id N --epoch E --suite S --secret HEX
//! dtls-group keys wolfssl --suite S --pms HEX --client-random HEX --server-random HEX
//! ```
//!
//! Exit codes: 0 success (for `record open`: every record accepted), 1 some record dropped,
//! 2 bad input (one line on stderr). Nothing here panics on input, and no secret is ever
//! written to stderr. See `docs/cli.md` for examples.
//!
//! ```
//! let out = group_std::cli::run([
//!     "dtls-group", "keys", "native", "--group-id", "7", "--epoch", "1", "--suite", "ccm8",
//!     "--secret", "4242424242424242424242424242424242424242424242424242424242424242",
//! ]);
//! assert_eq!(out.code, 0);
//! assert!(out.stdout[0].starts_with("{\"key\":\""));
//! ```
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod args;

use std::ffi::OsString;
use std::fmt;

use clap::Parser;
use group_core::group::{Group, GroupConfig};
use group_core::record::{self, NonceProfile, OpenError};
use group_core::schedule::{EpochSecret, native_keys, wolfssl_keys};
use group_core::suite::{EpochCipher, KeyError, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{self, ContentType, Epoch, MAX_SEQ, RecordHeader, SenderId};

use args::{Cli, Command, KeysCommand, NativeArgs, OpenArgs, RecordCommand, SealArgs, WolfsslArgs};

/// Exit code: success (for `record open`, every record was accepted).
pub const EXIT_OK: u8 = 0;
/// Exit code: `record open` dropped at least one record.
pub const EXIT_DROPPED: u8 = 1;
/// Exit code: bad input (bad arguments, hex, lengths, unknown suite).
pub const EXIT_BAD_INPUT: u8 = 2;

/// What a run produced: the exit code and the lines for stdout and stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Process exit code ([`EXIT_OK`], [`EXIT_DROPPED`] or [`EXIT_BAD_INPUT`]).
    pub code: u8,
    /// Lines for stdout (JSON objects or hex, one per line; help text for `--help`).
    pub stdout: Vec<String>,
    /// Lines for stderr: exactly one line on bad input, none otherwise.
    pub stderr: Vec<String>,
}

impl Outcome {
    fn ok(stdout: Vec<String>) -> Self {
        Self {
            code: EXIT_OK,
            stdout,
            stderr: Vec::new(),
        }
    }

    fn bad_input(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_BAD_INPUT,
            stdout: Vec::new(),
            stderr: vec![format!("error: {message}")],
        }
    }
}

/// A bad-input error: one line, never containing secret material.
#[derive(Debug)]
struct BadInput(String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(message: impl Into<String>) -> BadInput {
    BadInput(message.into())
}

/// Runs `dtls-group` with `args` (the first item is the program name, as in `std::env::args_os`).
pub fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_outcome(&e),
    };
    let result = match cli.command {
        Command::Record(RecordCommand::Open(a)) => {
            return record_open(&a).unwrap_or_else(Outcome::bad_input);
        }
        Command::Record(RecordCommand::Seal(a)) => record_seal(&a),
        Command::Keys(KeysCommand::Native(a)) => keys_native(&a),
        Command::Keys(KeysCommand::Wolfssl(a)) => keys_wolfssl(&a),
    };
    match result {
        Ok(line) => Outcome::ok(vec![line]),
        Err(e) => Outcome::bad_input(e),
    }
}

/// Help and version go to stdout with exit code 0; usage errors become one line on stderr with
/// exit code 2 (clap's usage-error code).
fn clap_outcome(e: &clap::Error) -> Outcome {
    let text = e.render().to_string();
    if e.exit_code() == 0 {
        return Outcome::ok(text.lines().map(str::to_owned).collect());
    }
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return Outcome::bad_input("a subcommand is required (try --help)");
    }
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line);
        }
    }
    let joined = parts.join(" ");
    Outcome {
        code: EXIT_BAD_INPUT,
        stdout: Vec::new(),
        stderr: vec![if joined.is_empty() {
            "error: invalid arguments (try --help)".to_owned()
        } else {
            joined
        }],
    }
}

/// Decodes a hex argument. The message names the argument and the problem, never the value.
fn decode_hex(what: &str, value: &str) -> Result<Vec<u8>, BadInput> {
    hex::decode(value).map_err(|e| {
        let why = match e {
            hex::FromHexError::OddLength => "odd number of hex digits".to_owned(),
            hex::FromHexError::InvalidHexCharacter { index, .. } => {
                format!("invalid hex character at position {index}")
            }
            hex::FromHexError::InvalidStringLength => "invalid length".to_owned(),
        };
        bad(format!("{what}: {why}"))
    })
}

fn key_error(e: KeyError, suite: Suite) -> BadInput {
    let p = suite.params();
    match e {
        KeyError::BadKeyLength => bad(format!(
            "--key: wrong length for {} (expected {} bytes)",
            suite_name(suite),
            p.map_or(0, |p| p.key_len)
        )),
        KeyError::BadIvLength => bad(format!(
            "--iv: wrong length for {} (expected {} bytes)",
            suite_name(suite),
            p.map_or(0, |p| p.iv_len)
        )),
        other => bad(other.to_string()),
    }
}

fn suite_name(suite: Suite) -> &'static str {
    suite.name().unwrap_or("this suite")
}

fn record_keys(cipher: &args::CipherArgs) -> Result<RecordKeys, BadInput> {
    let key = decode_hex("--key", &cipher.key)?;
    let iv = decode_hex("--iv", &cipher.iv)?;
    RecordKeys::new(cipher.suite, &key, &iv).map_err(|e| key_error(e, cipher.suite))
}

fn nonzero_epoch(epoch: u16) -> Result<Epoch, BadInput> {
    if epoch == 0 {
        Err(bad(
            "--epoch: epoch 0 is the unprotected epoch and can't carry keys",
        ))
    } else {
        Ok(Epoch(epoch))
    }
}

/// `record open`: one receiver (default policy: 64-record windows, trust-first admission, no
/// own sender ID; strict nonce profile unless `--compat`), every record in order.
fn record_open(a: &OpenArgs) -> Result<Outcome, BadInput> {
    let keys = record_keys(&a.cipher)?;
    let mut inputs = Vec::with_capacity(a.records.len());
    for (i, r) in a.records.iter().enumerate() {
        let what = format!("record {}", i.saturating_add(1));
        inputs.push(decode_hex(&what, r)?);
    }
    let epoch = match a.epoch {
        Some(e) => Some(nonzero_epoch(e)?),
        None => inputs
            .iter()
            .filter_map(|bytes| RecordHeader::parse(bytes).ok())
            .map(|h| h.epoch)
            .find(|e| e.0 != 0),
    };
    let profile = if a.compat {
        NonceProfile::Compatibility
    } else {
        NonceProfile::Strict
    };
    let now = Instant(0);
    let mut rx: Group = Group::new(GroupConfig::new(0).with_nonce_profile(profile));
    if let Some(epoch) = epoch {
        rx.install_and_activate(epoch, &keys, now)
            .map_err(|e| key_error(e, a.cipher.suite))?;
    }

    let mut lines = Vec::new();
    let mut all_accepted = true;
    for mut bytes in inputs {
        if a.datagram {
            let mut rest: &mut [u8] = &mut bytes;
            loop {
                match wire::split_record_mut(rest) {
                    Ok((one, tail)) => {
                        let (line, ok) = open_one(&mut rx, now, one);
                        lines.push(line);
                        all_accepted &= ok;
                        rest = tail;
                    }
                    Err(e) => {
                        // What is left does not frame as a record: one drop for the remainder.
                        lines.push(error_line(&OpenError::Malformed(e)));
                        all_accepted = false;
                        break;
                    }
                }
                if rest.is_empty() {
                    break;
                }
            }
        } else {
            let (line, ok) = open_one(&mut rx, now, &mut bytes);
            lines.push(line);
            all_accepted &= ok;
        }
    }
    Ok(Outcome {
        code: if all_accepted { EXIT_OK } else { EXIT_DROPPED },
        stdout: lines,
        stderr: Vec::new(),
    })
}

fn open_one(rx: &mut Group, now: Instant, record: &mut [u8]) -> (String, bool) {
    match rx.open(now, record) {
        Ok(d) => (
            format!(
                "{{\"epoch\":{},\"sender_id\":{},\"seq\":{},\"content_type\":{},\"plaintext\":\"{}\"}}",
                d.epoch.0,
                d.sender_id.0,
                d.seq,
                d.content_type.0,
                hex::encode(&*d.plaintext)
            ),
            true,
        ),
        Err(e) => (error_line(&e), false),
    }
}

fn error_line(e: &OpenError) -> String {
    format!("{{\"error\":\"{}\"}}", e.reason())
}

/// `record seal`: one record with `explicit_nonce = epoch || sid || seq`.
fn record_seal(a: &SealArgs) -> Result<String, BadInput> {
    let keys = record_keys(&a.cipher)?;
    let epoch = nonzero_epoch(a.epoch)?;
    if a.seq > MAX_SEQ {
        return Err(bad("--seq: above 2^40 - 1"));
    }
    let plaintext = decode_hex("plaintext", &a.plaintext)?;
    let cipher = EpochCipher::new(&keys).map_err(|e| key_error(e, a.cipher.suite))?;
    let mut out = vec![0u8; record::record_len(&cipher, plaintext.len())];
    let len = record::seal(
        &cipher,
        ContentType(a.content_type),
        epoch,
        SenderId(a.sender_id),
        a.seq,
        &plaintext,
        &mut out,
    )
    .map_err(|e| bad(format!("can't seal: {e}")))?;
    let record = out
        .get(..len)
        .ok_or_else(|| bad("can't seal: buffer too small"))?;
    Ok(hex::encode(record))
}

fn keys_line(keys: &RecordKeys) -> String {
    format!(
        "{{\"key\":\"{}\",\"iv\":\"{}\"}}",
        hex::encode(keys.key()),
        hex::encode(keys.iv())
    )
}

/// `keys native`: HKDF-SHA256 schedule.
fn keys_native(a: &NativeArgs) -> Result<String, BadInput> {
    let epoch = nonzero_epoch(a.epoch)?;
    let secret = decode_hex("--secret", &a.secret)?;
    let secret: [u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| bad("--secret: wrong length (expected 32 bytes)"))?;
    let secret = EpochSecret(secret);
    let keys =
        native_keys(a.group_id, epoch, a.suite, &secret).map_err(|e| key_error(e, a.suite))?;
    Ok(keys_line(&keys))
}

fn random32(what: &str, value: &str) -> Result<[u8; 32], BadInput> {
    decode_hex(what, value)?
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("{what}: wrong length (expected 32 bytes)")))
}

/// `keys wolfssl`: the TLS 1.2 PRF schedule of `wolfSSL_set_secret`.
fn keys_wolfssl(a: &WolfsslArgs) -> Result<String, BadInput> {
    let pms = decode_hex("--pms", &a.pms)?;
    if pms.is_empty() {
        return Err(bad("--pms: empty"));
    }
    let client_random = random32("--client-random", &a.client_random)?;
    let server_random = random32("--server-random", &a.server_random)?;
    let derived = wolfssl_keys(a.suite, &pms, &client_random, &server_random)
        .map_err(|e| key_error(e, a.suite))?;
    Ok(keys_line(&derived.keys))
}
