//! A poll-style group socket on smoltcp: the group layer over a UDP socket of a bare-metal
//! network stack.
//!
//! [`GroupSocket`] owns a [`Group`] and its [`SequenceStore`] and refers to a smoltcp UDP socket
//! the caller created (with the caller's buffers) and added to its [`SocketSet`]. It contains no
//! protocol logic: sealing, opening, replay and counters are the core's.
//!
//! - [`join`](GroupSocket::join) binds the UDP socket to the group's port and joins the
//!   multicast group on the [`Interface`] (IGMP for IPv4, MLD for IPv6).
//! - [`send`](GroupSocket::send) seals one record into the caller's scratch buffer and queues
//!   it as one datagram to the group.
//! - [`recv`](GroupSocket::recv) takes one datagram sent to the group into the caller's
//!   buffer and returns a [`Datagram`]: an iterator that opens its records one by one, in
//!   place, through the core (a datagram may carry several records).
//! - The core's counters and events, plus this adapter's own [`SocketStats`].
//!
//! Between calls the caller runs `Interface::poll` as usual. Timestamps for the core are
//! milliseconds ([`core_instant`] converts smoltcp's).

use core::fmt;

use group_core::counters::{Counters, Event};
use group_core::group::{Delivery, Group};
use group_core::record::{OpenError, SealError};
use group_core::sequence::SequenceStore;
use group_core::time::Instant;
use group_core::wire;
use smoltcp::iface::{Interface, MulticastError, SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};

/// Converts a smoltcp timestamp to the core's millisecond clock (negative times are 0).
pub fn core_instant(t: smoltcp::time::Instant) -> Instant {
    Instant(u64::try_from(t.total_millis()).unwrap_or(0))
}

/// Why joining failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The handle is not a UDP socket of this socket set.
    NoSocket,
    /// The UDP socket refused to bind to the group's port.
    Bind(udp::BindError),
    /// The interface refused the group (not a multicast address, or its group table is full).
    Join(MulticastError),
}

/// Why a send failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The handle is not a UDP socket of this socket set.
    NoSocket,
    /// The UDP socket's send queue is full; nothing was sealed. Poll the interface and retry.
    QueueFull,
    /// The core refused to seal (no epoch, not a sender, sequence state lost, ...).
    Seal(SealError),
    /// The record was sealed (its sequence number is spent) but the UDP socket refused it.
    Socket(udp::SendError),
}

/// Why a receive failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// The handle is not a UDP socket of this socket set.
    NoSocket,
    /// A datagram was larger than the caller's buffer; it was dropped and counted.
    Truncated,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::NoSocket => f.write_str("not a UDP socket of this set"),
            JoinError::Bind(e) => write!(f, "bind: {e}"),
            JoinError::Join(e) => write!(f, "join: {e}"),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NoSocket => f.write_str("not a UDP socket of this set"),
            SendError::QueueFull => f.write_str("UDP send queue full"),
            SendError::Seal(e) => write!(f, "seal: {e}"),
            SendError::Socket(e) => write!(f, "udp send: {e}"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::NoSocket => f.write_str("not a UDP socket of this set"),
            RecvError::Truncated => f.write_str("datagram larger than the buffer"),
        }
    }
}

/// The adapter's own counters (the core's are in [`GroupSocket::counters`]). All saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketStats {
    /// Datagrams queued to the group.
    pub datagrams_sent: u64,
    /// Sends refused (queue full, seal error, socket error).
    pub send_failures: u64,
    /// Datagrams to the group handed to the caller.
    pub datagrams_received: u64,
    /// Datagrams on the group's port but not sent to the group's address; dropped.
    pub not_to_group: u64,
    /// Datagrams larger than the caller's buffer; dropped.
    pub truncated: u64,
}

pub(crate) fn bump(c: &mut u64) {
    *c = c.saturating_add(1);
}

pub(crate) fn udp_socket<'s, 'a>(
    sockets: &'s mut SocketSet<'a>,
    handle: SocketHandle,
) -> Option<&'s mut udp::Socket<'a>> {
    sockets
        .iter_mut()
        .find(|(h, _)| *h == handle)
        .and_then(|(_, s)| udp::Socket::downcast_mut(s))
}

