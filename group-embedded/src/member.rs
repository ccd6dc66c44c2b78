//! A group member whose keys come from key distribution, on smoltcp: a
//! [`group_core::keydist::Member`] (the core's key-distribution client, holding the
//! group context it installs keys into) with two UDP sockets: one for the group's multicast
//! records, one for unicast messages to and from the key server.
//!
//! Poll style, like [`GroupSocket`](crate::net::GroupSocket):
//! [`poll_keydist`](MemberSocket::poll_keydist) sends what the member has queued for the key
//! server (join request, ack, reports) and hands it every datagram that came from the key
//! server's endpoint; [`send`](MemberSocket::send) and [`recv`](MemberSocket::recv) carry group
//! records once the member has joined, through the same [`RecordSocket`] as a `GroupSocket`
//! (here driving the member). Messages from any other endpoint on the key-distribution
//! port are dropped and counted; the member verifies everything the key server sends.

use core::fmt;

use group_core::keydist::{self, Member, MemberEvent};
use group_core::sequence::SequenceStore;
use group_core::time::Instant;
use rand_core::CryptoRng;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use crate::net::{
    Datagram, JoinError, RecordSocket, RecvError, SendError, SocketStats, bump, udp_socket,
};

/// Why exchanging key-distribution messages failed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum KeyDistError {
    /// The handle is not a UDP socket of this socket set.
    NoSocket,
    /// The member could not produce its next message.
    Member(keydist::Error),
}

impl fmt::Display for KeyDistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistError::NoSocket => f.write_str("not a UDP socket of this set"),
            KeyDistError::Member(e) => write!(f, "key distribution: {e:?}"),
        }
    }
}

impl core::error::Error for KeyDistError {}

/// Counters of the key-distribution link. All saturate.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyDistStats {
    /// Messages sent to the key server.
    pub sent: u64,
    /// Messages the socket could not queue (the member retransmits on its timer).
    pub send_failures: u64,
    /// Messages from the key server the member accepted.
    pub accepted: u64,
    /// Messages from the key server the member refused (forged, replayed, malformed, ...).
    pub rejected: u64,
    /// Datagrams on the key-distribution port from another endpoint; dropped.
    pub not_from_server: u64,
    /// Datagrams larger than the caller's buffer; dropped.
    pub truncated: u64,
}

