//! `dtls-group record open|seal`: records through one receiver, and one record sealed.

use clap::{Args, Subcommand};
use group_core::group::{Delivery, Group, GroupConfig};
use group_core::record::{self, NonceProfile, OpenError};
use group_core::suite::EpochCipher;
use group_core::time::Instant;
use group_core::wire::{ContentType, MAX_SEQ, RecordHeader, SenderId};

use super::common::{BadInput, CipherArgs, Stdout, decode_hex, key_error, nonzero_epoch};
use super::{EXIT_DROPPED, EXIT_OK};

/// `dtls-group record ...`
#[derive(Subcommand)]
pub enum RecordCommand {
    /// Open records as one stream into one receiver; prints one JSON object per record.
    Open(OpenArgs),
    /// Seal one record; prints the record as hex.
    Seal(SealArgs),
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
    /// parses and whose epoch is not 0). Records of other epochs are dropped (unknown_epoch).
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

/// Runs a `record` subcommand.
pub fn run(cmd: &RecordCommand, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    match cmd {
        RecordCommand::Open(a) => open(a, out),
        RecordCommand::Seal(a) => {
            let record = seal(a, out)?;
            out.line(record);
            Ok(EXIT_OK)
        }
    }
}

/// `record open`: one receiver with the default group policy (64-record windows, trust-first
/// admission, no own sender ID; strict nonce profile unless `--compat`), every record in order.
/// All input is checked before the first line is printed.
fn open(a: &OpenArgs, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    let keys = a.cipher.record_keys(out)?;
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

    let mut all_accepted = true;
    for mut bytes in inputs {
        if a.datagram {
            // Every record of the datagram in order; bytes that do not frame as a record are
            // one malformed drop, counted by the receiver like any other, and end the datagram.
            for outcome in rx.open_datagram(now, &mut bytes) {
                all_accepted &= print_outcome(outcome, out);
            }
        } else {
            let outcome = rx.open(now, &mut bytes);
            all_accepted &= print_outcome(outcome, out);
        }
    }
    Ok(if all_accepted { EXIT_OK } else { EXIT_DROPPED })
}

/// Prints the line of one record's outcome; `true` if it was accepted.
fn print_outcome(outcome: Result<Delivery<'_>, OpenError>, out: &mut dyn Stdout) -> bool {
    match outcome {
        Ok(d) => {
            out.line(format!(
                "{{\"epoch\":{},\"sender_id\":{},\"seq\":{},\"content_type\":{},\"plaintext\":\"{}\"}}",
                d.epoch.0,
                d.sender_id.0,
                d.seq,
                d.content_type.0,
                hex::encode(&*d.plaintext)
            ));
            true
        }
        Err(e) => {
            out.line(error_line(&e));
            false
        }
    }
}

/// `{"error":"REASON"}`; reasons are fixed snake_case names ([`OpenError::reason`]).
fn error_line(e: &OpenError) -> String {
    format!("{{\"error\":\"{}\"}}", e.reason())
}

/// `record seal`: one record with `explicit_nonce = epoch || sid || seq`.
fn seal(a: &SealArgs, out: &mut dyn Stdout) -> Result<String, BadInput> {
    let keys = a.cipher.record_keys(out)?;
    let epoch = nonzero_epoch(a.epoch)?;
    if a.seq > MAX_SEQ {
        return Err(BadInput::new("--seq: above 2^40 - 1"));
    }
    let plaintext = decode_hex("plaintext", &a.plaintext)?;
    let cipher = EpochCipher::new(&keys).map_err(|e| key_error(e, a.cipher.suite))?;
    let mut buf = vec![0u8; record::record_len(&cipher, plaintext.len())];
    let len = record::seal(
        &cipher,
        ContentType(a.content_type),
        epoch,
        SenderId(a.sender_id),
        a.seq,
        &plaintext,
        &mut buf,
    )
    .map_err(|e| BadInput::new(format!("can't seal: {e}")))?;
    let record = buf
        .get(..len)
        .ok_or_else(|| BadInput::new("can't seal: buffer too small"))?;
    Ok(hex::encode(record))
}

#[cfg(test)]
mod tests {
    use crate::cli::{EXIT_BAD_INPUT, run};

    const KEY: &str = "000102030405060708090a0b0c0d0e0f";
    const IV: &str = "a0a1a2a3";

    fn seal(epoch: &str, sid: &str, seq: &str, pt: &str) -> String {
        let out = run([
            "dtls-group",
            "record",
            "seal",
            "--suite",
            "ccm",
            "--key",
            KEY,
            "--iv",
            IV,
            "--epoch",
            epoch,
            "--sender-id",
            sid,
            "--seq",
            seq,
            pt,
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout[0].clone()
    }

    fn open(extra: &[&str], records: &[&str]) -> crate::cli::Outcome {
        let mut args = vec![
            "dtls-group",
            "record",
            "open",
            "--suite",
            "ccm",
            "--key",
            KEY,
            "--iv",
            IV,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(records);
        run(args)
    }

    #[test]
    fn seal_then_open_round_trip_with_replay_and_epochs() {
        let a = seal("3", "9", "5", "6869");
        let b = seal("3", "9", "6", "");
        let c = seal("4", "9", "0", "ff");
        let out = open(&[], &[&a, &b, &a, &c]);
        assert_eq!(
            out.stdout,
            [
                r#"{"epoch":3,"sender_id":9,"seq":5,"content_type":23,"plaintext":"6869"}"#,
                r#"{"epoch":3,"sender_id":9,"seq":6,"content_type":23,"plaintext":""}"#,
                r#"{"error":"replay"}"#,
                r#"{"error":"unknown_epoch"}"#,
            ]
        );
        assert_eq!(out.code, 1);
        let out = open(&["--epoch", "4"], &[&a, &c]);
        assert_eq!(out.stdout[0], r#"{"error":"unknown_epoch"}"#);
        assert!(out.stdout[1].contains(r#""plaintext":"ff""#));
    }

    #[test]
    fn datagram_mode_splits_records() {
        let a = seal("1", "2", "1", "01");
        let b = seal("1", "2", "2", "02");
        let out = open(&["--datagram"], &[&format!("{a}{b}"), &format!("{a}00")]);
        assert_eq!(out.stdout.len(), 4, "{out:?}");
        assert!(out.stdout[0].contains(r#""plaintext":"01""#));
        assert!(out.stdout[1].contains(r#""plaintext":"02""#));
        assert_eq!(out.stdout[2], r#"{"error":"replay"}"#);
        assert_eq!(out.stdout[3], r#"{"error":"malformed"}"#);
        // Without --datagram, two records in one argument are one malformed record.
        let out = open(&[], &[&format!("{a}{b}")]);
        assert_eq!(out.stdout, [r#"{"error":"malformed"}"#]);
    }

    #[test]
    fn bad_input_prints_nothing_on_stdout() {
        let a = seal("1", "2", "1", "01");
        let out = open(&[], &[&a, "abc"]);
        assert_eq!(out.code, EXIT_BAD_INPUT);
        assert!(out.stdout.is_empty());
        assert_eq!(
            out.stderr,
            ["error: record 2: odd number of hex digits".to_owned()]
        );
        let out = open(&["--epoch", "0"], &[&a]);
        assert_eq!(out.code, EXIT_BAD_INPUT);
    }
}
