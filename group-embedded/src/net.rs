//! A poll-style group socket on smoltcp: the group layer over a UDP socket of a bare-metal
//! network stack.
//!
//! [`RecordSocket`] drives a [`Driven`]: a [`Group`] with its [`SequenceStore`]
//! ([`GroupWithStore`]; [`GroupSocket`] is that socket) or a key-distribution [`Member`] (the
//! group half of [`MemberSocket`](crate::member::MemberSocket)). It refers to a smoltcp UDP
//! socket the caller created (with the caller's buffers) and added to its [`SocketSet`], and
//! contains no protocol logic: sealing, opening, replay and counters are the core's.
//!
//! - [`join`](GroupSocket::join) binds the UDP socket to the group's port and joins the
//!   multicast group on the [`Interface`] (IGMP for IPv4, MLD for IPv6).
//! - [`send`](GroupSocket::send) seals one record into the caller's scratch buffer and queues
//!   it as one datagram to the group.
//! - [`recv`](GroupSocket::recv) takes one datagram sent to the group into the caller's
//!   buffer and returns a [`Datagram`]: an iterator that opens its records one by one, in
//!   place, through the core ([`Group::open_datagram`]; a datagram may carry several records).
//! - The core's counters and events, plus this adapter's own [`SocketStats`].
//!
//! Between calls the caller runs `Interface::poll` as usual. Timestamps for the core are
//! milliseconds ([`core_instant`] converts smoltcp's).

use core::fmt;

use group_core::counters::{Counters, Event};
use group_core::datagram::Records;
use group_core::group::{Delivery, Group};
use group_core::keydist::Member;
use group_core::record::{OpenError, SealError};
use group_core::sequence::SequenceStore;
use group_core::time::Instant;
use smoltcp::iface::{Config, Interface, MulticastError, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{AnySocket, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

/// An Ethernet interface with one IP address, as a device's boot code sets it up before its
/// group socket: hardware address `mac`, `address` (with its prefix), `random_seed` for
/// smoltcp's ephemeral ports and identifiers (give each device a different one, from its RNG
/// or its unique ID). `None` if the interface has no room for the address (smoltcp's address
/// list is full, which a new interface never is).
pub fn ethernet_interface<D: Device + ?Sized>(
    device: &mut D,
    mac: [u8; 6],
    address: IpCidr,
    random_seed: u64,
    now: smoltcp::time::Instant,
) -> Option<Interface> {
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = random_seed;
    let mut iface = Interface::new(config, device, now);
    let mut added = false;
    iface.update_ip_addrs(|addrs| added = addrs.push(address).is_ok());
    added.then_some(iface)
}

/// Converts a smoltcp timestamp to the core's millisecond clock (negative times are 0).
pub fn core_instant(t: smoltcp::time::Instant) -> Instant {
    Instant(u64::try_from(t.total_millis()).unwrap_or(0))
}

/// Why joining failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The handle is not a UDP socket of this socket set.
    NoSocket,
    /// The UDP socket refused to bind to the group's port.
    Bind(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] udp::BindError),
    /// The interface refused the group (not a multicast address, or its group table is full).
    Join(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] MulticastError),
}

/// Why a send failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    Socket(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] udp::SendError),
}

/// Why a receive failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

impl core::error::Error for JoinError {}

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

impl core::error::Error for SendError {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::NoSocket => f.write_str("not a UDP socket of this set"),
            RecvError::Truncated => f.write_str("datagram larger than the buffer"),
        }
    }
}

impl core::error::Error for RecvError {}

/// The adapter's own counters of group traffic (the core's are in [`GroupSocket::counters`]).
/// All saturate.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// What a group socket drives: it seals this node's records and opens received datagrams. A
/// [`Group`] with its store ([`GroupWithStore`]), or a key-distribution [`Member`] (which holds
/// its group and store).
pub trait Driven {
    /// Length of the datagram that carries `plaintext_len` bytes in the current epoch.
    fn datagram_len(&self, plaintext_len: usize) -> Result<usize, SealError>;

