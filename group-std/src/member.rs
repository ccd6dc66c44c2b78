//! A member on real sockets: the core's key-distribution [`Member`] talking to the key server
//! over UDP unicast, and its group traffic on a multicast socket.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use group_core::keydist::{Member, MemberConfig, MemberCredentials, MemberEvent};
use group_core::record::OpenError;
use group_core::sequence::SequenceStore;

use crate::endpoint::{Clock, MAX_DATAGRAM, Received, SendError, collect_records};
use crate::keyfile::{self, OsRng};
use crate::net::MulticastSocket;

/// A key-distribution member with its sockets.
pub struct MemberRuntime<S: SequenceStore> {
    member: Member<S>,
    server: SocketAddr,
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
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().map_err(io::Error::other)?
        } else {
            "[::]:0".parse().map_err(io::Error::other)?
        };
        let unicast = UdpSocket::bind(bind)?;
        unicast.set_nonblocking(true)?;
        let clock = Clock::new();
        let mut member = Member::new(config, creds, store);
        member
            .join(clock.now())
            .map_err(|e| io::Error::other(format!("join: {e}")))?;
        Ok(Self {
            member,
            server,
            unicast,
            mcast,
            clock,
            rng: keyfile::os_rng(),
            buf: vec![0; MAX_DATAGRAM],
            contact: Contact::default(),
        })
    }

    /// The state machine (group, counters, state).
    pub fn member(&self) -> &Member<S> {
        &self.member
    }

    /// The state machine, for leave / rekey requests.
    pub fn member_mut(&mut self) -> &mut Member<S> {
        &mut self.member
    }

    /// What was exchanged with the key server so far.
    pub fn contact(&self) -> &Contact {
        &self.contact
    }

    /// The key server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    fn flush(&mut self) -> io::Result<()> {
        let now = self.clock.now();
        self.member.handle_timeout(now);
        while let Ok(Some(n)) = self.member.poll_transmit(now, &mut self.rng, &mut self.buf) {
            self.unicast
                .send_to(self.buf.get(..n).unwrap_or(&[]), self.server)?;
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
                    if from != self.server {
                        self.contact.from_elsewhere = self.contact.from_elsewhere.saturating_add(1);
                        continue;
                    }
                    self.contact.received = self.contact.received.saturating_add(1);
                    let now = self.clock.now();
                    if let Err(e) = self
                        .member
                        .handle_message(now, self.buf.get(..n).unwrap_or(&[]))
                    {
                        self.contact.refused = self.contact.refused.saturating_add(1);
                        self.contact.last_refusal = Some(e.to_string());
                        tracing::debug!(error = %e, "key-distribution message refused");
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
