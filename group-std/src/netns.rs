//! Runs a program (a test binary, the demo) inside a private network namespace, so that IPv6
//! multicast traffic can't leave this machine: the program is re-executed under `unshare -n`
//! after a veth pair (`dg0`/`dg1`) is added there, and the group lives on `dg0` (IPv6
//! multicast does not work on `lo`); `[::1]` works for unicast inside. Used by the IPv6 tests
//! and the lighting demo's `--ipv6`; needs root (or user namespaces), `unshare` and `ip`.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Set inside the namespace: the index of `dg0`.
pub const INSIDE_ENV: &str = "DTLS_GROUP_NETNS_IFINDEX";

/// Exit status of the setup script when the namespace exists but its network can't be set up.
pub const SETUP_FAILED: i32 = 97;

const SCRIPT: &str = "\
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad || exit 97
ip link set lo up || exit 97
ip link add dg0 type veth peer name dg1 || exit 97
ip link set dg0 up && ip link set dg1 up || exit 97
idx=$(ip -o link show dg0 | cut -d: -f1) || exit 97
export DTLS_GROUP_NETNS_IFINDEX=$idx
exec \"$0\" \"$@\"";

/// The interface index when running inside the namespace this module made.
pub fn inside() -> Option<u32> {
    std::env::var(INSIDE_ENV).ok()?.trim().parse().ok()
}

/// What happened when trying to run inside a namespace.
#[derive(Debug)]
pub enum Outcome {
    /// The program ran inside; its exit status.
    Ran(ExitStatus),
    /// Network namespaces can't be created here (the reason).
    Unavailable(String),
}

/// Whether `unshare -n` works here (`Err` with the reason if not).
pub fn probe() -> Result<(), String> {
    match Command::new("unshare")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(e) => Err(format!("can't run unshare: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "unshare -n failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

/// Runs `exe args...` inside a new network namespace with the veth pair set up, output
/// inherited; returns its exit status.
pub fn run(exe: &Path, args: &[OsString]) -> Outcome {
    run_with_env(exe, args, &[])
}

/// As [`run`], with extra environment variables for the program.
pub fn run_with_env(exe: &Path, args: &[OsString], env: &[(&str, &OsStr)]) -> Outcome {
    if let Err(reason) = probe() {
        return Outcome::Unavailable(reason);
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "sh", "-c", SCRIPT])
        .arg(exe)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status();
    match status {
        Ok(s) => Outcome::Ran(s),
        Err(e) => Outcome::Unavailable(format!("can't run unshare: {e}")),
    }
}
