//! An in-memory Ethernet hub: every frame one port sends is copied to every other port, as on
//! a shared segment. Each port is a smoltcp [`Device`]. No heap: the hub holds
//! `PORTS × QUEUE` frames of at most `MTU` bytes.
//!
//! ```
//! use group_embedded::hub::Hub;
//! use smoltcp::phy::{Device, RxToken, TxToken};
//! use smoltcp::time::Instant;
//!
//! let mut hub: Hub<3, 4, 128> = Hub::new();
//! let mut port = hub.port(0);
//! let tx = port.transmit(Instant::ZERO).unwrap();
//! tx.consume(3, |buf| buf.copy_from_slice(b"abc"));
//! for i in [1, 2] {
//!     let mut port = hub.port(i);
//!     let (rx, _) = port.receive(Instant::ZERO).unwrap();
//!     assert_eq!(rx.consume(|f| f.to_vec()), b"abc");
//! }
//! assert!(hub.port(0).receive(Instant::ZERO).is_none()); // not echoed to the sender
//! ```

use heapless::{Deque, Vec};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// One frame on the hub.
pub type Frame<const MTU: usize> = Vec<u8, MTU>;

/// What the hub did. All counters saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Frames sent by any port.
    pub sent: u64,
    /// Copies queued to receiving ports.
    pub delivered: u64,
    /// Copies dropped because a port's queue was full.
    pub dropped_full: u64,
}

/// A hub with `PORTS` ports, each with a queue of `QUEUE` frames of up to `MTU` bytes.
#[derive(Debug)]
pub struct Hub<const PORTS: usize, const QUEUE: usize, const MTU: usize> {
    inbox: [Deque<Frame<MTU>, QUEUE>; PORTS],
    stats: HubStats,
}

impl<const PORTS: usize, const QUEUE: usize, const MTU: usize> Default for Hub<PORTS, QUEUE, MTU> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const PORTS: usize, const QUEUE: usize, const MTU: usize> Hub<PORTS, QUEUE, MTU> {
    /// An idle hub.
    pub const fn new() -> Self {
        Self {
            inbox: [const { Deque::new() }; PORTS],
            stats: HubStats {
                sent: 0,
                delivered: 0,
                dropped_full: 0,
            },
        }
    }

    /// Port `index` as a smoltcp device (for one `Interface::poll`). A port index out of range
    /// gives a port that sends into nothing and receives nothing.
    pub fn port(&mut self, index: usize) -> Port<'_, PORTS, QUEUE, MTU> {
        Port { hub: self, index }
    }

    /// Queues `frame` to every port except `from` (a frame injected by a test or an attacker).
    pub fn broadcast(&mut self, from: usize, frame: &[u8]) {
        self.stats.sent = self.stats.sent.saturating_add(1);
        for (i, q) in self.inbox.iter_mut().enumerate() {
            if i == from {
                continue;
            }
            let Ok(copy) = Frame::<MTU>::from_slice(frame) else {
                self.stats.dropped_full = self.stats.dropped_full.saturating_add(1);
                continue;
            };
            if q.push_back(copy).is_ok() {
                self.stats.delivered = self.stats.delivered.saturating_add(1);
            } else {
                self.stats.dropped_full = self.stats.dropped_full.saturating_add(1);
            }
        }
    }

    /// Takes the oldest frame queued for port `index` (an eavesdropper's view).
    pub fn take(&mut self, index: usize) -> Option<Frame<MTU>> {
        self.inbox.get_mut(index)?.pop_front()
    }

    /// Frames queued for port `index`.
    pub fn pending(&self, index: usize) -> usize {
        self.inbox.get(index).map_or(0, |q| q.len())
    }

    /// Counters.
    pub fn stats(&self) -> HubStats {
        self.stats
    }
}

/// One port of a [`Hub`], borrowed for the duration of an `Interface::poll`.
#[derive(Debug)]
pub struct Port<'h, const PORTS: usize, const QUEUE: usize, const MTU: usize> {
    hub: &'h mut Hub<PORTS, QUEUE, MTU>,
    index: usize,
}

/// A received frame.
#[derive(Debug)]
pub struct HubRx<const MTU: usize>(Frame<MTU>);

/// The right to send one frame from a port.
#[derive(Debug)]
pub struct HubTx<'a, const PORTS: usize, const QUEUE: usize, const MTU: usize> {
    hub: &'a mut Hub<PORTS, QUEUE, MTU>,
    from: usize,
}

impl<const MTU: usize> phy::RxToken for HubRx<MTU> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl<const PORTS: usize, const QUEUE: usize, const MTU: usize> phy::TxToken
    for HubTx<'_, PORTS, QUEUE, MTU>
{
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = Frame::<MTU>::new();
        // smoltcp never asks for more than the MTU it was given; clamp anyway.
        frame.resize(len.min(MTU), 0).ok();
        let r = f(&mut frame);
        self.hub.broadcast(self.from, &frame);
        r
    }
}

impl<const PORTS: usize, const QUEUE: usize, const MTU: usize> Device
    for Port<'_, PORTS, QUEUE, MTU>
{
    type RxToken<'a>
        = HubRx<MTU>
    where
        Self: 'a;
    type TxToken<'a>
        = HubTx<'a, PORTS, QUEUE, MTU>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.hub.take(self.index)?;
        Some((
            HubRx(frame),
            HubTx {
                hub: &mut *self.hub,
                from: self.index,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        Some(HubTx {
            hub: &mut *self.hub,
            from: self.index,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}