    /// Seals `plaintext` as this node's next record into `out`; returns its length. The
    /// sequence number is reserved in the store first.
    fn seal(&mut self, now: Instant, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SealError>;

    /// Opens every record of a received datagram in place ([`Group::open_datagram`]).
    fn open_datagram<'b>(&'b mut self, now: Instant, datagram: &'b mut [u8]) -> Records<'b>;
}

/// A [`Group`] with `SENDERS` sender states and `32 × WORDS`-record windows, and its sequence
/// store `S`: what a [`GroupSocket`] drives.
pub struct GroupWithStore<S, const SENDERS: usize = 16, const WORDS: usize = 2> {
    /// The group context.
    pub group: Group<SENDERS, WORDS>,
    /// Its sequence store.
    pub store: S,
}

impl<S, const SENDERS: usize, const WORDS: usize> fmt::Debug for GroupWithStore<S, SENDERS, WORDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupWithStore")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> Driven
    for GroupWithStore<S, SENDERS, WORDS>
{
    fn datagram_len(&self, plaintext_len: usize) -> Result<usize, SealError> {
        self.group.record_len(plaintext_len)
    }

    fn seal(&mut self, now: Instant, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        self.group.seal(now, &mut self.store, plaintext, out)
    }

    fn open_datagram<'b>(&'b mut self, now: Instant, datagram: &'b mut [u8]) -> Records<'b> {
        self.group.open_datagram(now, datagram)
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> Driven
    for Member<S, SENDERS, WORDS>
{
    fn datagram_len(&self, plaintext_len: usize) -> Result<usize, SealError> {
        self.group()
            .ok_or(SealError::NoCurrentEpoch)?
            .record_len(plaintext_len)
    }

    fn seal(&mut self, now: Instant, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        Member::seal(self, now, plaintext, out)
    }

    fn open_datagram<'b>(&'b mut self, now: Instant, datagram: &'b mut [u8]) -> Records<'b> {
        Member::open_datagram(self, now, datagram)
    }
}

/// The socket-independent half of a group socket, shared by the poll-style [`RecordSocket`]
/// and the async `embassy::AsyncGroupSocket` (feature `embassy`): what the socket drives
/// (`D`), the group's endpoint, and the adapter's counters. It turns plaintext into one
/// datagram and a received datagram into opened records; the socket types only move bytes.
pub struct GroupEndpoint<D> {
    driver: D,
    endpoint: IpEndpoint,
    stats: SocketStats,
}

impl<D: fmt::Debug> fmt::Debug for GroupEndpoint<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupEndpoint")
            .field("driver", &self.driver)
            .field("endpoint", &self.endpoint)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<D: Driven> GroupEndpoint<D> {
    /// `driver` on the group at `endpoint` (multicast address and port).
    pub fn with_driver(driver: D, endpoint: IpEndpoint) -> Self {
        Self {
            driver,
            endpoint,
            stats: SocketStats::default(),
        }
    }

    /// Length of the datagram that carries `plaintext_len` bytes in the current epoch.
    pub fn datagram_len(&self, plaintext_len: usize) -> Result<usize, SealError> {
        self.driver.datagram_len(plaintext_len)
    }

    /// Seals `plaintext` as this node's next record into `scratch`; returns the datagram.
    /// The sequence number is reserved in the store first.
    pub fn seal<'b>(
        &mut self,
        now: Instant,
        plaintext: &[u8],
        scratch: &'b mut [u8],
    ) -> Result<&'b [u8], SealError> {
        let len = self.driver.seal(now, plaintext, scratch)?;
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
    ) -> Datagram<'b> {
        bump(&mut self.stats.datagrams_received);
        Datagram::new(self.driver.open_datagram(now, datagram), from)
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

    /// The adapter's counters.
    pub fn stats(&self) -> SocketStats {
        self.stats
    }

    /// The group's multicast address and port.
    pub fn endpoint(&self) -> IpEndpoint {
        self.endpoint
    }

    /// What this endpoint drives.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// What this endpoint drives, mutable.
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    /// Gives back what this endpoint drives.
    pub fn into_driver(self) -> D {
        self.driver
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize>
    GroupEndpoint<GroupWithStore<S, SENDERS, WORDS>>
{
    /// The group at `endpoint` (multicast address and port).
    pub fn new(group: Group<SENDERS, WORDS>, store: S, endpoint: IpEndpoint) -> Self {
        Self::with_driver(GroupWithStore { group, store }, endpoint)
    }

    /// Runs the core's timers (retiring a previous epoch after its grace period).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.driver.group.handle_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.driver.group.poll_timeout()
    }

    /// The core's next event (rekey needed, sender-ID clash, ...).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.driver.group.poll_event()
    }

    /// The core's counters (records accepted, sealed, dropped by reason).
    pub fn counters(&self) -> &Counters {
        self.driver.group.counters()
    }

    /// The group context (epochs, senders).
    pub fn group(&self) -> &Group<SENDERS, WORDS> {
        &self.driver.group
    }

    /// The group context, to install epochs and keys from key distribution.
    pub fn group_mut(&mut self) -> &mut Group<SENDERS, WORDS> {
        &mut self.driver.group
    }

    /// The sequence store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.driver.store
    }