/// The socket-independent half of a group socket, shared by the poll-style [`GroupSocket`] and
/// the async `embassy::AsyncGroupSocket` (feature `embassy`): the [`Group`] with `SENDERS`
/// sender states and `32 × WORDS`-record windows, its sequence store `S`, the group's
/// endpoint, and the adapter's counters. It turns plaintext into one datagram and a received
/// datagram into opened records; the socket types only move bytes.
pub struct GroupEndpoint<S, const SENDERS: usize = 16, const WORDS: usize = 2> {
    group: Group<SENDERS, WORDS>,
    store: S,
    endpoint: IpEndpoint,
    stats: SocketStats,
}

impl<S, const SENDERS: usize, const WORDS: usize> fmt::Debug for GroupEndpoint<S, SENDERS, WORDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupEndpoint")
            .field("group", &self.group)
            .field("endpoint", &self.endpoint)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> GroupEndpoint<S, SENDERS, WORDS> {
    /// The group at `endpoint` (multicast address and port).
    pub fn new(group: Group<SENDERS, WORDS>, store: S, endpoint: IpEndpoint) -> Self {
        Self {
            group,
            store,
            endpoint,
            stats: SocketStats::default(),
        }
    }

    /// Length of the datagram that carries `plaintext_len` bytes in the current epoch.
    pub fn datagram_len(&self, plaintext_len: usize) -> Result<usize, SealError> {
        self.group.record_len(plaintext_len)
    }

    /// Seals `plaintext` as this node's next record into `scratch`; returns the datagram.
    /// The sequence number is reserved in the store first.
    pub fn seal<'b>(
        &mut self,
        now: Instant,
        plaintext: &[u8],
        scratch: &'b mut [u8],
    ) -> Result<&'b [u8], SealError> {
        let len = self.group.seal(now, &mut self.store, plaintext, scratch)?;
        scratch.get(..len).ok_or(SealError::BufferTooSmall)
    }

    /// Whether a datagram whose destination address was `local` is group traffic; counts it
    /// (`not_to_group`) when it is not, and the caller then drops it.
    pub fn is_group_traffic(&mut self, local: Option<IpAddress>) -> bool {
        let ours = local == Some(self.endpoint.addr);
        if !ours {
            bump(&mut self.stats.not_to_group);
        }
        ours
    }

    /// Takes a received group datagram: an iterator that opens its records in place.
    pub fn open_datagram<'b>(
        &'b mut self,
        now: Instant,
        from: IpEndpoint,
        datagram: &'b mut [u8],
    ) -> Datagram<'b, Group<SENDERS, WORDS>> {
        bump(&mut self.stats.datagrams_received);
        Datagram::new(&mut self.group, now, from, datagram)
    }

    /// Counts the outcome of a send.
    pub fn note_send<T, E>(&mut self, r: &Result<T, E>) {
        match r {
            Ok(_) => bump(&mut self.stats.datagrams_sent),
            Err(_) => bump(&mut self.stats.send_failures),
        }
    }

    /// Counts a datagram dropped because it did not fit the caller's buffer.
    pub fn note_truncated(&mut self) {
        bump(&mut self.stats.truncated);
    }

    /// Runs the core's timers (retiring a previous epoch after its grace period).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.group.handle_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.group.poll_timeout()
    }

    /// The core's next event (rekey needed, sender-ID clash, ...).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.group.poll_event()
    }

    /// The core's counters (records accepted, sealed, dropped by reason).
    pub fn counters(&self) -> &Counters {
        self.group.counters()
    }

    /// The adapter's counters.
    pub fn stats(&self) -> SocketStats {
        self.stats
    }

    /// The group context (epochs, senders).
    pub fn group(&self) -> &Group<SENDERS, WORDS> {
        &self.group
    }

    /// The group context, to install epochs and keys from key distribution.
    pub fn group_mut(&mut self) -> &mut Group<SENDERS, WORDS> {
        &mut self.group
    }

    /// The sequence store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The group's multicast address and port.
    pub fn endpoint(&self) -> IpEndpoint {
        self.endpoint
    }

    /// Gives back the group context and the store.
    pub fn into_parts(self) -> (Group<SENDERS, WORDS>, S) {
        (self.group, self.store)
    }
}

