//! Three smoltcp stacks on an in-memory Ethernet hub: one sender, two listeners, IPv4
//! multicast through [`GroupSocket`]. All buffers are on the stack; nothing is static.

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};
use group_embedded::hub::Hub;
use group_embedded::net::GroupSocket;
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::{Failure, GROUP_ID, MESSAGES, Report};

/// Sizes of one node's smoltcp pieces on this target.
pub fn report_sizes(out: &mut impl Report) {
    use core::mem::size_of;
    out.line(format_args!(
        "size_of Interface={} udp::Socket={} GroupSocket<_,4,2>={} node buffers={} hub<3,4,{}>={} bytes",
        size_of::<Interface>(),
        size_of::<udp::Socket<'static>>(),
        size_of::<GroupSocket<MemorySequenceStore, 4, 2>>(),
        size_of::<Buffers>(),
        MTU,
        size_of::<FwHub>()
    ));
}

const PORT: u16 = 5684;
const GROUP: IpAddress = IpAddress::v4(239, 255, 0, 7);
const MTU: usize = 600;
type FwHub = Hub<3, 4, MTU>;

struct Buffers {
    rx_meta: [udp::PacketMetadata; 4],
    rx: [u8; 1024],
    tx_meta: [udp::PacketMetadata; 4],
    tx: [u8; 1024],
}

impl Buffers {
    fn new() -> Self {
        Self {
            rx_meta: [udp::PacketMetadata::EMPTY; 4],
            rx: [0; 1024],
            tx_meta: [udp::PacketMetadata::EMPTY; 4],
            tx: [0; 1024],
        }
    }
}

struct Node<'a> {
    iface: Interface,
    sockets: SocketSet<'a>,
    socket: GroupSocket<MemorySequenceStore, 4, 2>,
}

fn node<'a>(
    hub: &mut FwHub,
    index: u8,
    bufs: &'a mut Buffers,
    storage: &'a mut [SocketStorage<'a>; 1],
    keys: &RecordKeys,
    sid: Option<SenderId>,
) -> Result<Node<'a>, Failure> {
    let mac = EthernetAddress([0x02, 0, 0, 0, 0, index.saturating_add(1)]);
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = u64::from(index);
    let mut iface = Interface::new(config, &mut hub.port(usize::from(index)), NetInstant::ZERO);
    let mut pushed = Ok(());
    iface.update_ip_addrs(|a| {
        pushed = a
            .push(IpCidr::new(
                IpAddress::v4(192, 0, 2, index.saturating_add(1)),
                24,
            ))
            .map_err(|_| Failure::Net);
    });
    pushed?;
    let Buffers {
        rx_meta,
        rx,
        tx_meta,
        tx,
    } = bufs;
    let udp = udp::Socket::new(
        udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
        udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
    );
    let mut sockets = SocketSet::new(&mut storage[..]);
    let handle = sockets.add(udp);
    let mut gc = GroupConfig::new(GROUP_ID);
    if let Some(sid) = sid {
        gc = gc.with_sender_id(sid);
    }
    let mut group: Group<4, 2> = Group::new(gc);
    group
        .install_and_activate(Epoch(1), keys, Instant(0))
        .map_err(|_| Failure::Keys)?;
    let mut socket = GroupSocket::new(
        group,
        MemorySequenceStore::commissioned(),
        handle,
        IpEndpoint::new(GROUP, PORT),
    );
    socket
        .join(&mut iface, &mut sockets)
        .map_err(|_| Failure::Net)?;
    Ok(Node {
        iface,
        sockets,
        socket,
    })
}

fn pump(hub: &mut FwHub, nodes: &mut [Node<'_>; 3], ms: i64) {
    for _ in 0..20 {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.iface.poll(
                NetInstant::from_millis(ms),
                &mut hub.port(i),
                &mut n.sockets,
            );
        }
        if (0..3).all(|i| hub.pending(i) == 0) {
            return;
        }
    }
}

/// Sends three records from node 0; returns the deliveries counted at nodes 1 and 2.
pub fn multicast_round_trip() -> Result<usize, Failure> {
    let keys = native_keys(
        GROUP_ID,
        Epoch(1),
        Suite::AES_128_CCM_8,
        &EpochSecret([0x77; 32]),
    )
    .map_err(|_| Failure::Keys)?;
    let mut hub = FwHub::new();
    let (mut b0, mut b1, mut b2) = (Buffers::new(), Buffers::new(), Buffers::new());
    let mut s0 = [SocketStorage::EMPTY; 1];
    let mut s1 = [SocketStorage::EMPTY; 1];
    let mut s2 = [SocketStorage::EMPTY; 1];
    let mut nodes = [
        node(&mut hub, 0, &mut b0, &mut s0, &keys, Some(SenderId(1)))?,
        node(&mut hub, 1, &mut b1, &mut s1, &keys, None)?,
        node(&mut hub, 2, &mut b2, &mut s2, &keys, None)?,
    ];
    pump(&mut hub, &mut nodes, 0);
    let mut scratch = [0u8; 128];
    let sent = MESSAGES.get(..3).ok_or(Failure::Net)?;
    {
        let [n0, ..] = &mut nodes;
        for m in sent {
            n0.socket
                .send(&mut n0.sockets, Instant(1), m, &mut scratch)
                .map_err(|_| Failure::Net)?;
        }
    }
    pump(&mut hub, &mut nodes, 1);
    let mut delivered = 0usize;
    let [_, n1, n2] = &mut nodes;
    for n in [n1, n2] {
        let mut buf = [0u8; 256];
        let mut expect = sent.iter();
        while let Some(d) = n
            .socket
            .recv(&mut n.sockets, Instant(1), &mut buf)
            .map_err(|_| Failure::Net)?
        {
            for r in d {
                let r = r.map_err(|_| Failure::Net)?;
                if Some(&&*r.plaintext) != expect.next() || r.sender_id != SenderId(1) {
                    return Err(Failure::Net);
                }
                delivered = delivered.saturating_add(1);
            }
        }
        if expect.next().is_some() || n.socket.counters().accepted != 3 {
            return Err(Failure::Net);
        }
    }
    Ok(delivered)
}
