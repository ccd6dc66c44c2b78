//! A complete light on smoltcp: its network interface, its buffers, its one clock, its
//! sequence store in NOR flash, its group keys, and its error handling, with nothing left
//! out. Its switch is the same code with another sender ID.
//!
//! `mod firmware` is what a Cortex-M firmware holds: it uses `core` and `group_embedded`
//! (and the crates it re-exports) only, no heap and no `std`. What is the host's is in
//! `main`: the Ethernet driver is a port of the in-memory hub
//! ([`group_embedded::hub::Hub`]) instead of the board's MAC driver, the NOR flash is the
//! simulated one ([`group_embedded::flash::sim::SimNorFlash`]) instead of the chip's, and the
//! clock is a virtual millisecond counter instead of SysTick. On a board, replace those three
//! and keep `mod firmware`.
//!
//! The group keys are provisioned, not distributed: the factory writes the group's epoch
//! secret into the device and both ends derive the record keys from it
//! ([`native_keys`](group_embedded::group_core::native_keys)). For keys from a key server, see
//! the `keydist_member` example.
//!
//! Run it with `cargo run -p group-embedded --example smoltcp_light`: the switch sends "on",
//! "dim 40" and "off", the light follows and answers each with its new level, and the run
//! checks that it did (exit status 1 otherwise). `cargo test -p group-embedded --example
//! smoltcp_light` runs the same check as a test.

use std::process::ExitCode;

use group_embedded::flash::FlashSequenceStore;
use group_embedded::flash::sim::SimNorFlash;
use group_embedded::group_core::{EpochSecret, MemorySequenceStore, SenderId};
use group_embedded::hub::Hub;
use group_embedded::smoltcp::iface::SocketStorage;

mod firmware {
    use core::fmt;

    use group_embedded::embedded_storage::nor_flash::NorFlash;
    use group_embedded::flash::{FlashSequenceStore, SetupError, StoreState};
    use group_embedded::group_core::{
        Epoch, EpochSecret, Group, GroupConfig, Instant, KeyError, SealError, SenderId,
        SequenceStore, Suite, native_keys,
    };
    use group_embedded::net::{GroupSocket, JoinError, RecvError, SendError, ethernet_interface};
    use group_embedded::smoltcp;
    use smoltcp::iface::{Interface, SocketSet, SocketStorage};
    use smoltcp::phy::Device;
    use smoltcp::socket::udp;
    use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

    /// The lighting group: its ID, its multicast address and port, its suite, its epoch.
    pub const GROUP_ID: u32 = 7;
    const GROUP: IpEndpoint = IpEndpoint::new(IpAddress::v4(239, 255, 0, 7), 5684);
    const SUITE: Suite = Suite::AES_128_CCM_8;
    const EPOCH: Epoch = Epoch(1);
    /// Where the sequence store lives in flash: two erase pages from offset 0.
    pub const STORE_START: u32 = 0;
    /// Erase pages of the sequence store.
    pub const STORE_PAGES: u32 = 2;
    /// The largest datagram this device sends or receives.
    const MTU: usize = 256;

    /// The one clock of the device: a monotonic millisecond counter (SysTick, an RTC). The
    /// network stack and the group layer both read it, through [`Clock::instants`].
    pub trait Clock {
        /// Milliseconds since boot.
        fn now_ms(&self) -> u64;

        /// The same moment for smoltcp and for the group layer.
        fn instants(&self) -> (smoltcp::time::Instant, Instant) {
            let ms = self.now_ms();
            let net = smoltcp::time::Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
            (net, Instant(ms))
        }
    }

    /// The memory the network stack works in, owned by the caller (a `static` on a board):
    /// one UDP socket's receive and send queues.
    pub struct Buffers {
        rx_meta: [udp::PacketMetadata; 4],
        rx: [u8; 4 * MTU],
        tx_meta: [udp::PacketMetadata; 4],
        tx: [u8; 4 * MTU],
        scratch: [u8; MTU],
    }

    impl Buffers {
        /// Empty buffers.
        pub const fn new() -> Self {
            Self {
                rx_meta: [udp::PacketMetadata::EMPTY; 4],
                rx: [0; 4 * MTU],
                tx_meta: [udp::PacketMetadata::EMPTY; 4],
                tx: [0; 4 * MTU],
                scratch: [0; MTU],
            }
        }
    }

    /// Everything that can stop a device, with a `From` for each error on the way, so that
    /// `?` works on all of them.
    #[derive(Debug)]
    pub enum DeviceError {
        /// The sequence store's region does not fit the flash.
        Store(SetupError),
        /// The group keys could not be derived or installed.
        Keys(KeyError),
        /// The interface has no room for the device's address.
        Address,
        /// The UDP socket could not be bound or the group joined.
        Join(JoinError),
        /// A received datagram could not be taken from the socket.
        Recv(RecvError),
        /// A record could not be sent (for a switch, a command that did not go out).
        Send(SendError),
    }

