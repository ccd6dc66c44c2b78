//! A group member on a real socket: a [`Group`] driven by a [`MulticastSocket`], a clock and
//! a [`SequenceStore`]. Sending seals and sends; receiving opens every record of each
//! datagram, drops and counts anything bad, and never stops on bad input.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use group_core::group::{Delivery, Group};
use group_core::record::{OpenError, SealError};
use group_core::sequence::SequenceStore;
use group_core::time::Instant;
use group_core::wire::{self, Epoch, SenderId};

use crate::net::MulticastSocket;

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

/// Why sending failed.
#[derive(Debug)]
pub enum SendError {
    /// The record layer refused (no epoch, lost sequence state, ...).
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

/// Opens every record of one datagram with `open` (a group's or a member's `open`): records
/// are delivered or dropped one by one; bytes that are not a record are handed to `open` once
/// (so they are counted as malformed) and end the walk.
pub fn open_datagram<F>(
    datagram: &mut [u8],
    from: SocketAddr,
    mut open: F,
) -> (Vec<Received>, Vec<OpenError>)
where
    F: for<'r> FnMut(&'r mut [u8]) -> Result<Delivery<'r>, OpenError>,
{
    let mut delivered = Vec::new();
    let mut dropped = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        if wire::split_record(rest).is_err() {
            if let Err(e) = open(rest) {
                dropped.push(e);
            }
            break;
        }
        let Ok((record, tail)) = wire::split_record_mut(rest) else {
            break;
        };
        match open(record) {
            Ok(d) => delivered.push(Received {
                sender_id: d.sender_id,
                epoch: d.epoch,
                seq: d.seq,
                plaintext: d.plaintext.to_vec(),
                from,
            }),
            Err(e) => dropped.push(e),
        }
        rest = tail;
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

    /// Seals `plaintext` as one record and sends it as one datagram. Returns the sealed record.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SendError> {
        let now = self.clock.now();
        let len = self
            .group
            .seal(now, &mut self.store, plaintext, &mut self.buf)
            .map_err(SendError::Seal)?;
        let record = self.buf.get(..len).unwrap_or(&[]).to_vec();
        self.socket.send(&record).map_err(SendError::Io)?;
        Ok(record)
    }

    /// Waits up to the socket's read timeout for one datagram and opens every record in it.
    /// Bad records are dropped and counted (see [`Group::counters`]); the drop reasons are
    /// returned beside the deliveries for logging. `Ok` with both empty means a timeout.
    pub fn recv(&mut self) -> io::Result<(Vec<Received>, Vec<OpenError>)> {
        let Some((n, from)) = self.socket.recv(&mut self.buf)? else {
            self.group.handle_timeout(self.clock.now());
            return Ok((Vec::new(), Vec::new()));
        };
        let now = self.clock.now();
        let group = &mut self.group;
        Ok(open_datagram(
            self.buf.get_mut(..n).unwrap_or(&mut []),
            from,
            |record| group.open(now, record),
        ))
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
