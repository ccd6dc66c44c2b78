//! `dtls-group`: open and seal DTLS 1.2 group records and derive group keys from the command
//! line. All the work is in [`group_std::cli`]; this only prints its outcome. See
//! `docs/cli.md`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let outcome = group_std::cli::run(std::env::args_os());
    // Write errors (a closed pipe) end the output quietly instead of panicking like println!.
    let mut out = std::io::stdout().lock();
    for line in &outcome.stdout {
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    for line in &outcome.stderr {
        if writeln!(err, "{line}").is_err() {
            break;
        }
    }
    ExitCode::from(outcome.code)
}
