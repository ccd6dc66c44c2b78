//! The lighting-control demo: a key server, two wall switches and eight lights on one secure
//! multicast group, an attacker, a decommissioned light, a late joiner and a switch reboot.
//!
//! `cargo run --release -p group-examples --bin lighting-demo -- [--lights N]
//! [--scenario full|short] [--signed] [--ipv6] [--json-summary FILE]`; exits 0 when every
//! check passed. See `examples/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use group_examples::netns;
use group_examples::scenario::{self, Options, ScenarioKind};

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// Join, commands, attacks, decommissioning, late join, second attack, switch reboot.
    Full,
    /// Join, two commands, three attacks, decommissioning.
    Short,
}

/// Secure group lighting control on a multicast group, end to end.
#[derive(Parser)]
#[command(name = "lighting-demo")]
struct Args {
    /// Lights at the start (2 to 32); the full scenario adds one more later.
    #[arg(long, default_value_t = 8)]
    lights: usize,
    /// Which story to play.
    #[arg(long, value_enum, default_value_t = Scenario::Full)]
    scenario: Scenario,
    /// Records carry ECDSA P-256 signatures (source authentication).
    #[arg(long)]
    signed: bool,
    /// IPv6 multicast inside a private network namespace (needs the right to create one:
    /// root or user namespaces); prints SKIP and exits 0 if namespaces can't be created.
    #[arg(long)]
    ipv6: bool,
    /// Write the machine-readable summary (JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    json_summary: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut ipv6_ifindex = None;
    if args.ipv6 {
        match netns::inside() {
            Some(index) => ipv6_ifindex = Some(index),
            None => {
                let exe = match std::env::current_exe() {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("lighting-demo: can't find this program to re-run it: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let argv: Vec<_> = std::env::args_os().skip(1).collect();
                return match netns::run(&exe, &argv) {
                    netns::Outcome::Unavailable(reason) => {
                        println!("SKIP: --ipv6 needs a private network namespace: {reason}");
                        ExitCode::SUCCESS
                    }
                    netns::Outcome::Ran(status) if status.success() => ExitCode::SUCCESS,
                    netns::Outcome::Ran(status) => {
                        if status.code() == Some(netns::SETUP_FAILED) {
                            eprintln!(
                                "lighting-demo: the namespace was created but its veth pair \
                                 could not be set up (needs `ip` and the veth driver)"
                            );
                        }
                        ExitCode::FAILURE
                    }
                };
            }
        }
    }
    let opts = Options {
        lights: args.lights,
        scenario: match args.scenario {
            Scenario::Full => ScenarioKind::Full,
            Scenario::Short => ScenarioKind::Short,
        },
        signed: args.signed,
        ipv6_ifindex,
    };
    let summary = match scenario::run(&opts, Box::new(std::io::stdout())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lighting-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.json_summary
        && let Err(e) = summary.write_json(path)
    {
        eprintln!("lighting-demo: --json-summary {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
