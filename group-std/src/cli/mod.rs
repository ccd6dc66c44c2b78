//! The `dtls-group` command-line tool as a library, so it can be run and tested in process.
//! `src/bin/dtls-group.rs` is a thin `main` around [`run_with`].
//!
//! ```text
//! dtls-group record open --suite S --key-file FILE --iv-file FILE [--compat] [--epoch E] [--datagram] RECORD_HEX...
//! dtls-group record seal --suite S --key-file FILE --iv-file FILE --epoch E --sender-id S --seq Q [--content-type T] PLAINTEXT_HEX
//! dtls-group keys native --group-id N --epoch E --suite S --secret-file FILE
//! dtls-group keys wolfssl --suite S --pms-file FILE --client-random HEX --server-random HEX
//! dtls-group listen --group ADDR:PORT [--iface ADDR|NAME] --suite S --key-file FILE --iv-file FILE [--compat] [--epoch E] [--count N] [--timeout SECS] [--control PATH]
//! dtls-group keygen --out PREFIX
//! dtls-group keyserver --config FILE [--init] [--control PATH] [--timeout SECS]
//! dtls-group member --server ADDR:PORT[,ADDR:PORT...] --server-key PUB --device-key KEY --device-id N --group-id G --group ADDR:PORT [--role sender --seq-store FILE] [--send HEX]... [--stdin] [--count N] [--timeout SECS] [--control PATH]
//! dtls-group admin CONTROL[,CONTROL...] status|revoke DEVICE|rekey GROUP
//! dtls-group status CONTROL
//! dtls-group send --group ADDR:PORT [--iface ADDR|NAME] --suite S --key-file FILE --iv-file FILE --epoch E --sender-id S --seq-store FILE [--init-seq-store] [--reserve-step K] [--interval MS] MESSAGE_HEX...
//! ```
//!
//! Exit codes: [`EXIT_OK`] (0) success (for `record open`: every record accepted),
//! [`EXIT_DROPPED`] (1) some record dropped, [`EXIT_BAD_INPUT`] (2) bad input, with exactly one
//! error line on stderr. Secret files (`--key-file`, `--iv-file`, `--secret-file`,
//! `--pms-file`; `-` is standard input) must not be readable by group or others. The insecure
//! hex forms (`--key HEX`, ...) add one `warning: ` line on stderr each. Nothing here panics
//! on input, and no secret is ever written to stderr.
//! See `docs/cli.md` for examples.
//!
//! ## Layout: one module per subcommand group
//! - [`Cli`] / [`Command`]: the clap tree; each variant holds one group's subcommand enum.
//! - [`record`]: `record open`, `record seal`. [`keys`]: `keys native`, `keys wolfssl`.
//! - [`common`]: what every group shares: hex and suite arguments, [`BadInput`], the
//!   [`Stdout`] sink.
//!
//! To add a group (say `listen`): write `cli/listen.rs` with a clap `Subcommand` (or `Args`)
//! type and `pub fn run(cmd: &ListenCommand, out: &mut dyn Stdout) -> Result<u8, BadInput>`,
//! then add one variant to [`Command`] and one arm to [`execute`]. Handlers write stdout lines
//! through [`Stdout`] as they go (so long-running subcommands stream), validate all input
//! before the first line, and return the exit code.
//!
//! ```
//! let out = group_std::cli::run([
//!     "dtls-group", "keys", "native", "--group-id", "7", "--epoch", "1", "--suite", "ccm8",
//!     "--secret", "4242424242424242424242424242424242424242424242424242424242424242",
//! ]);
//! assert_eq!(out.code, 0);
//! assert!(out.stdout[0].starts_with("{\"key\":\""));
//! assert!(out.stderr.is_empty());
//! // A secret on the command line is visible to every local user: it works, with a warning.
//! assert!(out.warnings[0].starts_with("warning: --secret"));
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod common;
pub mod keydist;
pub mod keys;
pub mod net;
pub mod record;

use std::ffi::OsString;

use clap::{ColorChoice, Parser, Subcommand};

pub use common::{BadInput, Stdout, WriteStdout};

/// Exit code: success (for `record open`, every record was accepted).
pub const EXIT_OK: u8 = 0;
/// Exit code: `record open` dropped at least one record.
pub const EXIT_DROPPED: u8 = 1;
/// Exit code: bad input (bad arguments, hex, lengths, unknown suite). Also clap's usage-error
/// code.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The version `--version` prints: the package version and the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DTLS_GROUP_COMMIT"),
    ")"
);

/// `dtls-group`: DTLS 1.2 group records for IoT multicast: offline record and key tools,
/// multicast nodes, the key server and its members.
#[derive(Parser)]
#[command(
    name = "dtls-group",
    version = VERSION,
    color = ColorChoice::Never,
    about = "DTLS 1.2 group records for IoT multicast: open and seal records, derive keys, \
             send and receive on a multicast group, run a key server and its members"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands: one per subcommand group, each in its own module.
