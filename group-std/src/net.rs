//! UDP multicast sockets over socket2, for IPv4 and IPv6.
//!
//! A [`MulticastSocket`] is bound to the group's port, joined to the group on one chosen
//! interface, sends to the group through that interface with a bounded TTL / hop limit, and
//! does not receive other groups on the same port (`IP_MULTICAST_ALL` off, Linux).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// The interface a group is joined and sent on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interface {
    /// IPv4: the interface's address (e.g. 127.0.0.1 for loopback).
    V4(Ipv4Addr),
    /// IPv6: the interface index (0 lets the kernel choose; avoid it outside tests).
    V6(u32),
}

impl Interface {
    /// Parses `ADDR` (IPv4 interface address), a number (IPv6 interface index) or an interface
    /// name (looked up in `/sys/class/net/NAME/ifindex`, for IPv6).
    pub fn parse(s: &str) -> io::Result<Self> {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Self::V4(a));
        }
        if let Ok(i) = s.parse::<u32>() {
            return Ok(Self::V6(i));
        }
        if s.is_empty() || s.contains('/') || s.contains("..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {s:?}"),
            ));
        }
        let text = std::fs::read_to_string(format!("/sys/class/net/{s}/ifindex"))
            .map_err(|e| io::Error::new(e.kind(), format!("no interface named {s:?}: {e}")))?;
        text.trim()
            .parse::<u32>()
            .map(Self::V6)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad ifindex"))
    }
}

/// How to open a group socket.
#[derive(Clone, Debug)]
pub struct MulticastConfig {
    /// Group address and port.
    pub group: SocketAddr,
    /// Interface to join and send on.
    pub interface: Interface,
    /// Deliver our own datagrams to other sockets on this host (needed when several members
    /// run on one machine). The group layer drops our own records either way.
    pub loopback: bool,
    /// IPv4 TTL / IPv6 hop limit of sent datagrams (1 = this link only).
    pub ttl: u32,
    /// Let several sockets (processes) on this host bind the same group port.
    pub reuse: bool,
    /// Read timeout of blocking receives.
    pub read_timeout: Option<Duration>,
}

impl MulticastConfig {
    /// Group on the IPv4 loopback interface, TTL 1, loopback and reuse on: the setting for
    /// tests and demos that must stay on this machine.
    pub fn loopback_v4(group: SocketAddrV4) -> Self {
        Self {
            group: SocketAddr::V4(group),
            interface: Interface::V4(Ipv4Addr::LOCALHOST),
            loopback: true,
            ttl: 1,
            reuse: true,
            read_timeout: Some(Duration::from_millis(200)),
        }
    }

    /// Group on an IPv6 interface (by index), hop limit 1, loopback and reuse on.
    pub fn v6(group: SocketAddrV6, ifindex: u32) -> Self {
        Self {
            group: SocketAddr::V6(group),
            interface: Interface::V6(ifindex),
            loopback: true,
            ttl: 1,
            reuse: true,
            read_timeout: Some(Duration::from_millis(200)),
        }
    }
}

/// A UDP socket joined to one multicast group.
#[derive(Debug)]
pub struct MulticastSocket {
    socket: UdpSocket,
    group: SocketAddr,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

impl MulticastSocket {
    /// Opens, configures, binds and joins.
    pub fn open(cfg: &MulticastConfig) -> io::Result<Self> {
        if !cfg.group.ip().is_multicast() {
            return Err(invalid("group address is not multicast"));
        }
        let domain = match cfg.group {
            SocketAddr::V4(_) => Domain::IPV4,
            SocketAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if cfg.reuse {
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
        }
        match (cfg.group, &cfg.interface) {
            (SocketAddr::V4(g), Interface::V4(iface)) => {
                socket.set_multicast_if_v4(iface)?;
                socket.set_multicast_ttl_v4(cfg.ttl)?;
                socket.set_multicast_loop_v4(cfg.loopback)?;
                socket.set_multicast_all_v4(false)?;
                // Bound to the group address: only this group's datagrams arrive.
                socket.bind(&SocketAddr::V4(SocketAddrV4::new(*g.ip(), g.port())).into())?;
                socket.join_multicast_v4(g.ip(), iface)?;
            }
            (SocketAddr::V6(g), Interface::V6(index)) => {
                socket.set_only_v6(true)?;
                socket.set_multicast_if_v6(*index)?;
                socket.set_multicast_hops_v6(cfg.ttl)?;
                socket.set_multicast_loop_v6(cfg.loopback)?;
                socket.set_multicast_all_v6(false)?;
                socket.bind(
                    &SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, g.port(), 0, 0))
                        .into(),
                )?;
                socket.join_multicast_v6(g.ip(), *index)?;
            }
            _ => return Err(invalid("interface family differs from the group's")),
        }
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(cfg.read_timeout)?;
        Ok(Self {
            socket,
            group: cfg.group,
        })
    }