    /// Gives back the group context and the store.
    pub fn into_parts(self) -> (Group<SENDERS, WORDS>, S) {
        (self.driver.group, self.driver.store)
    }
}

/// A group socket on a smoltcp interface, poll style: a [`GroupEndpoint`] driving `D` and the
/// handle of a UDP socket in the caller's [`SocketSet`]. One type for every driver:
/// [`GroupSocket`] drives a group with its store, [`MemberSocket`](crate::member::MemberSocket)
/// a key-distribution member.
pub struct RecordSocket<D> {
    core: GroupEndpoint<D>,
    handle: SocketHandle,
}

/// A group member on a smoltcp interface, poll style: a [`RecordSocket`] driving a [`Group`]
/// with `SENDERS` sender states and `32 × WORDS`-record windows, and its sequence store `S`.
pub type GroupSocket<S, const SENDERS: usize = 16, const WORDS: usize = 2> =
    RecordSocket<GroupWithStore<S, SENDERS, WORDS>>;

impl<D: fmt::Debug> fmt::Debug for RecordSocket<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSocket")
            .field("core", &self.core)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<D: Driven> RecordSocket<D> {
    /// A socket driving `driver` on the group at `endpoint` (multicast address and port), over
    /// the UDP socket `handle`.
    pub fn with_driver(driver: D, handle: SocketHandle, endpoint: IpEndpoint) -> Self {
        Self {
            core: GroupEndpoint::with_driver(driver, endpoint),
            handle,
        }
    }

    /// Binds the UDP socket to the group's port if it is not bound yet.
    pub fn bind(&mut self, sockets: &mut SocketSet<'_>) -> Result<(), JoinError> {
        let socket = udp_socket(sockets, self.handle).ok_or(JoinError::NoSocket)?;
        if !socket.is_open() {
            socket
                .bind(self.core.endpoint.port)
                .map_err(JoinError::Bind)?;
        }
        Ok(())
    }

    /// Binds the UDP socket to the group's port (if it is not bound yet) and joins the
    /// multicast group on `iface`. Call `iface.poll` afterwards to send the membership report.
    pub fn join(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Result<(), JoinError> {
        self.bind(sockets)?;
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
    ) -> Result<Option<Datagram<'b>>, RecvError> {
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

    /// The shared half (driver, counters).
    pub fn core(&self) -> &GroupEndpoint<D> {
        &self.core
    }

    /// The shared half, mutable.
    pub fn core_mut(&mut self) -> &mut GroupEndpoint<D> {
        &mut self.core
    }

    /// What this socket drives.
    pub fn driver(&self) -> &D {
        self.core.driver()
    }

    /// What this socket drives, mutable.
    pub fn driver_mut(&mut self) -> &mut D {
        self.core.driver_mut()
    }

    /// Gives back what this socket drives.
    pub fn into_driver(self) -> D {
        self.core.into_driver()
    }

    /// The adapter's counters.
    pub fn stats(&self) -> SocketStats {
        self.core.stats()
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
        Self::with_driver(GroupWithStore { group, store }, handle, endpoint)
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

    /// Gives back the group context and the store.
    pub fn into_parts(self) -> (Group<SENDERS, WORDS>, S) {
        self.core.into_parts()
    }
}

/// One received datagram: an iterator that opens its records in place, in order (the core's
/// [`Records`]), with where it came from. Each item is a delivered record or the reason it was
/// dropped (already counted by the core). Bytes that do not parse as a record end the datagram,
/// counted as malformed.
pub struct Datagram<'b> {
    records: Records<'b>,
    from: IpEndpoint,
}

impl fmt::Debug for Datagram<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("from", &self.from)
            .field("remaining", &self.records.remaining())
            .finish_non_exhaustive()
    }
}

impl<'b> Datagram<'b> {
    /// The records of a datagram received from `from`.
    pub fn new(records: Records<'b>, from: IpEndpoint) -> Self {
        Self { records, from }
    }

    /// Where the datagram came from (not authenticated: any host can send to the group).
    pub fn from(&self) -> IpEndpoint {
        self.from
    }
}

impl<'b> Iterator for Datagram<'b> {
    type Item = Result<Delivery<'b>, OpenError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.records.next()
    }
}

impl core::iter::FusedIterator for Datagram<'_> {}
