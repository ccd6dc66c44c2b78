//! Migration of older stored states to the records of format 3:
//! - format 1 (before issue 16): the whole state, one postcard blob, rewritten on every change
//!   ([`migrate_v1`]);
//! - format 2 (issue 16's first records): each device's groups and memberships inline in its
//!   device row, so a device could be in at most 32 groups of the daemon and a join rewrote the
//!   whole row ([`migrate_v2_row`]). Format 3 keeps one row per (device, group).

use heapless::Vec;
use zeroize::Zeroize;

use super::state::{
    DeviceRec, DeviceRecV2, LEGACY_FORMAT, LegacyState, MemberRec, Membership, Meta, STATE_FORMAT,
    V2_FORMAT,
};
use crate::keydist::retry::Retry;
use crate::keydist::store::{RowVisitor, Table, member_key};
use crate::sequence::StoreError;

/// The largest record migrated (a device or a group of format 1 or 2 is far smaller).
const RECORD_BUF: usize = 4096;
/// The most groups a device row of format 2 may list (the daemon that wrote them had 32; a
/// transaction of format 2 held at most 64).
const V2_GROUPS: usize = 64;

/// Decodes a state blob of format 1 written by a `KeyServer<_, D, G, _>` of before issue 16
/// (the daemon's: `D` = 64, `G` = 8) and hands its records to `out` as rows of the current
/// format (the counters row first, then groups, then devices with their (device, group)
/// records), for a store to write them in one transaction. A blob that does not decode, or of
/// another format, is `Err(Corrupt)`.
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
    let meta = Meta {
        format: STATE_FORMAT,
        counter_reserved: state.counter_reserved,
    };
    emit(Table::Counters, 0, &meta, &mut buf, out)?;
    for g in &state.groups {
        emit(Table::Groups, u64::from(g.group_id()), g, &mut buf, out)?;
    }
    for d in &state.devices {
        emit_device(d, &mut buf, out)?;
    }
    Ok(())
}

/// The format of a stored state, from its counters row (`None`: it does not decode). A store
/// migrates a state of format 2 with [`migrate_v2_row`]; the key server refuses any format
/// other than its own (3), a newer one included.
pub fn state_format(counters_row: &[u8]) -> Option<u8> {
    postcard::from_bytes::<Meta>(counters_row)
        .ok()
        .map(|m| m.format)
}

/// Converts one stored row of format 2 to rows of format 3, handed to `out`: the counters row
/// gets format 3; a device row becomes its device row and one (device, group) row per group
/// it may join (with its membership there, if any); a group row stays as it is (not handed
/// on). A store calls it for every counters and devices row of a state whose
/// [`state_format`] is 2 and writes what comes out in one transaction (overwriting the rows
/// of the same keys). A row that does not decode is `Err(Corrupt)`.
pub fn migrate_v2_row(
    table: Table,
    key: u64,
    value: &[u8],
    out: &mut RowVisitor<'_>,
) -> Result<(), StoreError> {
    let mut buf: Vec<u8, RECORD_BUF> = Vec::new();
    match table {
        Table::Counters => {
            let meta: Meta = postcard::from_bytes(value).map_err(|_| StoreError::Corrupt)?;
            if key != 0 || meta.format != V2_FORMAT {
                return Err(StoreError::Corrupt);
            }
            let meta = Meta {
                format: STATE_FORMAT,
                counter_reserved: meta.counter_reserved,
            };
            emit(Table::Counters, 0, &meta, &mut buf, out)
        }
        Table::Groups => Ok(()),
        Table::Devices => {
            let d: DeviceRecV2<V2_GROUPS> =
                postcard::from_bytes(value).map_err(|_| StoreError::Corrupt)?;
            if u64::from(d.id.0) != key {
                return Err(StoreError::Corrupt);
            }
            emit_device(&d, &mut buf, out)
        }
        Table::Memberships => Err(StoreError::Corrupt),
    }
}

/// Hands device `d` of format 1 or 2 to `out` as rows of format 3.
fn emit_device<const G: usize>(
    d: &DeviceRecV2<G>,
    buf: &mut Vec<u8, RECORD_BUF>,
    out: &mut RowVisitor<'_>,
) -> Result<(), StoreError> {
    let dev = DeviceRec {
        id: d.id,
        credential: d.credential.clone(),
        role: d.role,
    };
    emit(Table::Devices, u64::from(d.id.0), &dev, buf, out)?;
    // Every group it may join, and every group it is a member of (a member is admitted).
    let listed = d.groups.iter().copied();
    let extra = d
        .memberships
        .iter()
        .map(|m| m.group_id)
        .filter(|g| !d.groups.contains(g));
    for gid in listed.chain(extra) {
        let joined = d.memberships.iter().find(|m| m.group_id == gid).map(|m| {
            Membership {
                role: m.role,
                sender_id: m.sender_id,
                since: m.since,
                acked: m.acked,
                acked_epoch: m.acked_epoch,
                join_nonce: m.join_nonce,
                // Format 2 kept the nonce of the device's last join (whichever group): a
                // retransmission of a request is recognised by it. Any other nonce works as
                // "none" (a request's nonce is random): the device's last one, or zeros.
                request_nonce: d.last_join_nonce.unwrap_or_default(),
                retx: Retry::default(),
            }
        });
        let rec = MemberRec {
            device: d.id,
            group_id: gid,
            joined,
            challenge: None,
        };
        emit(Table::Memberships, member_key(d.id.0, gid), &rec, buf, out)?;
    }
    Ok(())
}

/// Encodes `value` and hands it to `out` as row (`table`, `key`); wipes the buffer after.
fn emit<V: serde::Serialize>(
    table: Table,
    key: u64,
    value: &V,
    buf: &mut Vec<u8, RECORD_BUF>,
    out: &mut RowVisitor<'_>,
) -> Result<(), StoreError> {
    buf.clear();
    let _ = buf.resize_default(RECORD_BUF);
    let n = postcard::to_slice(value, buf)
        .map(|b| b.len())
        .map_err(|_| StoreError::Corrupt)?;
    let r = out(table, key, buf.get(..n).ok_or(StoreError::Corrupt)?);
    buf.zeroize();
    r
}
