//! A PostgreSQL server of the test's own: `initdb` in a temporary directory, `pg_ctl start` on
//! 127.0.0.1 with a free port and its socket in that directory, stopped (immediate mode,
//! bounded) and removed when dropped. As root (CI) the server runs as the `postgres` user (or
//! `nobody`) through `runuser`, since PostgreSQL refuses to run as root.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/*/bin`, package `postgresql`, installed by
//! `.ci/run`). Without them a test is skipped with a loud message, except under `CI=true`,
//! where their absence fails the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running test database server.
pub struct Pg {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/*/bin` holding `pg_ctl`.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let b = e.path().join("bin");
            b.join("pg_ctl").exists().then_some((v, b))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Pg {
    /// Starts a server, or returns `None` (after saying so loudly) when PostgreSQL is not
    /// installed and this is not CI. Panics if it is installed and does not start.
    pub fn start(tag: &str) -> Option<Pg> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but PostgreSQL is not installed (/usr/lib/postgresql/*/bin): \
                 .ci/run's setup installs the Debian package `postgresql`"
            );
            eprintln!(
                "\n*** SKIPPED: PostgreSQL is not installed (/usr/lib/postgresql/*/bin); \
                 `apt-get install postgresql` to run this test ***\n"
            );
            return None;
        };
        let user = is_root().then(|| {
            if user_exists("postgres") {
                "postgres".to_owned()
            } else {
                "nobody".to_owned()
            }
        });
        let dir = std::env::temp_dir().join(format!("dtls-group-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(u) = &user {
            let ok = Command::new("chown")
                .args([u.as_str(), &dir.to_string_lossy()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {u} {}", dir.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg {
            dir,
            bin,
            user,
            port,
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-k {} -p {} -h 127.0.0.1 -c fsync=off -c full_page_writes=off",
            pg.dir.display(),
            pg.port
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &pg.dir.join("log").to_string_lossy(),
                "-w",
                "-t",
                "30",
                "-o",
                &opts,
                "start",
            ],
        );
        Some(pg)
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// A libpq connection string for database `db` (created with [`create_db`](Self::create_db)
    /// or `postgres`).
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=5",
            self.port
        )
    }

    /// Creates database `name`.
    pub fn create_db(&self, name: &str) {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ],
        );
    }

    /// Copies database `from` to a new database `to` (a snapshot, taken while nobody writes).
    pub fn copy_db(&self, from: &str, to: &str) {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-T",
                from,
                to,
            ],
        );
    }

    /// The server's directory (its log is `log` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let start = Instant::now();
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-t",
                "10",
                "stop",
            ])
            .output();
        if start.elapsed() > Duration::from_secs(15) {
            eprintln!("pg_ctl stop took {:?}", start.elapsed());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
