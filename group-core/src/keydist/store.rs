//! Durable storage of the key server's state, in records.

use heapless::Vec;

use crate::sequence::StoreError;

/// A kind of record the key server stores: one table each.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Table {
    /// The server's own row (key 0): state format and counter reservation.
    Counters,
    /// One row per group (key: group ID): spec, epochs (current and staged, with their key
    /// material), sender-ID allocation.
    Groups,
    /// One row per admitted device (key: device ID): credential and role.
    Devices,
    /// One row per (device, group) the device is admitted to (key: [`member_key`]): whether it
    /// is a member now, its role and sender ID there, since which counter. A join or a leave
    /// writes this row (and the group's), never the device's.
    Memberships,
}

/// The key of the row of (`device`, `group`) in [`Table::Memberships`]: the device ID in the
/// high 32 bits, the group ID in the low 32 (the rows of one device are contiguous).
pub const fn member_key(device: u32, group: u32) -> u64 {
    ((device as u64) << 32) | group as u64
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 4] = [
        Table::Counters,
        Table::Groups,
        Table::Devices,
        Table::Memberships,
    ];

    /// A stable name (a table's name in a database).
    pub const fn name(self) -> &'static str {
        match self {
            Table::Counters => "keyserver_counters",
            Table::Groups => "keyserver_groups",
            Table::Devices => "keyserver_devices",
            Table::Memberships => "keyserver_memberships",
        }
    }

    /// A stable one-byte code.
    pub const fn code(self) -> u8 {
        match self {
            Table::Counters => 0,
            Table::Groups => 1,
            Table::Devices => 2,
            Table::Memberships => 3,
        }
    }

    /// The table with code `c`.
    pub const fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Table::Counters),
            1 => Some(Table::Groups),
            2 => Some(Table::Devices),
            3 => Some(Table::Memberships),
            _ => None,
        }
    }
}

/// One change of a transaction: the row `key` of `table` becomes `value`, or is deleted
/// (`None`). Values are opaque bytes (postcard records, holding epoch secrets and PSKs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Row<'a> {
    /// The table.
    pub table: Table,
    /// The row's key (a device or group ID, or a [`member_key`]).
    pub key: u64,
    /// The new value, or `None` to delete the row.
    pub value: Option<&'a [u8]>,
}

/// What [`ServerStore::load`] hands each stored row to: (table, key, value).
pub type RowVisitor<'a> = dyn FnMut(Table, u64, &[u8]) -> Result<(), StoreError> + 'a;

/// Durable storage for the key server's records ([`Table`]).
///
/// Contract (as [`SequenceStore`](crate::sequence::SequenceStore)'s):
/// - `load` hands every stored row to `visit` and returns `Ok(false)` only for a store
///   commissioned empty and never written; a store that lost its state returns `Err(Missing)`
///   or `Err(Corrupt)`, and the key server then refuses to start (starting empty would reuse
///   epochs and sender IDs). An error from `visit` stops the load and is returned.
/// - `commit` applies all of its rows in one transaction and returns only once they are
///   durable; a crash at any point leaves either none or all of them. The key server calls it
///   once per state change with exactly the rows that change.
///
/// The rows hold epoch secrets and PSKs: keep them where only the key server can read them.
pub trait ServerStore {
    /// Hands every stored row to `visit`; `Ok(false)`: commissioned empty, never written.
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError>;
    /// Durably applies `rows` in one transaction.
    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError>;
}

impl<S: ServerStore + ?Sized> ServerStore for &mut S {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        (**self).load(visit)
    }
    fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
        (**self).commit(rows)
    }
}

/// Capacity of a [`MemoryServerStore`] in bytes (rows and an 11-byte header each).
pub const MEMORY_STORE_CAPACITY: usize = 16384;

/// Bytes before each row's value in a [`MemoryServerStore`]: table, key, length.
const ROW_HEADER: usize = 11;