#[derive(Subcommand)]
pub enum Command {
    /// Open or seal records.
    #[command(subcommand)]
    Record(record::RecordCommand),
    /// Derive an epoch's record key and IV.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Receive a group with static keys; one JSON object per delivered record, then a summary.
    Listen(net::ListenArgs),
    /// Send messages to a group with static keys and a sequence store file.
    Send(net::SendArgs),
    /// Print a running node's counters and epochs (ask its --control socket).
    Status(net::StatusArgs),
    /// Generate a P-256 key pair (device or key server) to PREFIX.key / PREFIX.pub.
    Keygen(keydist::KeygenArgs),
    /// Run the key server (TOML config) until killed.
    Keyserver(keydist::KeyserverArgs),
    /// Join a group through the key server; receive and send.
    Member(keydist::MemberArgs),
    /// Ask a running key server: status, revoke DEVICE, rekey GROUP, log LEVEL.
    Admin(keydist::AdminArgs),
}

/// Runs a parsed command, writing stdout lines to `out`; returns the exit code.
pub fn execute(cli: &Cli, out: &mut dyn Stdout) -> Result<u8, BadInput> {
    match &cli.command {
        Command::Record(cmd) => record::run(cmd, out),
        Command::Keys(cmd) => keys::run(cmd, out),
        Command::Listen(args) => net::listen(args, out),
        Command::Send(args) => net::send(args, out),
        Command::Status(args) => net::status(args, out),
        Command::Keygen(args) => keydist::keygen(args, out),
        Command::Keyserver(args) => keydist::keyserver(args, out),
        Command::Member(args) => keydist::member(args, out),
        Command::Admin(args) => keydist::admin(args, out),
    }
}

/// What a run produced: the exit code and the lines for stdout and stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Process exit code ([`EXIT_OK`], [`EXIT_DROPPED`] or [`EXIT_BAD_INPUT`]).
    pub code: u8,
    /// Lines for stdout (JSON objects or hex, one per line; help text for `--help`).
    pub stdout: Vec<String>,
    /// The error line for stderr: exactly one line on bad input, none otherwise.
    pub stderr: Vec<String>,
    /// Warning lines for stderr, each starting with `warning: ` (the binary prints them before
    /// any error line): today only for secrets given as command-line arguments.
    pub warnings: Vec<String>,
}

/// Collects stdout lines and warnings apart.
struct Collect {
    stdout: Vec<String>,
    warnings: Vec<String>,
}

impl Stdout for Collect {
    fn line(&mut self, line: String) {
        self.stdout.push(line);
    }
    fn warn(&mut self, line: String) {
        self.warnings.push(line);
    }
}

/// Runs `dtls-group` with `args` (the first item is the program name, as in
/// `std::env::args_os`), collecting the output.
pub fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut c = Collect {
        stdout: Vec::new(),
        warnings: Vec::new(),
    };
    let result = run_with(args, &mut c);
    let Collect { stdout, warnings } = c;
    match result {
        Ok(code) => Outcome {
            code,
            stdout,
            stderr: Vec::new(),
            warnings,
        },
        Err(line) => Outcome {
            code: EXIT_BAD_INPUT,
            stdout,
            stderr: vec![line],
            warnings,
        },
    }
}

/// Runs `dtls-group` with `args`, streaming stdout lines to `out`. Returns the exit code, or
/// on bad input the one line for stderr (the exit code is then [`EXIT_BAD_INPUT`]).
pub fn run_with<I, T>(args: I, out: &mut dyn Stdout) -> Result<u8, String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_outcome(&e, out),
    };
    execute(&cli, out).map_err(|e| format!("error: {e}"))
}

/// Help and version go to stdout with exit code 0; usage errors become one line for stderr
/// (clap's multi-line message, without the usage block, joined).
fn clap_outcome(e: &clap::Error, out: &mut dyn Stdout) -> Result<u8, String> {
    let text = e.render().to_string();
    if e.exit_code() == 0 {
        for line in text.lines() {
            out.line(line.to_owned());
        }
        return Ok(EXIT_OK);
    }
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return Err("error: a subcommand is required (try --help)".to_owned());
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
    Err(if joined.is_empty() {
        "error: invalid arguments (try --help)".to_owned()
    } else {
        joined
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            &["dtls-group"][..],
            &["dtls-group", "record"],
            &["dtls-group", "record", "open", "--suite", "ccm8"],
            &["dtls-group", "record", "open", "--bogus"],
            &["dtls-group", "keys", "native", "--group-id", "x"],
        ] {
            let out = run(args);
            assert_eq!(out.code, EXIT_BAD_INPUT, "{args:?}");
            assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
            assert!(!out.stderr[0].contains('\n'));
            assert!(out.stderr[0].starts_with("error: "), "{:?}", out.stderr);
            assert!(out.stdout.is_empty());
        }
    }

    #[test]
    fn help_goes_to_stdout() {
        let out = run(["dtls-group", "record", "open", "--help"]);
        assert_eq!(out.code, EXIT_OK);
        assert!(out.stdout.iter().any(|l| l.contains("--compat")));
        assert!(out.stderr.is_empty());
    }
}
