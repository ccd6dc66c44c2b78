//! `dtls-group`: open and seal DTLS 1.2 group records and derive group keys from the command
//! line. All the work is in [`group_std::cli`]; this only connects it to the process's stdout,
//! stderr and exit code. See `docs/cli.md`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use group_std::cli::{self, WriteStdout};

fn main() -> ExitCode {
    let mut out = WriteStdout::new(std::io::stdout().lock());
    let result = cli::run_with(std::env::args_os(), &mut out);
    // A closed stdout (e.g. `| head`) ends the output quietly; it is not bad input.
    let _ = out.finish();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(line) => {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            ExitCode::from(cli::EXIT_BAD_INPUT)
        }
    }
}
