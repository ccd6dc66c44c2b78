//! A member on real sockets: the core's key-distribution [`Member`] talking to the key server
//! over UDP unicast, and its group traffic on a multicast socket.
//!
//! A member may know several key-server addresses (a highly available deployment: one active
//! server, standbys that do not answer). It sends to its *current* server; when the retry
//! schedule of an outstanding request (join, leave, rekey report) ran out
//! [`FAILOVER_AFTER_UNANSWERED`] times with no answer, it moves to the next address and sends
//! the request there at once. It accepts key-distribution messages from any configured address
//! (they are authenticated by the protocol, not by where they come from) and makes the server
//! whose message it accepted its current one, so acknowledgements go to the server that sent
//! the bundle. With one address there is no move and the backoff is as before; only a join
//! whose answers went missing starts over with a fresh nonce (see `maybe_fail_over`).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use group_core::keydist::{Member, MemberConfig, MemberCredentials, MemberEvent};
use group_core::record::OpenError;
use group_core::sequence::SequenceStore;

use crate::endpoint::{Clock, MAX_DATAGRAM, Received, SendError, collect_records};
use crate::keyfile::{self, OsRng};
use crate::net::MulticastSocket;

/// Never returned in practice ([`MemberRuntime`] always has an address); avoids a panic path.
const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// After this many sends of the same request without an answer (its retry schedule ran out
/// again: 1 s, then 2 s more), a member with several key-server addresses moves to the next.
pub const FAILOVER_AFTER_UNANSWERED: u32 = 2;

/// Senders a std member tracks: every sender a group may have (`MAX_SENDERS`, 255), so a
/// gateway or CLI member installs the full list of any group, also under strict admission or
/// record signatures, where a member refuses a list longer than its table
/// (docs/decisions.md, "Signed groups of 255 senders").
pub const MEMBER_SENDERS: usize = group_core::keydist::MAX_SENDERS;

/// The key-distribution state machine of a std member.
pub type StdMember<S> = Member<S, MEMBER_SENDERS>;

/// A key-distribution member with its sockets.
pub struct MemberRuntime<S: SequenceStore> {
    member: Box<StdMember<S>>,
    servers: Vec<SocketAddr>,
    current: usize,
    unicast: UdpSocket,
    mcast: MulticastSocket,
    clock: Clock,
    rng: OsRng,
    buf: Vec<u8>,
    contact: Contact,
}

/// What this member saw of the key server: enough to tell an operator why a join does not
/// complete (nothing answers, or answers are refused, and why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    /// Messages sent to the key server (join requests while joining).
    pub sent: u64,
    /// Datagrams received from the key server's address.
    pub received: u64,
    /// Of those, refused by the member (bad signature, wrong device, replayed, ...).
    pub refused: u64,
    /// The reason of the last refusal.
    pub last_refusal: Option<String>,
    /// Datagrams on the unicast socket from another address (ignored).
    pub from_elsewhere: u64,
    /// Moves to the next key-server address after requests went unanswered.
    pub failovers: u64,
    /// Times a message accepted from another configured address made it the current server.
    pub followed: u64,
}

/// What one [`MemberRuntime::poll`] produced.
#[derive(Debug, Default)]
pub struct Polled {
    /// Records delivered from the group.
    pub delivered: Vec<Received>,
    /// Records dropped, by reason.
    pub dropped: Vec<OpenError>,
    /// Key-distribution events (joined, epoch activated, removed, ...).
    pub events: Vec<MemberEvent>,
}

impl<S: SequenceStore> MemberRuntime<S> {
    /// Binds an ephemeral unicast socket (same address family as `server`) and starts joining.
    pub fn start(
        config: MemberConfig,
        creds: MemberCredentials,
        store: S,
        server: SocketAddr,
        mcast: MulticastSocket,
    ) -> io::Result<Self> {
        Self::start_with_servers(config, creds, store, &[server], mcast)
    }

