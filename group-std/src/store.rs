//! File-backed [`SequenceStore`]: reservations written ahead, fsynced, atomically replaced,
//! integrity-checked.
//!
//! File format (25 bytes): `"DGSQ"` · version `1` · flags (bit 0: holds a reservation) ·
//! epoch u16 BE · sender ID u8 · reserved_until u64 BE · 8 bytes of SHA-256 over the
//! preceding 17 bytes. A write goes to `FILE.tmp`, is fsynced, renamed over `FILE`, and the
//! directory is fsynced: a crash leaves the old or the new state. A missing file is
//! [`StoreError::Missing`] — commission the store first with [`FileSequenceStore::commission`]
//! — and a file that fails its check is [`StoreError::Corrupt`]: either way the sender refuses
//! to send until the key server gives it a new epoch or sender ID (wire-format.md §7).
//!
//! One process per store: two senders on one file would reserve overlapping ranges under the
//! same epoch and sender ID (nonce reuse). [`FileSequenceStore::open`] and
//! [`FileSequenceStore::commission`] take an exclusive OS lock (`flock`, through
//! [`File::try_lock`]) on `FILE.lock` and hold it for the store's life; the holder's pid is
//! written into that file so that a second opener's error names it. The lock is on a separate
//! file because every save replaces `FILE` by a rename (a lock on `FILE` would stay on the old
//! inode). The lock file is left in place when the store is closed: removing it could let two
//! processes lock two different files of the same name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use group_core::sequence::{SequenceStore, StoreError, StoredSequence};
use group_core::wire::{Epoch, SenderId};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"DGSQ";
const VERSION: u8 = 1;
const LEN: usize = 25;

/// A sequence store in one file.
#[derive(Debug)]
pub struct FileSequenceStore {
    path: PathBuf,
    /// `FILE.lock`, exclusively locked for as long as this value lives.
    _lock: File,
}

/// `FILE.lock` for the store `FILE`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    p.into()
}

/// Takes the store's lock, or says who holds it.
fn lock(path: &Path) -> io::Result<File> {
    let lp = lock_path(path);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lp)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lp.display())))?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = f
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse::<u32>().ok())
                .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "sequence store {} is in use by another process ({holder}, lock {}): \
                     two senders on one store would reuse nonces",
                    path.display(),
                    lp.display()
                ),
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(io::Error::new(e.kind(), format!("{}: {e}", lp.display())))
        }
    }
}

fn encode(state: Option<&StoredSequence>) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4] = VERSION;
    if let Some(s) = state {
        b[5] = 1;
        b[6..8].copy_from_slice(&s.epoch.0.to_be_bytes());
        b[8] = s.sender_id.0;
        b[9..17].copy_from_slice(&s.reserved_until.to_be_bytes());
    }
    let d = Sha256::digest(&b[..17]);
    b[17..25].copy_from_slice(&d[..8]);
    b
}

fn decode(b: &[u8]) -> Result<Option<StoredSequence>, StoreError> {
    let b: &[u8; LEN] = b.try_into().map_err(|_| StoreError::Corrupt)?;
    let d = Sha256::digest(&b[..17]);
    if &b[..4] != MAGIC || b[4] != VERSION || b[17..25] != d[..8] {
        return Err(StoreError::Corrupt);
    }
    match b[5] {
        0 => Ok(None),
        1 => Ok(Some(StoredSequence {
            epoch: Epoch(u16::from_be_bytes([b[6], b[7]])),
            sender_id: SenderId(b[8]),
            reserved_until: u64::from_be_bytes([
                b[9], b[10], b[11], b[12], b[13], b[14], b[15], b[16],
            ]),
        })),
        _ => Err(StoreError::Corrupt),
    }
}

impl FileSequenceStore {
    /// Opens a store (its state is read at [`SequenceStore::load`]; a missing file is then
    /// [`StoreError::Missing`]) and locks it for this value's life. Fails if another open
    /// store (in this or another process) holds the lock; the error names the holder's pid.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let lock = lock(&path)?;
        Ok(Self { path, _lock: lock })
    }

    /// Creates a commissioned, empty store. Refuses to overwrite an existing file: that would
    /// forget reservations and let the sender reuse sequence numbers.
    pub fn commission(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let lock = lock(&path)?;
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists; refusing to reset a sequence store",
                    path.display()
                ),
            ));
        }
        let s = Self { path, _lock: lock };
        s.write_atomic(&encode(None))?;
        Ok(s)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_atomic(&self, bytes: &[u8]) -> io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl SequenceStore for FileSequenceStore {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        match fs::read(&self.path) {
            Ok(b) => decode(&b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Missing),
            Err(_) => Err(StoreError::Io),
        }
    }

    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        self.write_atomic(&encode(Some(state)))
            .map_err(|_| StoreError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("dtls-group-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_missing_and_corrupt() {
        let d = tmpdir("rt");
        let p = d.join("seq");
        assert_eq!(
            FileSequenceStore::open(&p).unwrap().load(),
            Err(StoreError::Missing)
        );
        let mut s = FileSequenceStore::commission(&p).unwrap();
        assert_eq!(s.load(), Ok(None));
        assert!(FileSequenceStore::commission(&p).is_err());
        let st = StoredSequence {
            epoch: Epoch(3),
            sender_id: SenderId(7),
            reserved_until: 0x1_0000_0001,
        };
        s.save(&st).unwrap();
        drop(s);
        assert_eq!(FileSequenceStore::open(&p).unwrap().load(), Ok(Some(st)));
        let mut s = FileSequenceStore::open(&p).unwrap();
        // Every single-bit corruption is detected.
        let good = fs::read(&p).unwrap();
        for i in 0..good.len() * 8 {
            let mut b = good.clone();
            b[i / 8] ^= 1 << (i % 8);
            fs::write(&p, &b).unwrap();
            assert_eq!(s.load(), Err(StoreError::Corrupt), "bit {i}");
        }
        fs::write(&p, &good[..10]).unwrap();
        assert_eq!(s.load(), Err(StoreError::Corrupt));
        fs::remove_file(&p).unwrap();
        assert_eq!(s.load(), Err(StoreError::Missing));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_store_is_open_once_and_the_error_names_the_holder() {
        let d = tmpdir("lock");
        let p = d.join("seq");
        let s = FileSequenceStore::commission(&p).unwrap();
        let e = FileSequenceStore::open(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let msg = e.to_string();
        assert!(msg.contains("in use"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        // Commissioning over a held store is refused by the lock too.
        assert!(FileSequenceStore::commission(&p).is_err());
        drop(s);
        // Released with the store: the next opener gets it.
        let mut again = FileSequenceStore::open(&p).unwrap();
        assert_eq!(again.load(), Ok(None));
        assert!(FileSequenceStore::open(&p).is_err());
        drop(again);
        fs::remove_dir_all(&d).unwrap();
    }
}
