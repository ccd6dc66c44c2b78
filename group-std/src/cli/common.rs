//! What every subcommand group shares: hex and suite arguments, the bad-input error, and the
//! stdout sink.
//!
//! Secret inputs (`--key`, `--iv`, `--secret`, `--pms`) are taken by clap as plain strings and
//! decoded here, so that a malformed secret is never echoed back in an error message (clap
//! quotes the offending value when its own value parser fails). Argument structs holding
//! secrets have no `Debug` implementation for the same reason.

use std::fmt;
use std::io::Write;

use clap::Args;
use group_core::suite::{KeyError, RecordKeys, Suite};
use group_core::wire::Epoch;

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

/// Record protection given on the command line: suite, write key and write IV.
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

impl CipherArgs {
    /// Decodes and checks the key and IV against the suite.
    pub fn record_keys(&self) -> Result<RecordKeys, BadInput> {
        let key = decode_hex("--key", &self.key)?;
        let iv = decode_hex("--iv", &self.iv)?;
        RecordKeys::new(self.suite, &key, &iv).map_err(|e| key_error(e, self.suite))
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
