//! Async (tokio) twin of [`crate::endpoint::GroupEndpoint`], behind the `tokio` feature:
//! the same group logic over a `tokio::net::UdpSocket` made from a configured
//! [`MulticastSocket`].

use std::io;
use std::net::SocketAddr;

use group_core::datagram::Records;
use group_core::group::Group;
use group_core::record::OpenError;
use group_core::sequence::SequenceStore;

use crate::endpoint::{
    Clock, MAX_DATAGRAM, Received, SendError, batch_datagrams, collect_records, seal_batch,
};
use crate::net::MulticastSocket;
use crate::net::SEND_BATCH;

/// A group member on a tokio socket.
pub struct AsyncGroupEndpoint<S: SequenceStore, const N: usize = 16, const W: usize = 2> {
    socket: tokio::net::UdpSocket,
    target: std::net::SocketAddr,
    group: Group<N, W>,
    store: S,
    clock: Clock,
    buf: Vec<u8>,
    /// The records of one [`send_records`](Self::send_records) batch, back to back.
    batch: Vec<u8>,
}

impl<S: SequenceStore, const N: usize, const W: usize> AsyncGroupEndpoint<S, N, W> {
    /// Converts a configured multicast socket (joined, interface and TTL set) into a tokio
    /// socket. Must be called inside a tokio runtime.
    pub fn new(
        socket: MulticastSocket,
        group: Group<N, W>,
        store: S,
        clock: Clock,
    ) -> io::Result<Self> {
        let target = socket.group();
        let std_socket = socket.into_udp();
        std_socket.set_nonblocking(true)?;
        Ok(Self {
            socket: tokio::net::UdpSocket::from_std(std_socket)?,
            target,
            group,
            store,
            clock,
            buf: vec![0; MAX_DATAGRAM],
            batch: Vec::new(),
        })
    }

    /// The group context.
    pub fn group(&self) -> &Group<N, W> {
        &self.group
    }

    /// The group context, for key installation.
    pub fn group_mut(&mut self) -> &mut Group<N, W> {
        &mut self.group
    }

    /// Seals `plaintext` as one record and sends it; returns the record (a copy:
    /// [`send_record`](Self::send_record) allocates nothing).
    pub async fn send(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SendError> {
        self.send_record(plaintext).await.map(<[u8]>::to_vec)
    }

    /// Seals `plaintext` as one record into the endpoint's own buffer and sends it; returns the
    /// record, borrowed from that buffer (no allocation).
    pub async fn send_record(&mut self, plaintext: &[u8]) -> Result<&[u8], SendError> {
        let len = self
            .group
            .seal(self.clock.now(), &mut self.store, plaintext, &mut self.buf)
            .map_err(SendError::Seal)?;
        let record = self.buf.get(..len).unwrap_or(&[]);
        self.socket
            .send_to(record, self.target)
            .await
            .map_err(SendError::Io)?;
        Ok(record)
    }

    /// Seals each of `plaintexts` as one record and sends each as one datagram, up to
    /// [`SEND_BATCH`] per system call (`sendmmsg` on Linux), as
    /// [`GroupEndpoint::send_records`](crate::endpoint::GroupEndpoint::send_records) does;
    /// returns how many were sent. Every record of a batch is sealed before it is sent.
    pub async fn send_records(&mut self, plaintexts: &[&[u8]]) -> Result<usize, SendError> {
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
            let datagrams = datagrams.get(..sealed).unwrap_or(&[]);
            let n = if datagrams.is_empty() {
                0
            } else {
                let (socket, target) = (&self.socket, self.target);
                socket
                    .async_io(tokio::io::Interest::WRITABLE, || {
                        crate::net::send_chunk(socket, target, datagrams)
                    })
                    .await
                    .map_err(SendError::Io)?
            };
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

    /// Waits for one datagram and returns where it came from and its records, opened one by
    /// one in place as the iterator is pulled, with nothing copied (as
    /// [`GroupEndpoint::recv_datagram`](crate::endpoint::GroupEndpoint::recv_datagram)).
    pub async fn recv_datagram(&mut self) -> io::Result<(SocketAddr, Records<'_>)> {
        let (n, from) = self.socket.recv_from(&mut self.buf).await?;
        let now = self.clock.now();
        let datagram = self.buf.get_mut(..n).unwrap_or(&mut []);
        Ok((from, self.group.open_datagram(now, datagram)))
    }

    /// Waits for one datagram and opens every record in it; bad records are dropped, counted
    /// and their reasons returned.
    pub async fn recv(&mut self) -> io::Result<(Vec<Received>, Vec<OpenError>)> {
        let (from, records) = self.recv_datagram().await?;
        Ok(collect_records(from, records))
    }
}
