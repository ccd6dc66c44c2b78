//! The async group socket on embassy-net: four embassy-net stacks on an in-memory Ethernet
//! segment (a driver that copies each frame to every other stack), run by one
//! `embassy_futures::block_on`. Node 0 sends, nodes 1 and 2 receive, node 3 is an intruder
//! with a plain UDP socket that replays what it captured. No host network is touched.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Waker};

use embassy_futures::block_on;
use embassy_futures::join::join4;
use embassy_futures::select::{Either, select};
use embassy_net::driver::{Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{
    Config, IpAddress, IpEndpoint, Ipv4Cidr, Ipv6Cidr, StackResources, StaticConfigV4,
    StaticConfigV6,
};
use embassy_time::{Duration, with_timeout};
use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, SenderId};
use group_embedded::embassy::AsyncGroupSocket;
use group_embedded::net::GroupEndpoint;

const GROUP_ID: u32 = 0x0107;
const PORT: u16 = 5684;
const NODES: usize = 4;

#[derive(Default)]
struct Segment {
    inbox: [VecDeque<Vec<u8>>; NODES],
    wakers: [Option<Waker>; NODES],
}

struct Port {
    segment: Rc<RefCell<Segment>>,
    index: usize,
}

struct Rx(Vec<u8>);
struct Tx {
    segment: Rc<RefCell<Segment>>,
    from: usize,
}

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        let mut seg = self.segment.borrow_mut();
        for i in (0..NODES).filter(|i| *i != self.from) {
            seg.inbox[i].push_back(frame.clone());
            if let Some(w) = seg.wakers[i].take() {
                w.wake();
            }
        }
        r
    }
}

impl Driver for Port {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, cx: &mut Context) -> Option<(Rx, Tx)> {
        let mut seg = self.segment.borrow_mut();
        match seg.inbox[self.index].pop_front() {
            Some(frame) => Some((
                Rx(frame),
                Tx {
                    segment: self.segment.clone(),
                    from: self.index,
                },
            )),
            None => {
                seg.wakers[self.index] = Some(cx.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _: &mut Context) -> Option<Tx> {
        Some(Tx {
            segment: self.segment.clone(),
            from: self.index,
        })
    }

    fn link_state(&mut self, _: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.max_transmission_unit = 1514;
        c
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet([0x02, 0, 0, 0, 1, self.index as u8 + 1])
    }
}

fn config(index: usize, v6: bool) -> Config {
    let n = index as u8 + 1;
    if v6 {
        Config::ipv6_static(StaticConfigV6 {
            address: Ipv6Cidr::new(
                embassy_net::Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(n)),
                64,
            ),
            gateway: None,
            dns_servers: Default::default(),
        })
    } else {
        Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(embassy_net::Ipv4Address::new(192, 0, 2, n), 24),
            gateway: None,
            dns_servers: Default::default(),
        })
    }
}

struct Bufs {
    rx_meta: [PacketMetadata; 8],
    rx: [u8; 4096],
    tx_meta: [PacketMetadata; 8],
    tx: [u8; 4096],
}

impl Bufs {
    fn new() -> Box<Self> {
        Box::new(Self {
            rx_meta: [PacketMetadata::EMPTY; 8],
            rx: [0; 4096],
            tx_meta: [PacketMetadata::EMPTY; 8],
            tx: [0; 4096],
        })
    }
}