    /// Sends one datagram to the group.
    pub fn send(&self, datagram: &[u8]) -> io::Result<()> {
        let n = self.socket.send_to(datagram, self.group)?;
        if n != datagram.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
        Ok(())
    }

    /// Sends each of `datagrams` to the group, up to [`SEND_BATCH`] per system call
    /// (`sendmmsg` on Linux, through rustix's safe wrapper; one `send_to` each elsewhere).
    /// Returns how many were sent: all of them, or those before the first that failed (the
    /// error then, if none was sent).
    pub fn send_many(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0usize;
        for chunk in datagrams.chunks(SEND_BATCH) {
            let n = match send_chunk(&self.socket, self.group, chunk) {
                Ok(n) => n,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => return Ok(sent),
            };
            sent = sent.saturating_add(n);
            if n < chunk.len() {
                break;
            }
        }
        Ok(sent)
    }

    /// Receives one datagram; `Ok(None)` on timeout.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.socket.recv_from(buf) {
            Ok(v) => Ok(Some(v)),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Changes the read timeout.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(t)
    }

    /// The group.
    pub fn group(&self) -> SocketAddr {
        self.group
    }

    /// The group's IP address.
    pub fn group_ip(&self) -> IpAddr {
        self.group.ip()
    }

    /// The underlying std socket (for a tokio wrapper or `poll`).
    pub fn as_udp(&self) -> &UdpSocket {
        &self.socket
    }

    /// Gives the configured std socket away.
    pub fn into_udp(self) -> UdpSocket {
        self.socket
    }
}

/// Most datagrams [`MulticastSocket::send_many`] hands the kernel in one system call.
pub const SEND_BATCH: usize = 16;

/// Sends up to [`SEND_BATCH`] datagrams in one `sendmmsg`; returns how many went (the
/// kernel may stop early: the caller sees it in the count).
#[cfg(target_os = "linux")]
pub(crate) fn send_chunk(
    socket: impl std::os::fd::AsFd,
    to: SocketAddr,
    chunk: &[&[u8]],
) -> io::Result<usize> {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    let to = SocketAddrAny::from(to);
    let iovs: [[io::IoSlice<'_>; 1]; SEND_BATCH] =
        core::array::from_fn(|i| [io::IoSlice::new(chunk.get(i).copied().unwrap_or(&[]))]);
    let mut controls: [SendAncillaryBuffer<'_, '_, '_>; SEND_BATCH] = Default::default();
    // On the stack: nothing allocated per call.
    let mut iov = iovs.iter();
    let mut msgs: [MMsgHdr<'_>; SEND_BATCH] = controls
        .each_mut()
        .map(|c| MMsgHdr::new_with_addr(&to, iov.next().map_or(&[][..], |v| &v[..]), c));
    let msgs = msgs.get_mut(..chunk.len()).unwrap_or(&mut []);
    Ok(rustix::net::sendmmsg(socket, msgs, SendFlags::empty())?)
}

/// Elsewhere: one `send_to` per datagram.
#[cfg(not(target_os = "linux"))]
pub(crate) fn send_chunk(socket: &UdpSocket, to: SocketAddr, chunk: &[&[u8]]) -> io::Result<usize> {
    let mut n = 0usize;
    for d in chunk {
        match socket.send_to(d, to) {
            Ok(_) => n += 1,
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}