/// A key-distribution member on a smoltcp interface: a [`RecordSocket`] driving the
/// [`Member`] for group records, and a UDP socket to the key server.
pub struct MemberSocket<S: SequenceStore, const SENDERS: usize = 16, const WORDS: usize = 2> {
    records: RecordSocket<Member<S, SENDERS, WORDS>>,
    keydist_handle: SocketHandle,
    server: IpEndpoint,
    keydist_stats: KeyDistStats,
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> fmt::Debug
    for MemberSocket<S, SENDERS, WORDS>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberSocket")
            .field("state", &self.member().state())
            .field("group", &self.records.endpoint())
            .field("server", &self.server)
            .field("stats", &self.records.stats())
            .field("keydist_stats", &self.keydist_stats)
            .finish_non_exhaustive()
    }
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> MemberSocket<S, SENDERS, WORDS> {
    /// A member of the group at `group` (multicast address and port) over the UDP socket
    /// `group_handle`, talking to the key server at `server` over the UDP socket
    /// `keydist_handle`.
    pub fn new(
        member: Member<S, SENDERS, WORDS>,
        group_handle: SocketHandle,
        group: IpEndpoint,
        keydist_handle: SocketHandle,
        server: IpEndpoint,
    ) -> Self {
        Self {
            records: RecordSocket::with_driver(member, group_handle, group),
            keydist_handle,
            server,
            keydist_stats: KeyDistStats::default(),
        }
    }

    /// Binds the group socket to the group's port and joins the multicast group on `iface`,
    /// and binds the key-distribution socket to `local_port`.
    pub fn bind(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        local_port: u16,
    ) -> Result<(), JoinError> {
        self.records.bind(sockets)?;
        let k = udp_socket(sockets, self.keydist_handle).ok_or(JoinError::NoSocket)?;
        if !k.is_open() {
            k.bind(local_port).map_err(JoinError::Bind)?;
        }
        iface
            .join_multicast_group(self.records.group_address())
            .map_err(JoinError::Join)
    }

    /// Sends every message the member has queued for the key server, then hands it every
    /// datagram received from the key server, and runs its timers. Returns how many messages
    /// moved (sent + accepted).
    pub fn poll_keydist<R: CryptoRng + ?Sized>(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Result<usize, KeyDistError> {
        let mut moved = 0usize;
        self.member_mut().handle_timeout(now);
        let socket = udp_socket(sockets, self.keydist_handle).ok_or(KeyDistError::NoSocket)?;
        // Bounded: the member queues a handful of messages at most.
        for _ in 0..8 {
            if !socket.can_send() {
                break;
            }
            let Some(n) = self
                .member_mut()
                .poll_transmit(now, rng, buf)
                .map_err(KeyDistError::Member)?
            else {
                break;
            };
            let msg = buf.get(..n).unwrap_or_default();
            if socket.send_slice(msg, self.server).is_ok() {
                bump(&mut self.keydist_stats.sent);
                moved = moved.saturating_add(1);
            } else {
                bump(&mut self.keydist_stats.send_failures);
            }
        }
        loop {
            let (n, meta) = match socket.recv_slice(buf) {
                Ok(r) => r,
                Err(udp::RecvError::Exhausted) => break,
                Err(udp::RecvError::Truncated) => {
                    bump(&mut self.keydist_stats.truncated);
                    continue;
                }
            };
            if meta.endpoint != self.server {
                bump(&mut self.keydist_stats.not_from_server);
                continue;
            }
            let msg = buf.get(..n).unwrap_or_default();
            match self.member_mut().handle_message(now, msg) {
                Ok(()) => {
                    bump(&mut self.keydist_stats.accepted);
                    moved = moved.saturating_add(1);
                }
                Err(_) => bump(&mut self.keydist_stats.rejected),
            }
        }
        Ok(moved)
    }

    /// Seals `plaintext` with the member's current keys and sender ID and queues it to the
    /// group. Returns the datagram length.
    pub fn send(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        plaintext: &[u8],
        scratch: &mut [u8],
    ) -> Result<usize, SendError> {
        self.records.send(sockets, now, plaintext, scratch)
    }

    /// Takes the next datagram sent to the group into `buf` and returns it as an iterator over
    /// its records, opened by the member; `Ok(None)` when nothing is queued.
    pub fn recv<'b>(
        &'b mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        buf: &'b mut [u8],
    ) -> Result<Option<Datagram<'b>>, RecvError> {
        self.records.recv(sockets, now, buf)
    }

    /// The member's next event (bundle installed, epoch activated, removed, ...).
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.member_mut().poll_event()
    }

    /// When the member's timers next need [`poll_keydist`](Self::poll_keydist).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.member().poll_timeout()
    }

    /// The key-distribution member (state, group context, store).
    pub fn member(&self) -> &Member<S, SENDERS, WORDS> {
        self.records.driver()
    }

    /// The key-distribution member, mutable (to start a join, request a rekey, leave).
    pub fn member_mut(&mut self) -> &mut Member<S, SENDERS, WORDS> {
        self.records.driver_mut()
    }

    /// The group-traffic counters of this adapter (the core's are in the member's group).
    pub fn stats(&self) -> SocketStats {
        self.records.stats()
    }

    /// The key-distribution link's counters.
    pub fn keydist_stats(&self) -> KeyDistStats {
        self.keydist_stats
    }

    /// Gives back the member.
    pub fn into_member(self) -> Member<S, SENDERS, WORDS> {
        self.records.into_driver()
    }
}