/// A group member on a smoltcp interface, poll style: a [`GroupEndpoint`] and the handle of a
/// UDP socket in the caller's [`SocketSet`].
pub struct GroupSocket<S, const SENDERS: usize = 16, const WORDS: usize = 2> {
    core: GroupEndpoint<S, SENDERS, WORDS>,
    handle: SocketHandle,
}

impl<S, const SENDERS: usize, const WORDS: usize> fmt::Debug for GroupSocket<S, SENDERS, WORDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSocket")
            .field("core", &self.core)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> GroupSocket<S, SENDERS, WORDS> {
    /// A group socket for the group at `endpoint` (multicast address and port), over the UDP
    /// socket `handle`.
    pub fn new(
        group: Group<SENDERS, WORDS>,
        store: S,
        handle: SocketHandle,
        endpoint: IpEndpoint,
    ) -> Self {
        Self {
            core: GroupEndpoint::new(group, store, endpoint),
            handle,
        }
    }

    /// Binds the UDP socket to the group's port (if it is not bound yet) and joins the
    /// multicast group on `iface`. Call `iface.poll` afterwards to send the membership report.
    pub fn join(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Result<(), JoinError> {
        let socket = udp_socket(sockets, self.handle).ok_or(JoinError::NoSocket)?;
        if !socket.is_open() {
            socket
                .bind(self.core.endpoint.port)
                .map_err(JoinError::Bind)?;
        }
        iface
            .join_multicast_group(self.core.endpoint.addr)
            .map_err(JoinError::Join)
    }

    /// Leaves the multicast group on `iface` (the socket stays bound).
    pub fn leave(&mut self, iface: &mut Interface) -> Result<(), JoinError> {
        iface
            .leave_multicast_group(self.core.endpoint.addr)
            .map_err(JoinError::Join)
    }

    /// Seals `plaintext` as this node's next record into `scratch` and queues it to the group.
    /// Returns the datagram length. The sequence number is reserved in the store first.
    pub fn send(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        plaintext: &[u8],
        scratch: &mut [u8],
    ) -> Result<usize, SendError> {
        let r = self.send_inner(sockets, now, plaintext, scratch);
        self.core.note_send(&r);
        r
    }

    fn send_inner(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        plaintext: &[u8],
        scratch: &mut [u8],
    ) -> Result<usize, SendError> {
        let socket = udp_socket(sockets, self.handle).ok_or(SendError::NoSocket)?;
        let len = self
            .core
            .datagram_len(plaintext.len())
            .map_err(SendError::Seal)?;
        if !socket.can_send() || socket.payload_send_capacity() < len {
            return Err(SendError::QueueFull);
        }
        let endpoint = self.core.endpoint;
        let datagram = self
            .core
            .seal(now, plaintext, scratch)
            .map_err(SendError::Seal)?;
        socket
            .send_slice(datagram, endpoint)
            .map_err(SendError::Socket)?;
        Ok(datagram.len())
    }

    /// Takes the next datagram sent to the group into `buf` and returns it as an iterator over
    /// its opened records; `Ok(None)` when nothing is queued. Datagrams to other addresses on
    /// the same port are dropped and counted. Records not pulled from the iterator are
    /// discarded unopened.
    pub fn recv<'b>(
        &'b mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        buf: &'b mut [u8],
    ) -> Result<Option<Datagram<'b, Group<SENDERS, WORDS>>>, RecvError> {
        let socket = udp_socket(sockets, self.handle).ok_or(RecvError::NoSocket)?;
        loop {
            let (n, meta) = match socket.recv_slice(buf) {
                Ok(r) => r,
                Err(udp::RecvError::Exhausted) => return Ok(None),
                Err(udp::RecvError::Truncated) => {
                    self.core.note_truncated();
                    return Err(RecvError::Truncated);
                }
            };
            if !self.core.is_group_traffic(meta.local_address) {
                continue;
            }
            let datagram = buf.get_mut(..n).unwrap_or_default();
            return Ok(Some(self.core.open_datagram(now, meta.endpoint, datagram)));
        }
    }

    /// The shared half (group, store, counters).
    pub fn core(&self) -> &GroupEndpoint<S, SENDERS, WORDS> {
        &self.core
    }

    /// The shared half, mutable.
    pub fn core_mut(&mut self) -> &mut GroupEndpoint<S, SENDERS, WORDS> {
        &mut self.core
    }

    /// Runs the core's timers (retiring a previous epoch after its grace period).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// The core's next event (rekey needed, sender-ID clash, ...).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    /// The core's counters (records accepted, sealed, dropped by reason).
    pub fn counters(&self) -> &Counters {
        self.core.counters()
    }

    /// The adapter's counters.
    pub fn stats(&self) -> SocketStats {
        self.core.stats()
    }

    /// The group context (epochs, senders).
    pub fn group(&self) -> &Group<SENDERS, WORDS> {
        self.core.group()
    }

    /// The group context, to install epochs and keys from key distribution.
    pub fn group_mut(&mut self) -> &mut Group<SENDERS, WORDS> {
        self.core.group_mut()
    }

    /// The sequence store.
    pub fn store_mut(&mut self) -> &mut S {
        self.core.store_mut()
    }

    /// The UDP socket's handle.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// The group's multicast address and port.
    pub fn endpoint(&self) -> IpEndpoint {
        self.core.endpoint()
    }

    /// The group's multicast address.
    pub fn group_address(&self) -> IpAddress {
        self.core.endpoint().addr
    }

    /// Gives back the group context and the store.
    pub fn into_parts(self) -> (Group<SENDERS, WORDS>, S) {
        self.core.into_parts()
    }
}