fn run(v6: bool) {
    let group_addr: IpAddress = if v6 {
        embassy_net::Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 7, 1).into()
    } else {
        embassy_net::Ipv4Address::new(239, 255, 0, 7).into()
    };
    let group_ep = IpEndpoint::new(group_addr, PORT);
    let keys = native_keys(
        GROUP_ID,
        Epoch(1),
        Suite::AES_128_CCM,
        &EpochSecret([0x42; 32]),
    )
    .unwrap();
    let segment = Rc::new(RefCell::new(Segment::default()));
    let mut resources: Vec<StackResources<2>> = (0..NODES).map(|_| StackResources::new()).collect();
    let mut stacks = Vec::new();
    let mut runners = Vec::new();
    for (i, res) in resources.iter_mut().enumerate() {
        let port = Port {
            segment: segment.clone(),
            index: i,
        };
        let (stack, runner) = embassy_net::new(port, config(i, v6), res, i as u64);
        stacks.push(stack);
        runners.push(runner);
    }
    let mut bufs: Vec<Box<Bufs>> = (0..NODES).map(|_| Bufs::new()).collect();
    let mut sockets = Vec::new();
    for (stack, b) in stacks.iter().zip(bufs.iter_mut()) {
        let Bufs {
            rx_meta,
            rx,
            tx_meta,
            tx,
        } = &mut **b;
        sockets.push(UdpSocket::new(*stack, rx_meta, rx, tx_meta, tx));
    }
    let mut intruder_socket = sockets.pop().unwrap();
    let mut members: Vec<AsyncGroupSocket<'_, MemorySequenceStore>> = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let mut gc = GroupConfig::new(GROUP_ID);
        if i == 0 {
            gc = gc.with_sender_id(SenderId(1));
        }
        let mut group: Group = Group::new(gc);
        group
            .install_and_activate(Epoch(1), &keys, group_core::time::Instant(0))
            .unwrap();
        let core = GroupEndpoint::new(group, MemorySequenceStore::commissioned(), group_ep);
        let mut m = AsyncGroupSocket::new(core, socket);
        m.join(stacks[i]).unwrap();
        members.push(m);
    }
    intruder_socket.bind(PORT).unwrap();
    stacks[3].join_multicast_group(group_addr).unwrap();

    let [r0, r1, r2, r3]: [_; 4] = runners.try_into().ok().unwrap();
    let (mut r0, mut r1, mut r2, mut r3) = (r0, r1, r2, r3);
    let test = async {
        let [sender, l1, l2]: &mut [_; 3] = (&mut members[..]).try_into().unwrap();
        let mut scratch = [0u8; 128];
        let messages: [&[u8]; 3] = [b"on", b"dim 40", b"off"];
        for m in messages {
            sender.send(m, &mut scratch).await.unwrap();
        }
        let mut got = Vec::new();
        for l in [&mut *l1, &mut *l2] {
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            while seen.len() < 3 {
                for r in l.recv(&mut buf).await.unwrap() {
                    let d = r.unwrap();
                    seen.push((d.sender_id, d.seq, d.plaintext.to_vec()));
                }
            }
            got.push(seen);
        }
        // The intruder captured the three datagrams; it sends the first one again.
        let mut cap = [0u8; 256];
        let (n, _) = intruder_socket.recv_from(&mut cap).await.unwrap();
        intruder_socket.send_to(&cap[..n], group_ep).await.unwrap();
        let mut replays = Vec::new();
        for l in [&mut *l1, &mut *l2] {
            let mut buf = [0u8; 256];
            let verdicts: Vec<_> = l.recv(&mut buf).await.unwrap().map(|r| r.err()).collect();
            replays.push(verdicts);
        }
        (got, replays, sender.stats(), l1.counters().replay)
    };
    let runners = join4(r0.run(), r1.run(), r2.run(), r3.run());
    let outcome = block_on(select(runners, with_timeout(Duration::from_secs(20), test)));
    let Either::Second(Ok((got, replays, sender_stats, replay_count))) = outcome else {
        panic!("test did not finish in time");
    };
    let expected: Vec<_> = [&b"on"[..], b"dim 40", b"off"]
        .iter()
        .zip(0u64..)
        .map(|(m, seq)| (SenderId(1), seq, m.to_vec()))
        .collect();
    assert_eq!(got, vec![expected.clone(), expected]);
    assert_eq!(
        replays,
        vec![vec![Some(OpenError::Replay)], vec![Some(OpenError::Replay)]]
    );
    assert_eq!(sender_stats.datagrams_sent, 3);
    assert_eq!(replay_count, 1);
}

#[test]
fn ipv4_async_group_socket_delivers_and_drops_replays() {
    run(false);
}

#[test]
fn ipv6_async_group_socket_delivers_and_drops_replays() {
    run(true);
}
