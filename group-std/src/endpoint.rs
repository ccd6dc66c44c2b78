//! A group member on a real socket: a [`Group`] driven by a [`MulticastSocket`], a clock and
//! a [`SequenceStore`]. Sending seals and sends; receiving opens every record of each
//! datagram, drops and counts anything bad, and never stops on bad input.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use group_core::datagram::Records;
use group_core::group::{Delivery, Group};
use group_core::record::{OpenError, SealError};
use group_core::sequence::SequenceStore;
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

use crate::net::{MulticastSocket, SEND_BATCH};

/// Largest datagram the endpoint reads.
pub const MAX_DATAGRAM: usize = 65_535;

/// A monotonic clock in the core's terms: milliseconds since the clock was made.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// Starts a clock at 0.
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }

    /// Now, in the core's terms.
    pub fn now(&self) -> Instant {
        Instant(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// A record delivered from the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Sender ID.
    pub sender_id: SenderId,
    /// Epoch.
    pub epoch: Epoch,
    /// Sequence number.
    pub seq: u64,
    /// Plaintext.
    pub plaintext: Vec<u8>,
    /// Source address of the datagram.
    pub from: SocketAddr,
}

impl Received {
    /// An owned copy of a delivered record from `from`.
    pub fn new(d: &Delivery<'_>, from: SocketAddr) -> Self {
        Self {
            sender_id: d.sender_id,
            epoch: d.epoch,
            seq: d.seq,
            plaintext: d.plaintext.to_vec(),
            from,
        }
    }
}

/// Why sending failed (an endpoint's or a member's send).
#[derive(Debug)]
pub enum SendError {
    /// The record layer refused (no epoch, not joined, no sender ID, lost sequence state, ...).
    Seal(SealError),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Seal(e) => write!(f, "seal: {e}"),
            SendError::Io(e) => write!(f, "send: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Owned copies of what [`Group::open_datagram`] (or a member's) delivered from `from`, beside
/// the reasons of the records it dropped: the convenient form of [`GroupEndpoint::recv`], for
/// callers that keep the plaintexts. [`GroupEndpoint::recv_datagram`] copies nothing.
pub fn collect_records(from: SocketAddr, records: Records<'_>) -> (Vec<Received>, Vec<OpenError>) {
    let mut delivered = Vec::new();
    let mut dropped = Vec::new();
    for r in records {
        match r {
            Ok(d) => delivered.push(Received::new(&d, from)),
            Err(e) => dropped.push(e),
        }
    }
    (delivered, dropped)
}

/// A group member bound to a multicast socket.
pub struct GroupEndpoint<S: SequenceStore, const N: usize = 16, const W: usize = 2> {
    socket: MulticastSocket,
    group: Group<N, W>,
    store: S,
    clock: Clock,
    buf: Vec<u8>,
    /// The records of one [`send_records`](Self::send_records) batch, back to back (grows to
    /// the largest batch, then is reused).
    batch: Vec<u8>,
}

impl<S: SequenceStore, const N: usize, const W: usize> GroupEndpoint<S, N, W> {
    /// Wraps a configured group, its socket and its sequence store.
    pub fn new(socket: MulticastSocket, group: Group<N, W>, store: S, clock: Clock) -> Self {
        Self {
            socket,
            group,
            store,
            clock,
            buf: vec![0; MAX_DATAGRAM],
            batch: Vec::new(),
        }
    }

    /// The group context (counters, events, epochs).
    pub fn group(&self) -> &Group<N, W> {
        &self.group
    }

    /// The group context, for key installation.
    pub fn group_mut(&mut self) -> &mut Group<N, W> {
        &mut self.group
    }

    /// The socket.
    pub fn socket(&self) -> &MulticastSocket {
        &self.socket
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The sequence store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Seals `plaintext` as one record and sends it as one datagram. Returns the sealed record
    /// (a copy: [`send_record`](Self::send_record) allocates nothing).
    pub fn send(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SendError> {
        self.send_record(plaintext).map(<[u8]>::to_vec)
    }

    /// Seals `plaintext` as one record into the endpoint's own buffer and sends it as one
    /// datagram; returns the sealed record, borrowed from that buffer (no allocation).
    pub fn send_record(&mut self, plaintext: &[u8]) -> Result<&[u8], SendError> {
        let now = self.clock.now();
        let len = self
            .group
            .seal(now, &mut self.store, plaintext, &mut self.buf)
            .map_err(SendError::Seal)?;
        let record = self.buf.get(..len).unwrap_or(&[]);
        self.socket.send(record).map_err(SendError::Io)?;
        Ok(record)
    }

    /// Seals each of `plaintexts` as one record and sends each as one datagram, handing the
    /// kernel up to [`SEND_BATCH`] datagrams per system call
    /// ([`MulticastSocket::send_many`]: `sendmmsg` on Linux). Returns how many were sent. Every
    /// record is sealed (its sequence number spent) before its batch is sent, so a failed send
    /// loses records, never reuses a nonce; a refused seal sends the records sealed before it
    /// and returns the error. No allocation in steady state (the batch buffer is reused).
    pub fn send_records(&mut self, plaintexts: &[&[u8]]) -> Result<usize, SendError> {
        let mut sent = 0usize;
        for chunk in plaintexts.chunks(SEND_BATCH) {
            let now = self.clock.now();
            let (ends, sealed, refused) = seal_batch(
                &mut self.group,
                &mut self.store,
                now,
                chunk,
                &mut self.batch,
            );
            let datagrams = batch_datagrams(&self.batch, &ends);
            let n = self
                .socket
                .send_many(datagrams.get(..sealed).unwrap_or(&[]))
                .map_err(SendError::Io)?;
            sent = sent.saturating_add(n);
            if let Some(e) = refused {
                return Err(SendError::Seal(e));
            }
            if n < sealed {
                break;
            }
        }
        Ok(sent)
    }

    /// Waits up to the socket's read timeout for one datagram and returns where it came from
    /// and its records, opened one by one in place as the iterator is pulled
    /// ([`Group::open_datagram`]): each item is a [`Delivery`] whose plaintext lies in the
    /// endpoint's receive buffer (nothing is copied), or the reason the record was dropped
    /// (already counted, see [`Group::counters`]). `Ok(None)` means a timeout. Records not
    /// pulled from the iterator are discarded unopened.
    pub fn recv_datagram(&mut self) -> io::Result<Option<(SocketAddr, Records<'_>)>> {
        let Some((n, from)) = self.socket.recv(&mut self.buf)? else {
            self.group.handle_timeout(self.clock.now());
            return Ok(None);
        };
        let now = self.clock.now();
        let datagram = self.buf.get_mut(..n).unwrap_or(&mut []);
        Ok(Some((from, self.group.open_datagram(now, datagram))))
    }

    /// Waits up to the socket's read timeout for one datagram and opens every record in it
    /// ([`recv_datagram`](Self::recv_datagram), with owned copies of the plaintexts). Bad
    /// records are dropped and counted (see [`Group::counters`]); the drop reasons are
    /// returned beside the deliveries for logging. `Ok` with both empty means a timeout.
    pub fn recv(&mut self) -> io::Result<(Vec<Received>, Vec<OpenError>)> {
        Ok(match self.recv_datagram()? {
            Some((from, records)) => collect_records(from, records),
            None => (Vec::new(), Vec::new()),
        })
    }

    /// Receives until `count` records were delivered or `timeout` passed.
    pub fn recv_many(&mut self, count: usize, timeout: Duration) -> io::Result<Vec<Received>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < count && std::time::Instant::now() < deadline {
            let (d, _) = self.recv()?;
            out.extend(d);
        }
        Ok(out)
    }
}

/// Seals `chunk` (at most [`SEND_BATCH`] plaintexts) into `batch`, back to back; returns where
/// each record ends, how many were sealed, and the error that stopped the sealing, if any.
pub(crate) fn seal_batch<S: SequenceStore, const N: usize, const W: usize>(
    group: &mut Group<N, W>,
    store: &mut S,
    now: Instant,
    chunk: &[&[u8]],
    batch: &mut Vec<u8>,
) -> ([usize; SEND_BATCH], usize, Option<SealError>) {
    let need: usize = chunk
        .iter()
        .map(|p| group.record_len(p.len()).unwrap_or(0))
        .sum();
    if batch.len() < need {
        batch.resize(need, 0);
    }
    let mut ends = [0usize; SEND_BATCH];
    let mut sealed = 0usize;
    let mut at = 0usize;
    for (p, end) in chunk.iter().zip(ends.iter_mut()) {
        let out = batch.get_mut(at..).unwrap_or(&mut []);
        match group.seal(now, store, p, out) {
            Ok(len) => {
                at = at.saturating_add(len);
                *end = at;
                sealed += 1;
            }
            Err(e) => return (ends, sealed, Some(e)),
        }
    }
    (ends, sealed, None)
}

/// The records of a sealed batch, as datagrams (entries past the sealed ones are empty).
pub(crate) fn batch_datagrams<'a>(
    batch: &'a [u8],
    ends: &[usize; SEND_BATCH],
) -> [&'a [u8]; SEND_BATCH] {
    let mut start = 0usize;
    ends.map(|end| {
        let d = batch.get(start..end).unwrap_or(&[]);
        start = end.max(start);
        d
    })
}