    impl From<SetupError> for DeviceError {
        fn from(e: SetupError) -> Self {
            DeviceError::Store(e)
        }
    }
    impl From<KeyError> for DeviceError {
        fn from(e: KeyError) -> Self {
            DeviceError::Keys(e)
        }
    }
    impl From<JoinError> for DeviceError {
        fn from(e: JoinError) -> Self {
            DeviceError::Join(e)
        }
    }
    impl From<RecvError> for DeviceError {
        fn from(e: RecvError) -> Self {
            DeviceError::Recv(e)
        }
    }
    impl From<SendError> for DeviceError {
        fn from(e: SendError) -> Self {
            DeviceError::Send(e)
        }
    }

    impl fmt::Display for DeviceError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                DeviceError::Store(e) => write!(f, "sequence store: {e}"),
                DeviceError::Keys(e) => write!(f, "group keys: {e}"),
                DeviceError::Address => f.write_str("no room for the interface address"),
                DeviceError::Join(e) => write!(f, "group socket: {e}"),
                DeviceError::Recv(e) => write!(f, "receive: {e}"),
                DeviceError::Send(e) => write!(f, "send: {e}"),
            }
        }
    }

    impl core::error::Error for DeviceError {}

    /// A device of the lighting group: its interface, its sockets, its group socket.
    pub struct Node<'a, S: SequenceStore> {
        iface: Interface,
        sockets: SocketSet<'a>,
        group: GroupSocket<S>,
        scratch: &'a mut [u8; MTU],
    }

    /// Opens the sequence store in flash at boot and says what it found. A lost store is
    /// handed on all the same: the group layer then refuses to send (it would reuse sequence
    /// numbers), and the device keeps receiving.
    pub fn open_store<F: NorFlash>(
        flash: F,
        log: &mut dyn FnMut(fmt::Arguments<'_>),
    ) -> Result<FlashSequenceStore<F>, DeviceError> {
        let (store, state) = FlashSequenceStore::open(flash, STORE_START, STORE_PAGES)?;
        match state {
            StoreState::CommissionedEmpty => log(format_args!("sequence store: first boot")),
            StoreState::Reserved(_) => {}
            StoreState::Lost(loss) => {
                log(format_args!("sequence store lost ({loss}): receiving only"))
            }
        }
        Ok(store)
    }

    impl<'a, S: SequenceStore> Node<'a, S> {
        /// Boots the device: the interface on `device` with MAC address `mac` and IPv4
        /// address `ip`, one UDP socket in `buffers`, the group's keys from the provisioned
        /// `secret`, sending as `sender_id`, its sequence numbers reserved in `store`.
        #[allow(clippy::too_many_arguments)]
        pub fn boot<D: Device>(
            device: &mut D,
            clock: &dyn Clock,
            mac: [u8; 6],
            ip: IpAddress,
            buffers: &'a mut Buffers,
            storage: &'a mut [SocketStorage<'a>; 1],
            secret: &EpochSecret,
            sender_id: SenderId,
            store: S,
        ) -> Result<Self, DeviceError> {
            let (net_now, now) = clock.instants();
            let mut iface =
                ethernet_interface(device, mac, IpCidr::new(ip, 24), u64::from(mac[5]), net_now)
                    .ok_or(DeviceError::Address)?;

            let Buffers {
                rx_meta,
                rx,
                tx_meta,
                tx,
                scratch,
            } = buffers;
            let socket = udp::Socket::new(
                udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
                udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
            );
            let mut sockets = SocketSet::new(&mut storage[..]);
            let handle = sockets.add(socket);

            let keys = native_keys(GROUP_ID, EPOCH, SUITE, secret)?;
            let mut group: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(sender_id));
            group.install_and_activate(EPOCH, &keys, now)?;
            let mut group = GroupSocket::new(group, store, handle, GROUP);
            group.join(&mut iface, &mut sockets)?;
            Ok(Self {
                iface,
                sockets,
                group,
                scratch,
            })
        }

        /// Seals `plaintext` and queues it to the group. A refused send is reported, not
        /// fatal: the caller decides (retry after the next poll, or drop).
        pub fn send(&mut self, clock: &dyn Clock, plaintext: &[u8]) -> Result<(), SendError> {
            let (_, now) = clock.instants();
            self.group
                .send(&mut self.sockets, now, plaintext, &mut self.scratch[..])
                .map(|_| ())
        }

        /// One pass of the main loop: moves frames, then hands every authentic record to
        /// `deliver` (sender ID, plaintext). Forged, replayed and malformed records are dropped
        /// and counted by the group layer ([`Node::dropped`]).
        pub fn poll<D: Device>(
            &mut self,
            device: &mut D,
            clock: &dyn Clock,
            deliver: &mut dyn FnMut(SenderId, &[u8]),
        ) -> Result<(), DeviceError> {
            let (net_now, now) = clock.instants();
            self.iface.poll(net_now, device, &mut self.sockets);
            let mut buf = [0u8; MTU];
            while let Some(datagram) = self.group.recv(&mut self.sockets, now, &mut buf)? {
                for record in datagram.flatten() {
                    deliver(record.sender_id, record.plaintext);
                }
            }
            self.group.handle_timeout(now);
            while self.group.poll_event().is_some() {} // a real device logs these
            Ok(())
        }

        /// Records dropped so far, for every reason.
        pub fn dropped(&self) -> u64 {
            self.group.counters().dropped()
        }
    }

    /// What a light does with a command: its new level (0 to 100 %), or `None` for a payload
    /// it does not know.
    pub fn apply(level: u8, command: &[u8]) -> Option<u8> {
        match command {
            b"on" => Some(if level == 0 { 100 } else { level }),
            b"off" => Some(0),
            [b'd', b'i', b'm', b' ', digits @ ..] => {
                let text = core::str::from_utf8(digits).ok()?;
                text.parse::<u8>().ok().filter(|l| *l <= 100)
            }
            _ => None,
        }
    }

    /// Why a status report could not go out (the light keeps working).
    pub fn report_failed(e: SendError) -> bool {
        matches!(
            e,
            SendError::QueueFull | SendError::Seal(SealError::SequenceStateLost(_))
        )
    }
}