/// What opens the records of a received datagram: a [`Group`], or a key-distribution
/// [`group_core::keydist::Member`] (which holds its group).
pub trait OpenRecords {
    /// Opens one record in place (see [`Group::open`]).
    fn open_record<'a>(
        &mut self,
        now: Instant,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError>;
}

impl<const SENDERS: usize, const WORDS: usize> OpenRecords for Group<SENDERS, WORDS> {
    fn open_record<'a>(
        &mut self,
        now: Instant,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.open(now, record)
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> OpenRecords
    for group_core::keydist::Member<S, SENDERS, WORDS>
{
    fn open_record<'a>(
        &mut self,
        now: Instant,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.open(now, record)
    }
}

/// One received datagram: an iterator that opens its records in place, in order. Each item is
/// a delivered record or the reason it was dropped (already counted by the core). Bytes that
/// do not parse as a record end the datagram, counted as malformed.
pub struct Datagram<'b, O: ?Sized> {
    opener: &'b mut O,
    rest: &'b mut [u8],
    now: Instant,
    from: IpEndpoint,
    done: bool,
}

impl<O: ?Sized> fmt::Debug for Datagram<'_, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("from", &self.from)
            .field("remaining", &self.rest.len())
            .finish_non_exhaustive()
    }
}

impl<'b, O: OpenRecords + ?Sized> Datagram<'b, O> {
    /// A datagram whose records `opener` opens.
    pub fn new(opener: &'b mut O, now: Instant, from: IpEndpoint, datagram: &'b mut [u8]) -> Self {
        Self {
            opener,
            rest: datagram,
            now,
            from,
            done: false,
        }
    }

    /// Where the datagram came from (not authenticated: any host can send to the group).
    pub fn from(&self) -> IpEndpoint {
        self.from
    }
}

impl<'b, O: OpenRecords + ?Sized> Iterator for Datagram<'b, O> {
    type Item = Result<Delivery<'b>, OpenError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        if wire::split_record(rest).is_err() {
            // Not a record: the core counts it as malformed; nothing after it can be framed.
            self.done = true;
            return Some(self.opener.open_record(self.now, rest));
        }
        match wire::split_record_mut(rest) {
            Ok((record, tail)) => {
                self.rest = tail;
                Some(self.opener.open_record(self.now, record))
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }
}
