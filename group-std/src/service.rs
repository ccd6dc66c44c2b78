//! Running under a service manager: readiness for systemd (`sd_notify`, `Type=notify`) and a
//! clean stop on SIGTERM or SIGINT.
//!
//! - [`notify`] sends a state line (`READY=1`, `STATUS=...`, `STOPPING=1`) to the socket named
//!   by `$NOTIFY_SOCKET`, as `sd_notify(3)` does; without that variable it does nothing, so the
//!   daemons call it unconditionally.
//! - [`StopSignals`] turns the first SIGTERM or SIGINT into a flag the daemon's loop checks
//!   between turns, so it stops where its state is consistent (its control socket removed, a
//!   member's summary printed). A second signal of the same kind ends the process at once.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to `$NOTIFY_SOCKET`. Returns
/// whether there was a socket to tell. A path starting with `@` is an abstract socket.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// [`notify`], with a failure logged rather than returned (readiness is best effort: a daemon
/// that can't tell systemd still works).
pub fn notify_logged(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

/// The reload handle of the process's log level, once logging is set up.
static LOG_LEVEL: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<
        tracing_subscriber::filter::LevelFilter,
        tracing_subscriber::Registry,
    >,
> = std::sync::OnceLock::new();

/// Keeps the handle through which [`set_log_level`] changes the level (set by the CLI when it
/// installs its logger).
pub fn register_log_level(
    handle: tracing_subscriber::reload::Handle<
        tracing_subscriber::filter::LevelFilter,
        tracing_subscriber::Registry,
    >,
) {
    let _ = LOG_LEVEL.set(handle);
}

/// Changes the log level at run time: `debug`, `info`, `warn` or `off` (as `DTLS_GROUP_LOG`).
/// Returns the level now in force.
pub fn set_log_level(name: &str) -> Result<&'static str, String> {
    use tracing_subscriber::filter::LevelFilter;
    let (level, name) = match name {
        "debug" => (LevelFilter::DEBUG, "debug"),
        "info" => (LevelFilter::INFO, "info"),
        "warn" => (LevelFilter::WARN, "warn"),
        "off" => (LevelFilter::OFF, "off"),
        other => {
            return Err(format!(
                "unknown log level {other:?} (debug | info | warn | off)"
            ));
        }
    };
    let handle = LOG_LEVEL
        .get()
        .ok_or_else(|| "logging is not set up in this process".to_owned())?;
    handle.modify(|l| *l = level).map_err(|e| e.to_string())?;
    Ok(name)
}

/// The first SIGTERM or SIGINT received, as a flag.
#[derive(Debug, Clone)]
pub struct StopSignals {
    got: Arc<AtomicUsize>,
}

impl StopSignals {
    /// Installs the handlers (SIGTERM, SIGINT): the first sets the flag, a second one while it
    /// is set ends the process with the default action.
    pub fn install() -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let got = Arc::new(AtomicUsize::new(0));
        for sig in [SIGTERM, SIGINT] {
            let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // Order matters: the shutdown check runs before the flag is set, so only a second
            // signal finds it set.
            signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone())?;
            signal_hook::flag::register(sig, flag)?;
            signal_hook::flag::register_usize(sig, got.clone(), sig_index(sig))?;
        }
        Ok(Self { got })
    }

    /// The signal received, if any: `"SIGTERM"` or `"SIGINT"`.
    pub fn received(&self) -> Option<&'static str> {
        match self.got.load(Ordering::Relaxed) {
            0 => None,
            1 => Some("SIGTERM"),
            _ => Some("SIGINT"),
        }
    }
}

fn sig_index(sig: i32) -> usize {
    if sig == signal_hook::consts::SIGTERM {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_is_silent_without_a_socket() {
        // (With `$NOTIFY_SOCKET`, tests/service.rs checks what a daemon sends.)
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!notify("READY=1").unwrap());
        }
    }
}