    /// As [`start`](Self::start), with several key-server addresses (tried in this order; see
    /// the module documentation). They must all be of one address family; at least one.
    pub fn start_with_servers(
        config: MemberConfig,
        creds: MemberCredentials,
        store: S,
        servers: &[SocketAddr],
        mcast: MulticastSocket,
    ) -> io::Result<Self> {
        let Some(first) = servers.first().copied() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no key-server address",
            ));
        };
        if servers.iter().any(|s| s.is_ipv4() != first.is_ipv4()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "key-server addresses mix IPv4 and IPv6",
            ));
        }
        let bind: SocketAddr = if first.is_ipv4() {
            "0.0.0.0:0".parse().map_err(io::Error::other)?
        } else {
            "[::]:0".parse().map_err(io::Error::other)?
        };
        let unicast = UdpSocket::bind(bind)?;
        unicast.set_nonblocking(true)?;
        let clock = Clock::new();
        let mut member: Box<StdMember<S>> = Box::new(Member::new(config, creds, store));
        member
            .join(clock.now())
            .map_err(|e| io::Error::other(format!("join: {e}")))?;
        Ok(Self {
            member,
            servers: servers.to_vec(),
            current: 0,
            unicast,
            mcast,
            clock,
            rng: keyfile::os_rng(),
            buf: vec![0; MAX_DATAGRAM],
            contact: Contact::default(),
        })
    }

    /// The state machine (group, counters, state).
    pub fn member(&self) -> &StdMember<S> {
        &self.member
    }

    /// The state machine, for leave / rekey requests.
    pub fn member_mut(&mut self) -> &mut StdMember<S> {
        &mut self.member
    }

    /// What was exchanged with the key server so far.
    pub fn contact(&self) -> &Contact {
        &self.contact
    }

    /// The current key server's address (the one requests go to).
    pub fn server(&self) -> SocketAddr {
        self.servers
            .get(self.current)
            .copied()
            .unwrap_or(UNSPECIFIED)
    }

    /// Every configured key-server address, in the order they are tried.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// With several addresses: when an outstanding request's retry schedule ran out
    /// [`FAILOVER_AFTER_UNANSWERED`] times, the next address becomes current and the request
    /// is due there at once.
    ///
    /// With one address there is nowhere to move: a join whose answers went missing starts
    /// over with a fresh nonce on the same backoff ([`Member::restart_join`]), so a join the
    /// server committed before it died, with its bundle lost or sent to a stale address, is
    /// answered as a rejoin instead of being retransmitted into the void forever.
    fn maybe_fail_over(&mut self, now: group_core::time::Instant) {
        if self.member.unanswered_due(now) < FAILOVER_AFTER_UNANSWERED {
            return;
        }
        if self.servers.len() < 2 {
            self.member.restart_join();
            return;
        }
        let from = self.server();
        self.current = (self.current + 1) % self.servers.len();
        self.member.retry_now(now);
        self.contact.failovers = self.contact.failovers.saturating_add(1);
        tracing::warn!(
            from = %from,
            to = %self.server(),
            "no answer from the key server; trying the next address"
        );
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    fn flush(&mut self) -> io::Result<()> {
        let now = self.clock.now();
        self.member.handle_timeout(now);
        self.maybe_fail_over(now);
        let server = self.server();
        while let Ok(Some(n)) = self.member.poll_transmit(now, &mut self.rng, &mut self.buf) {
            self.unicast
                .send_to(self.buf.get(..n).unwrap_or(&[]), server)?;
            self.contact.sent = self.contact.sent.saturating_add(1);
        }
        Ok(())
    }

    /// One turn: timers and messages to the key server, key-distribution messages from it,
    /// then one group datagram (waiting up to the multicast socket's read timeout).
    pub fn poll(&mut self) -> io::Result<Polled> {
        let mut out = Polled::default();
        self.flush()?;
        loop {
            match self.unicast.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let Some(index) = self.servers.iter().position(|s| *s == from) else {
                        self.contact.from_elsewhere = self.contact.from_elsewhere.saturating_add(1);
                        continue;
                    };
                    self.contact.received = self.contact.received.saturating_add(1);
                    let now = self.clock.now();
                    match self
                        .member
                        .handle_message(now, self.buf.get(..n).unwrap_or(&[]))
                    {
                        Ok(()) if index != self.current => {
                            // Authenticated by the protocol: this server is the one that
                            // answers now (acknowledgements go back to it).
                            self.current = index;
                            self.contact.followed = self.contact.followed.saturating_add(1);
                            tracing::info!(server = %from, "following the key server that answered");
                        }
                        Ok(()) => {}
                        Err(e) => {
                            self.contact.refused = self.contact.refused.saturating_add(1);
                            self.contact.last_refusal = Some(e.to_string());
                            tracing::debug!(error = %e, "key-distribution message refused");
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.flush()?;
        if let Some((n, from)) = self.mcast.recv(&mut self.buf)? {
            let now = self.clock.now();
            let datagram = self.buf.get_mut(..n).unwrap_or(&mut []);
            let (delivered, dropped) =
                collect_records(from, self.member.open_datagram(now, datagram));
            out.delivered = delivered;
            out.dropped = dropped;
        }
        while let Some(e) = self.member.poll_event() {
            out.events.push(e);
        }
        self.flush()?;
        Ok(out)
    }

    /// Seals `plaintext` and sends it to the group; returns the record.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SendError> {
        let now = self.clock.now();
        let n = self
            .member
            .seal(now, plaintext, &mut self.buf)
            .map_err(SendError::Seal)?;
        let record = self.buf.get(..n).unwrap_or(&[]);
        self.mcast.send(record).map_err(SendError::Io)?;
        Ok(record.to_vec())
    }

    /// Polls until joined (or `timeout`); returns whether joined.
    pub fn wait_joined(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        while !self.member.is_joined() && std::time::Instant::now() < deadline {
            self.poll()?;
        }
        Ok(self.member.is_joined())
    }
}