/// The host's clock for the run: virtual milliseconds, advanced by the loop.
struct VirtualClock(std::cell::Cell<u64>);

impl firmware::Clock for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// The run: a light (hub port 0, sender ID 2, flash store) and its switch (hub port 1,
/// sender ID 1). Returns the light's levels as it applied them and the levels the switch saw
/// reported.
fn run() -> Result<(Vec<u8>, Vec<u8>), Box<dyn std::error::Error>> {
    use firmware::{Buffers, DeviceError, Node};

    // What the factory provisioned: the group's epoch secret, and a commissioned store.
    let secret = EpochSecret([0x42; 32]);
    let mut flash: SimNorFlash<2, 256, 4> = SimNorFlash::new();
    FlashSequenceStore::commission_at_factory(
        &mut flash,
        firmware::STORE_START,
        firmware::STORE_PAGES,
    )
    .map_err(DeviceError::from)?;

    let mut hub: Box<Hub<2, 16, 1514>> = Box::default();
    let clock = VirtualClock(std::cell::Cell::new(0));
    let mut log = |line: std::fmt::Arguments<'_>| println!("light: {line}");

    let mut light_buffers = Buffers::new();
    let mut light_storage = [SocketStorage::EMPTY; 1];
    let store = firmware::open_store(flash, &mut log)?;
    let mut light = Node::boot(
        &mut hub.port(0),
        &clock,
        [0x02, 0, 0, 0, 0, 0x02],
        group_embedded::smoltcp::wire::IpAddress::v4(192, 0, 2, 2),
        &mut light_buffers,
        &mut light_storage,
        &secret,
        SenderId(2),
        store,
    )?;

    let mut switch_buffers = Buffers::new();
    let mut switch_storage = [SocketStorage::EMPTY; 1];
    let mut switch = Node::boot(
        &mut hub.port(1),
        &clock,
        [0x02, 0, 0, 0, 0, 0x01],
        group_embedded::smoltcp::wire::IpAddress::v4(192, 0, 2, 1),
        &mut switch_buffers,
        &mut switch_storage,
        &secret,
        SenderId(1),
        MemorySequenceStore::commissioned(),
    )?;

    let mut level = 0u8;
    let mut applied = Vec::new();
    let mut reported = Vec::new();
    let mut commands = [&b"on"[..], b"dim 40", b"off"].into_iter();
    // Bounded: 200 passes of 10 virtual ms.
    for pass in 0..200u32 {
        if pass % 20 == 10
            && let Some(command) = commands.next()
        {
            switch.send(&clock, command).map_err(DeviceError::from)?;
        }
        let mut status = None;
        light.poll(&mut hub.port(0), &clock, &mut |sid, command| {
            if sid != SenderId(1) {
                return; // the light follows the switch only
            }
            if let Some(new) = firmware::apply(level, command) {
                level = new;
                applied.push(new);
                status = Some(new);
            }
        })?;
        if let Some(new) = status
            && let Err(e) = light.send(&clock, &[b'L', new])
        {
            if !firmware::report_failed(e) {
                return Err(DeviceError::from(e).into());
            }
            log(format_args!("status report not sent: {e}"));
        }
        switch.poll(&mut hub.port(1), &clock, &mut |sid, report| {
            if let (SenderId(2), [b'L', l]) = (sid, report) {
                reported.push(*l);
            }
        })?;
        clock.0.set(clock.0.get() + 10);
    }
    println!(
        "light applied {applied:?}, switch saw {reported:?}, dropped {} / {}",
        light.dropped(),
        switch.dropped()
    );
    Ok((applied, reported))
}

fn main() -> ExitCode {
    match run() {
        Ok((applied, reported)) if applied == [100, 40, 0] && reported == applied => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("the light did not follow the switch");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_light_follows_its_switch() {
        let (applied, reported) = super::run().unwrap();
        assert_eq!(applied, [100, 40, 0]);
        assert_eq!(reported, applied);
    }
}
