//! What every subcommand group shares: hex and suite arguments, the bad-input error, and the
//! stdout sink.
//!
//! Secrets (record key and IV, epoch secret, pre-master secret) come from a file
//! (`--key-file`, `--iv-file`, `--secret-file`, `--pms-file`) or, with `-` as the file name,
//! from standard input. A file that its group or others may read is refused, naming the file
//! and its mode ([`crate::keyfile::read_secret_file`]). What is read is decoded into zeroizing
//! buffers. The hex arguments (`--key`, `--iv`, `--secret`, `--pms`) remain for tests and
//! one-off experiments; they are insecure (any local user reads them in `/proc/PID/cmdline`),
//! say so in `--help`, and print a warning line on stderr when used ([`Stdout::warn`]).
//!
//! Secret arguments are taken by clap as plain strings and decoded here, so that a malformed
//! secret is never echoed back in an error message (clap quotes the offending value when its
//! own value parser fails). Argument structs holding secrets have no `Debug` implementation
//! for the same reason.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use group_core::suite::{KeyError, RecordKeys, Suite};
use group_core::wire::Epoch;
use zeroize::Zeroizing;

/// A bad-input error: one line (newlines are replaced), never containing secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput(String);

impl BadInput {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into().replace(['\n', '\r'], " "))
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Where a subcommand's stdout lines go: collected for tests ([`Vec<String>`]) or streamed to
/// a writer ([`WriteStdout`]).
pub trait Stdout {
    /// Writes one line (without its newline).
    fn line(&mut self, line: String);

    /// Writes one warning line for stderr (the command goes on). By default straight to the
    /// process's stderr.
    fn warn(&mut self, line: String) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl Stdout for Vec<String> {
    fn line(&mut self, line: String) {
        self.push(line);
    }
}

/// Streams lines to a writer. After a write error (a closed pipe), later lines are dropped
/// quietly instead of panicking as `println!` would.
pub struct WriteStdout<W: Write> {
    writer: W,
    failed: bool,
}

impl<W: Write> WriteStdout<W> {
    /// Wraps a writer.
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            failed: false,
        }
    }

    /// Flushes the writer; `false` if any write or the flush failed.
    pub fn finish(mut self) -> bool {
        !self.failed && self.writer.flush().is_ok()
    }
}

impl<W: Write> Stdout for WriteStdout<W> {
    fn line(&mut self, line: String) {
        if !self.failed && writeln!(self.writer, "{line}").is_err() {
            self.failed = true;
        }
    }
}

/// Parses a suite name as [`Suite::from_name`] knows it (`ccm8`, `ccm`, `gcm`, `chacha20`);
/// refuses suites not compiled in.
pub fn parse_suite(name: &str) -> Result<Suite, String> {
    let suite = Suite::from_name(name)
        .ok_or_else(|| "unknown suite (expected ccm8, ccm, gcm or chacha20)".to_owned())?;
    if suite.is_enabled() {
        Ok(suite)
    } else {
        Err("suite not enabled in this build (enable the chacha20 feature)".to_owned())
    }
}

/// Record protection: suite, write key and write IV (each from a file, stdin, or, insecurely,
/// the command line).
#[derive(Args)]
pub struct CipherArgs {
    /// Cipher suite: ccm8, ccm, gcm or chacha20.
    #[arg(long, value_parser = parse_suite)]
    pub suite: Suite,
    /// File holding the write key as hex (16 bytes for AES suites, 32 for chacha20); mode
    /// 0600 or stricter. `-` reads it from standard input.
    #[arg(long, value_name = "FILE", required_unless_present = "key")]
    pub key_file: Option<PathBuf>,
    /// INSECURE: the write key as hex on the command line, readable by every local user in
    /// /proc/PID/cmdline (a warning is printed). Use --key-file.
    #[arg(long, value_name = "HEX", conflicts_with = "key_file")]
    pub key: Option<String>,
    /// File holding the write IV as hex (4 bytes for AES suites, 12 for chacha20); mode 0600
    /// or stricter. `-` reads it from standard input.
    #[arg(long, value_name = "FILE", required_unless_present = "iv")]
    pub iv_file: Option<PathBuf>,
    /// INSECURE: the write IV as hex on the command line (see --key). Use --iv-file.
    #[arg(long, value_name = "HEX", conflicts_with = "iv_file")]
    pub iv: Option<String>,
}

impl CipherArgs {
    /// Reads, decodes and checks the key and IV against the suite.
    pub fn record_keys(&self, out: &mut dyn Stdout) -> Result<RecordKeys, BadInput> {
        if is_stdin(self.key_file.as_deref()) && is_stdin(self.iv_file.as_deref()) {
            return Err(BadInput::new(
                "--key-file and --iv-file: only one secret can come from standard input",
            ));
        }
        let key = read_secret("--key", self.key.as_deref(), self.key_file.as_deref(), out)?;
        let iv = read_secret("--iv", self.iv.as_deref(), self.iv_file.as_deref(), out)?;
        RecordKeys::new(self.suite, &key, &iv).map_err(|e| key_error(e, self.suite))
    }
}

fn is_stdin(file: Option<&Path>) -> bool {
    file.is_some_and(|p| p.as_os_str() == "-")
}