/// In-memory store for tests and simulations: rows packed into one fixed buffer. It can
/// simulate a power loss: after [`crash_after`](Self::crash_after)`(n)`, `n` more commits
/// succeed and every later one fails, leaving the last durable state in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryServerStore {
    data: Option<Vec<u8, MEMORY_STORE_CAPACITY>>,
    saves: u64,
    saves_left: Option<u64>,
}

impl Default for MemoryServerStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The rows packed in `data`: (offset of the header, table code, key, value).
fn rows(data: &[u8]) -> impl Iterator<Item = Result<(usize, u8, u64, &[u8]), StoreError>> + '_ {
    let mut at = 0usize;
    core::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let start = at;
        let parsed = (|| {
            let h = data.get(at..at.checked_add(ROW_HEADER)?)?;
            let table = *h.first()?;
            let key = u64::from_le_bytes(h.get(1..9)?.try_into().ok()?);
            let len = usize::from(u16::from_le_bytes(h.get(9..11)?.try_into().ok()?));
            let vstart = at.checked_add(ROW_HEADER)?;
            let value = data.get(vstart..vstart.checked_add(len)?)?;
            Some((table, key, value, vstart.checked_add(len)?))
        })();
        match parsed {
            Some((table, key, value, next)) => {
                at = next;
                Some(Ok((start, table, key, value)))
            }
            None => {
                at = data.len();
                Some(Err(StoreError::Corrupt))
            }
        }
    })
}

impl MemoryServerStore {
    /// A commissioned, empty store.
    pub const fn new() -> Self {
        Self {
            data: None,
            saves: 0,
            saves_left: None,
        }
    }

    /// Lets `n` more commits succeed, then fails every later one (power loss).
    pub fn crash_after(&mut self, n: u64) {
        self.saves_left = Some(n);
    }

    /// Whether the simulated power loss happened.
    pub fn crashed(&self) -> bool {
        self.saves_left == Some(0)
    }

    /// Power is back: commits work again.
    pub fn restore_power(&mut self) {
        self.saves_left = None;
    }

    /// How many commits succeeded.
    pub fn saves(&self) -> u64 {
        self.saves
    }

    /// The stored bytes (the packed rows).
    pub fn bytes(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// Removes row (`table`, `key`) from `data`, if there.
    fn remove(data: &mut Vec<u8, MEMORY_STORE_CAPACITY>, table: u8, key: u64) {
        let found = rows(data).find_map(|r| match r {
            Ok((start, t, k, v)) if t == table && k == key => {
                Some((start, ROW_HEADER.saturating_add(v.len())))
            }
            _ => None,
        });
        if let Some((start, len)) = found {
            let end = start.saturating_add(len).min(data.len());
            data.copy_within(end.., start);
            data.truncate(data.len().saturating_sub(end.saturating_sub(start)));
        }
    }
}

impl ServerStore for MemoryServerStore {
    fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
        let Some(d) = &self.data else {
            return Ok(false);
        };
        for r in rows(d) {
            let (_, t, key, value) = r?;
            visit(Table::from_code(t).ok_or(StoreError::Corrupt)?, key, value)?;
        }
        Ok(true)
    }

    fn commit(&mut self, changes: &[Row<'_>]) -> Result<(), StoreError> {
        match self.saves_left {
            Some(0) => return Err(StoreError::Io),
            Some(n) => self.saves_left = Some(n.saturating_sub(1)),
            None => {}
        }
        // All or nothing: apply to a copy, then replace.
        let mut next = self.data.clone().unwrap_or_default();
        for row in changes {
            Self::remove(&mut next, row.table.code(), row.key);
            if let Some(v) = row.value {
                let len = u16::try_from(v.len()).map_err(|_| StoreError::Io)?;
                next.push(row.table.code()).map_err(|_| StoreError::Io)?;
                next.extend_from_slice(&row.key.to_le_bytes())
                    .map_err(|_| StoreError::Io)?;
                next.extend_from_slice(&len.to_le_bytes())
                    .map_err(|_| StoreError::Io)?;
                next.extend_from_slice(v).map_err(|_| StoreError::Io)?;
            }
        }
        self.data = Some(next);
        self.saves = self.saves.saturating_add(1);
        Ok(())
    }
}
