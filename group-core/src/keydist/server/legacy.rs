//! Migration from the single-blob state of format 1 (before issue 16: the whole state, one
//! postcard blob, rewritten on every change) to records.

use heapless::Vec;
use zeroize::Zeroize;

use super::state::{LEGACY_FORMAT, LegacyState, Meta, STATE_FORMAT};
use crate::keydist::store::{RowVisitor, Table};
use crate::sequence::StoreError;

/// The largest record migrated (a device or a group of format 1 is far smaller).
const RECORD_BUF: usize = 4096;

/// Decodes a state blob of format 1 written by a `KeyServer<_, D, G, _>` of before issue 16
/// (the daemon's: `D` = 64, `G` = 8) and hands its records to `out` as rows of the current
/// format (the counters row first, then groups, then devices), for a store to write them in
/// one transaction. A blob that does not decode, or of another format, is `Err(Corrupt)`.
///
/// Decoding needs the whole old state in memory (as the old server did); it runs once.
pub fn migrate_v1<const D: usize, const G: usize>(
    blob: &[u8],
    out: &mut RowVisitor<'_>,
) -> Result<(), StoreError> {
    let state: LegacyState<D, G> = postcard::from_bytes(blob).map_err(|_| StoreError::Corrupt)?;
    if state.format != LEGACY_FORMAT {
        return Err(StoreError::Corrupt);
    }
    let mut buf: Vec<u8, RECORD_BUF> = Vec::new();
    let mut emit = |table: Table,
                    key: u32,
                    value: &dyn erased::Encode,
                    buf: &mut Vec<u8, RECORD_BUF>|
     -> Result<(), StoreError> {
        buf.clear();
        let _ = buf.resize_default(RECORD_BUF);
        let n = value.encode(buf).ok_or(StoreError::Corrupt)?;
        let r = out(table, key, buf.get(..n).ok_or(StoreError::Corrupt)?);
        buf.zeroize();
        r
    };
    let meta = Meta {
        format: STATE_FORMAT,
        counter_reserved: state.counter_reserved,
    };
    emit(Table::Counters, 0, &meta, &mut buf)?;
    for g in &state.groups {
        emit(Table::Groups, g.group_id(), g, &mut buf)?;
    }
    for d in &state.devices {
        emit(Table::Devices, d.id().0, d, &mut buf)?;
    }
    Ok(())
}

/// Encoding behind a trait object (one `emit` for every record type).
mod erased {
    pub(super) trait Encode {
        /// Encodes into `buf`; returns the length.
        fn encode(&self, buf: &mut [u8]) -> Option<usize>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self, buf: &mut [u8]) -> Option<usize> {
            postcard::to_slice(self, buf).ok().map(|b| b.len())
        }
    }
}
