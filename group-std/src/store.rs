//! File-backed [`SequenceStore`]: reservations written ahead, fsynced, atomically replaced,
//! integrity-checked.
//!
//! File format (25 bytes): `"DGSQ"` · version `1` · flags (bit 0: holds a reservation) ·
//! epoch u16 BE · sender ID u8 · reserved_until u64 BE · 8 bytes of SHA-256 over the
//! preceding 17 bytes. A write goes to `FILE.tmp`, is fsynced, renamed over `FILE`, and the
//! directory is fsynced: a crash leaves the old or the new state. A missing file is
//! [`StoreError::Missing`] — commission the store first with [`FileSequenceStore::commission`]
//! — and a file that fails its check is [`StoreError::Corrupt`]: either way the sender refuses
//! to send until the key server gives it a new epoch or sender ID (wire.md §6).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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
    /// Opens an existing store (its state is read at [`SequenceStore::load`]).
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates a commissioned, empty store. Refuses to overwrite an existing file: that would
    /// forget reservations and let the sender reuse sequence numbers.
    pub fn commission(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists; refusing to reset a sequence store",
                    path.display()
                ),
            ));
        }
        let s = Self { path };
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
        assert_eq!(FileSequenceStore::open(&p).load(), Err(StoreError::Missing));
        let mut s = FileSequenceStore::commission(&p).unwrap();
        assert_eq!(s.load(), Ok(None));
        assert!(FileSequenceStore::commission(&p).is_err());
        let st = StoredSequence {
            epoch: Epoch(3),
            sender_id: SenderId(7),
            reserved_until: 0x1_0000_0001,
        };
        s.save(&st).unwrap();
        assert_eq!(FileSequenceStore::open(&p).load(), Ok(Some(st)));
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
}