/// A secret from `FLAG-file FILE` (`-`: standard input) or, insecurely, `FLAG HEX` (with a
/// warning through `out`). Exactly one of `hex` and `file` is given (clap enforces it). The
/// error names the flag or the file, never the secret.
pub fn read_secret(
    flag: &str,
    hex: Option<&str>,
    file: Option<&Path>,
    out: &mut dyn Stdout,
) -> Result<Zeroizing<Vec<u8>>, BadInput> {
    match (hex, file) {
        (Some(h), _) => {
            out.warn(format!(
                "warning: {flag} puts a secret on the command line, where every local user can \
                 read it (/proc/PID/cmdline); use {flag}-file FILE (mode 0600) or {flag}-file -"
            ));
            Ok(Zeroizing::new(decode_hex(flag, h)?))
        }
        (None, Some(p)) => {
            let what = if p.as_os_str() == "-" {
                format!("{flag}-file -")
            } else {
                format!("{flag}-file {}", p.display())
            };
            let text = if p.as_os_str() == "-" {
                crate::keyfile::read_secret_stdin()
            } else {
                crate::keyfile::read_secret_file(p)
            }
            .map_err(|e| BadInput::new(format!("{flag}-file: {e}")))?;
            crate::keyfile::decode_secret_hex(&what, &text)
                .map_err(|e| BadInput::new(e.to_string()))
        }
        (None, None) => Err(BadInput::new(format!("{flag}-file: required"))),
    }
}

/// Decodes a hex argument. The message names the argument and the problem, never the value.
pub fn decode_hex(what: &str, value: &str) -> Result<Vec<u8>, BadInput> {
    hex::decode(value).map_err(|e| {
        let why = match e {
            hex::FromHexError::OddLength => "odd number of hex digits".to_owned(),
            hex::FromHexError::InvalidHexCharacter { index, .. } => {
                format!("invalid hex character at position {index}")
            }
            hex::FromHexError::InvalidStringLength => "invalid length".to_owned(),
        };
        BadInput::new(format!("{what}: {why}"))
    })
}

/// Decodes a hex argument that must be exactly `N` bytes.
pub fn decode_hex_array<const N: usize>(what: &str, value: &str) -> Result<[u8; N], BadInput> {
    decode_hex(what, value)?
        .as_slice()
        .try_into()
        .map_err(|_| BadInput::new(format!("{what}: wrong length (expected {N} bytes)")))
}

/// Explains a [`KeyError`] for the command line (lengths, never material).
pub fn key_error(e: KeyError, suite: Suite) -> BadInput {
    let p = suite.params();
    let name = suite.name().unwrap_or("this suite");
    match e {
        KeyError::BadKeyLength => BadInput::new(format!(
            "--key: wrong length for {name} (expected {} bytes)",
            p.map_or(0, |p| p.key_len)
        )),
        KeyError::BadIvLength => BadInput::new(format!(
            "--iv: wrong length for {name} (expected {} bytes)",
            p.map_or(0, |p| p.iv_len)
        )),
        other => BadInput::new(other.to_string()),
    }
}

/// The output line of a delivered record (`listen` and `member`):
/// `{"sender_id":S,"epoch":E,"seq":Q,"plaintext":"HEX"}`.
pub fn delivered_line(r: &crate::endpoint::Received) -> String {
    format!(
        "{{\"sender_id\":{},\"epoch\":{},\"seq\":{},\"plaintext\":\"{}\"}}",
        r.sender_id.0,
        r.epoch.0,
        r.seq,
        hex::encode(&r.plaintext)
    )
}

/// Refuses epoch 0 (the unprotected epoch, which never carries keys).
pub fn nonzero_epoch(epoch: u16) -> Result<Epoch, BadInput> {
    if epoch == 0 {
        Err(BadInput::new(
            "--epoch: epoch 0 is the unprotected epoch and can't carry keys",
        ))
    } else {
        Ok(Epoch(epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_errors_name_the_argument_not_the_value() {
        let e = decode_hex("--key", "00112g").unwrap_err().to_string();
        assert_eq!(e, "--key: invalid hex character at position 5");
        let e = decode_hex("--key", "abc").unwrap_err().to_string();
        assert_eq!(e, "--key: odd number of hex digits");
        let e = decode_hex_array::<4>("--iv", "0011")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--iv: wrong length (expected 4 bytes)");
        assert_eq!(decode_hex_array::<2>("--iv", "A0ff"), Ok([0xa0, 0xff]));
    }

    #[test]
    fn bad_input_is_one_line() {
        assert_eq!(BadInput::new("a\nb\r\nc").to_string(), "a b  c");
    }

    #[test]
    fn suites_by_name() {
        assert_eq!(parse_suite("ccm8"), Ok(Suite::AES_128_CCM_8));
        assert_eq!(parse_suite("gcm"), Ok(Suite::AES_128_GCM));
        assert!(parse_suite("CCM8").is_err());
        assert!(parse_suite("").is_err());
    }

    #[test]
    fn write_stdout_survives_a_failing_writer() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = WriteStdout::new(Broken);
        out.line("a".into());
        out.line("b".into());
        assert!(!out.finish());
        let mut buf = Vec::new();
        let mut out = WriteStdout::new(&mut buf);
        out.line("a".into());
        out.line("b".into());
        assert!(out.finish());
        assert_eq!(buf, b"a\nb\n");
    }
}
