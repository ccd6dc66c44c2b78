//! The group socket on embassy-net (feature `embassy`): async `send` / `recv` over an
//! [`embassy_net::udp::UdpSocket`], with the same [`GroupEndpoint`] as the poll-style
//! [`GroupSocket`](crate::net::GroupSocket): sealing, opening and counting are shared; this
//! type only awaits the socket.
//!
//! The core's clock is embassy-time's ([`now`]), read after each datagram arrives, so epoch
//! grace periods are judged at the time of receipt.

use core::fmt;

use embassy_net::udp::{self, UdpSocket};
use embassy_net::{MulticastError, Stack};
use group_core::counters::{Counters, Event};
use group_core::group::Group;
use group_core::record::SealError;
use group_core::sequence::SequenceStore;
use group_core::time::Instant;

use crate::net::{Datagram, GroupEndpoint, GroupWithStore, SocketStats};

/// The core's clock from embassy-time (milliseconds since boot).
pub fn now() -> Instant {
    Instant(embassy_time::Instant::now().as_millis())
}

/// Why joining failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The UDP socket refused to bind to the group's port.
    Bind(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] udp::BindError),
    /// The stack refused the group (not a multicast address, or its group table is full).
    Join(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] MulticastError),
}

/// Why a send failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The core refused to seal (no epoch, not a sender, sequence state lost, ...).
    Seal(SealError),
    /// The record was sealed (its sequence number is spent) but the socket refused it.
    Socket(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] udp::SendError),
}

/// Why a receive failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// A datagram was larger than the caller's buffer; it was dropped and counted.
    Truncated,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Bind(e) => write!(f, "bind: {e:?}"),
            JoinError::Join(e) => write!(f, "join: {e}"),
        }
    }
}

impl core::error::Error for JoinError {}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Seal(e) => write!(f, "seal: {e}"),
            SendError::Socket(e) => write!(f, "udp send: {e:?}"),
        }
    }
}

impl core::error::Error for SendError {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("datagram larger than the buffer")
    }
}

impl core::error::Error for RecvError {}

/// A group member on an embassy-net stack: a [`GroupEndpoint`] and a UDP socket.
pub struct AsyncGroupSocket<'d, S, const SENDERS: usize = 16, const WORDS: usize = 2> {
    core: GroupEndpoint<GroupWithStore<S, SENDERS, WORDS>>,
    socket: UdpSocket<'d>,
}

impl<S, const SENDERS: usize, const WORDS: usize> fmt::Debug
    for AsyncGroupSocket<'_, S, SENDERS, WORDS>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncGroupSocket")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<'d, S: SequenceStore, const SENDERS: usize, const WORDS: usize>
    AsyncGroupSocket<'d, S, SENDERS, WORDS>
{
    /// A group socket over `socket` (created by the caller with its own buffers).
    pub fn new(
        core: GroupEndpoint<GroupWithStore<S, SENDERS, WORDS>>,
        socket: UdpSocket<'d>,
    ) -> Self {
        Self { core, socket }
    }

    /// Binds the socket to the group's port (if it is not bound yet) and joins the multicast
    /// group on `stack`.
    pub fn join(&mut self, stack: Stack<'_>) -> Result<(), JoinError> {
        let endpoint = self.core.endpoint();
        if !self.socket.is_open() {
            self.socket.bind(endpoint.port).map_err(JoinError::Bind)?;
        }
        stack
            .join_multicast_group(endpoint.addr)
            .map_err(JoinError::Join)
    }

    /// Seals `plaintext` as this node's next record into `scratch` and sends it to the group,
    /// waiting for room in the socket's send buffer. Returns the datagram length.
    pub async fn send(&mut self, plaintext: &[u8], scratch: &mut [u8]) -> Result<usize, SendError> {
        let r = self.send_inner(plaintext, scratch).await;
        self.core.note_send(&r);
        r
    }

    async fn send_inner(
        &mut self,
        plaintext: &[u8],
        scratch: &mut [u8],
    ) -> Result<usize, SendError> {
        let endpoint = self.core.endpoint();
        let datagram = self
            .core
            .seal(now(), plaintext, scratch)
            .map_err(SendError::Seal)?;
        self.socket
            .send_to(datagram, endpoint)
            .await
            .map_err(SendError::Socket)?;
        Ok(datagram.len())
    }

    /// Waits for the next datagram sent to the group, takes it into `buf` and returns it as an
    /// iterator over its opened records. Datagrams to other addresses on the port are dropped
    /// and counted.
    pub async fn recv<'b>(&'b mut self, buf: &'b mut [u8]) -> Result<Datagram<'b>, RecvError> {
        let (n, from) = loop {
            let (n, meta) = match self.socket.recv_from(buf).await {
                Ok(r) => r,
                Err(udp::RecvError::Truncated) => {
                    self.core.note_truncated();
                    return Err(RecvError::Truncated);
                }
            };
            if self.core.is_group_traffic(meta.local_address) {
                break (n, meta.endpoint);
            }
        };
        let datagram = buf.get_mut(..n).unwrap_or_default();
        Ok(self.core.open_datagram(now(), from, datagram))
    }

    /// The shared half (group, store, counters).
    pub fn core(&self) -> &GroupEndpoint<GroupWithStore<S, SENDERS, WORDS>> {
        &self.core
    }

    /// The shared half, mutable.
    pub fn core_mut(&mut self) -> &mut GroupEndpoint<GroupWithStore<S, SENDERS, WORDS>> {
        &mut self.core
    }

    /// The core's next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    /// The core's counters.
    pub fn counters(&self) -> &Counters {
        self.core.counters()
    }

    /// The adapter's counters.
    pub fn stats(&self) -> SocketStats {
        self.core.stats()
    }

    /// The group context.
    pub fn group(&self) -> &Group<SENDERS, WORDS> {
        self.core.group()
    }

    /// Gives back the shared half and the socket.
    pub fn into_parts(
        self,
    ) -> (
        GroupEndpoint<GroupWithStore<S, SENDERS, WORDS>>,
        UdpSocket<'d>,
    ) {
        (self.core, self.socket)
    }
}
