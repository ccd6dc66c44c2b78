//! The high-water mark of a key server on a shared database: the largest lease token and
//! state generation this server committed or observed, kept in a local file outside the
//! database. A database whose token or generation is below it was restored from an older
//! snapshot (it would hand out epochs, sender IDs and counters a second time): the server
//! refuses it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The mark and its file.
#[derive(Debug)]
pub struct HighWater {
    path: PathBuf,
    token: i64,
    generation: i64,
    /// The mark as written in the file.
    written: (i64, i64),
}

/// A database behind the mark (restored from an older snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// The database's (token, generation).
    pub database: (i64, i64),
    /// The mark's (token, generation).
    pub mark: (i64, i64),
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database is older than this key server has seen (lease token {}, generation {} \
             in the database; token {}, generation {} in the high-water file): it was restored \
             from an old snapshot and would hand out epochs, sender IDs and counters a second \
             time; refusing it",
            self.database.0, self.database.1, self.mark.0, self.mark.1
        )
    }
}

impl HighWater {
    /// Reads the mark at `path` (a missing file is a mark of zero: a new server).
    pub fn open(path: &Path) -> io::Result<Self> {
        let (token, generation) = match std::fs::read_to_string(path) {
            Ok(text) => parse(&text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "high-water file {} is not `TOKEN GENERATION`",
                        path.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (0, 0),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("high-water file {}: {e}", path.display()),
                ));
            }
        };
        Ok(Self {
            path: path.to_owned(),
            token,
            generation,
            written: (token, generation),
        })
    }

    /// The mark: (token, generation).
    pub fn mark(&self) -> (i64, i64) {
        (self.token, self.generation)
    }

    /// Checks a database's (token, generation) against the mark.
    pub fn check(&self, token: i64, generation: i64) -> Result<(), Behind> {
        if token < self.token || generation < self.generation {
            return Err(Behind {
                database: (token, generation),
                mark: self.mark(),
            });
        }
        Ok(())
    }

    /// Raises the mark to (token, generation) where they are larger, in memory only (a commit
    /// does this; [`flush`](Self::flush) writes it, at every lease renewal).
    pub fn note(&mut self, token: i64, generation: i64) {
        self.token = self.token.max(token);
        self.generation = self.generation.max(generation);
    }

    /// Writes the mark durably (a new file renamed over the old one) if it moved since the
    /// last write.
    pub fn flush(&mut self) -> io::Result<()> {
        let (t, g) = self.mark();
        if (t, g) == self.written {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{t} {g}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.written = (t, g);
        Ok(())
    }

    /// [`note`](Self::note) and [`flush`](Self::flush).
    pub fn raise(&mut self, token: i64, generation: i64) -> io::Result<()> {
        self.note(token, generation);
        self.flush()
    }
}

fn parse(text: &str) -> Option<(i64, i64)> {
    let mut w = text.split_whitespace();
    let t = w.next()?.parse().ok()?;
    let g = w.next()?.parse().ok()?;
    w.next().is_none().then_some((t, g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_only_rises_and_refuses_an_older_database() {
        let dir = std::env::temp_dir().join(format!("dtls-group-hwm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ks.hwm");
        let mut h = HighWater::open(&p).unwrap();
        assert_eq!(h.mark(), (0, 0));
        h.raise(3, 10).unwrap();
        h.note(2, 12);
        assert_eq!(h.mark(), (3, 12));
        assert_eq!(
            HighWater::open(&p).unwrap().mark(),
            (3, 10),
            "noted, not written"
        );
        h.flush().unwrap();
        let h = HighWater::open(&p).unwrap();
        assert_eq!(h.mark(), (3, 12));
        assert!(h.check(3, 12).is_ok());
        assert!(h.check(4, 20).is_ok());
        assert!(h.check(3, 11).is_err(), "generation behind");
        assert!(h.check(2, 40).is_err(), "token behind");
        std::fs::write(&p, "nonsense").unwrap();
        assert!(HighWater::open(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
