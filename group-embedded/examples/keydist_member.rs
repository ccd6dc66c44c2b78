//! A device that gets its group keys from a key server, on smoltcp: it joins through
//! [`group_embedded::member::MemberSocket`] with a key pair made by `dtls-group keygen`, gets
//! its sender ID and epoch keys, and sends a command to the group.
//!
//! Credentials: `dtls-group keygen --out PREFIX` writes `PREFIX.key` (the device's private
//! P-256 scalar, 64 hex digits on one line) and `PREFIX.pub` (its public key, SEC1 compressed,
//! 66 hex digits on one line); see `docs/cli.md`. The device is provisioned with its own
//! `device.key` and the key server's `server.pub`; the key server's configuration lists the
//! device's `device.pub`. This example **parses the key files' hex at startup**
//! ([`firmware::credentials`]): on a board the factory writes the two lines into a
//! provisioning area of the flash and the firmware parses them the same way; no file system,
//! no heap.
//!
//! Run it as `cargo run -p group-embedded --example keydist_member -- DIR`, where DIR holds
//! `server.key`, `server.pub`, `device.key` and `device.pub` made by
//!
//! ```sh
//! dtls-group keygen --out DIR/server
//! dtls-group keygen --out DIR/device
//! ```
//!
//! Without DIR it makes them itself in a temporary directory, with the same code
//! `dtls-group keygen` runs (`group_std::keyfile::generate`), and removes them afterwards.
//!
//! What is the host's (in `main`): the key server is the core's `KeyServer` on a second port
//! of the in-memory hub (in a deployment it is `dtls-group keyserver`), the Ethernet driver is
//! a hub port, the flash is simulated, the clock is virtual, and the random generator is the
//! operating system's (on a board, the MCU's TRNG). `mod firmware` is what the device holds.
//! `cargo test -p group-embedded --example keydist_member` runs the same check as a test.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use group_embedded::flash::FlashSequenceStore;
use group_embedded::flash::sim::SimNorFlash;
use group_embedded::group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, MemoryServerStore, Role, ServerCredentials,
};
use group_embedded::group_core::wire::Record;
use group_embedded::group_core::{Instant, SenderId, Suite};
use group_embedded::hub::Hub;
use group_embedded::smoltcp;
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};
use std::collections::HashMap;

mod firmware {
    use core::fmt;

    use group_embedded::embedded_storage::nor_flash::NorFlash;
    use group_embedded::flash::{FlashSequenceStore, SetupError};
    use group_embedded::group_core::keydist::{self, DeviceId, Role};
    use group_embedded::group_core::p256::ecdsa::{SigningKey, VerifyingKey};
    use group_embedded::group_core::rand_core::CryptoRng;
    use group_embedded::group_core::{Instant, Member, MemberConfig, MemberCredentials, SenderId};
    use group_embedded::member::{KeyDistError, MemberSocket};
    use group_embedded::net::{JoinError, RecvError, SendError, ethernet_interface};
    use group_embedded::smoltcp;
    use smoltcp::iface::{Interface, SocketSet, SocketStorage};
    use smoltcp::phy::Device;
    use smoltcp::socket::udp;
    use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

    /// The group this device joins, and where.
    pub const GROUP_ID: u32 = 7;
    /// The group's multicast address and port.
    pub const GROUP: IpEndpoint = IpEndpoint::new(IpAddress::v4(239, 255, 0, 7), 5684);
    /// The key server's unicast address and port.
    pub const SERVER: IpEndpoint = IpEndpoint::new(IpAddress::v4(192, 0, 2, 1), 5690);
    const KEYDIST_PORT: u16 = 5691;
    const STORE_START: u32 = 0;
    const STORE_PAGES: u32 = 2;
    const MTU: usize = 1280;

    /// Why a key file's line was refused.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum CredentialError {
        /// Not the expected number of hex digits, or a character that is not one.
        Hex,
        /// The private key is not a valid P-256 scalar.
        PrivateKey,
        /// The public key is not a compressed (02/03) or uncompressed (04) SEC1 P-256 point.
        PublicKey,
    }

    impl fmt::Display for CredentialError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                CredentialError::Hex => "not a key file line of hex digits",
                CredentialError::PrivateKey => "not a P-256 private key",
                CredentialError::PublicKey => "not a SEC1 P-256 public key",
            })
        }
    }

    impl core::error::Error for CredentialError {}

    /// Decodes one line of hex (surrounding whitespace and the final newline are ignored)
    /// into `out`, which it must fill exactly. Returns the bytes written.
    fn hex_line<'o>(line: &str, out: &'o mut [u8]) -> Result<&'o [u8], CredentialError> {
        let digits = line.trim().as_bytes();
        if !digits.len().is_multiple_of(2) || digits.len() / 2 > out.len() {
            return Err(CredentialError::Hex);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(CredentialError::Hex),
        };
        let n = digits.len() / 2;
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = match pair {
                [hi, lo] => (nibble(*hi)?, nibble(*lo)?),
                _ => return Err(CredentialError::Hex),
            };
            *o = (hi << 4) | lo;
        }
        out.get(..n).ok_or(CredentialError::Hex)
    }

    /// The device's credentials from the two lines it was provisioned with: its `device.key`
    /// and the key server's `server.pub`, as `dtls-group keygen` wrote them.
    pub fn credentials(
        device_key: &str,
        server_pub: &str,
    ) -> Result<MemberCredentials, CredentialError> {
        let mut scalar = [0u8; 32];
        let key = hex_line(device_key, &mut scalar).and_then(|bytes| {
            if bytes.len() != 32 {
                return Err(CredentialError::Hex);
            }
            SigningKey::from_slice(bytes).map_err(|_| CredentialError::PrivateKey)
        });
        scalar.fill(0);
        let mut point = [0u8; 65];
        let bytes = hex_line(server_pub, &mut point)?;
        let server = match bytes {
            [0x02 | 0x03, ..] if bytes.len() == 33 => VerifyingKey::from_sec1_bytes(bytes),
            [0x04, ..] if bytes.len() == 65 => VerifyingKey::from_sec1_bytes(bytes),
            _ => return Err(CredentialError::PublicKey),
        }
        .map_err(|_| CredentialError::PublicKey)?;
        Ok(MemberCredentials::signed(key?, server))
    }

    /// Everything that can stop the device, with a `From` for each error on the way.
    #[derive(Debug)]
    pub enum DeviceError {
        /// The provisioned credentials are unreadable.
        Credentials(CredentialError),
        /// The sequence store's region does not fit the flash.
        Store(SetupError),
        /// The member refused to start joining.
        Member(keydist::Error),
        /// The interface has no room for the device's address.
        Address,
        /// The UDP sockets could not be bound or the group joined.
        Join(JoinError),
        /// The key-distribution socket is not in the socket set, or the member could not
        /// write its next message.
        KeyDist(KeyDistError),
        /// A group datagram could not be taken from the socket.
        Recv(RecvError),
        /// A record could not be sent.
        Send(SendError),
    }

    macro_rules! from {
        ($($t:ty => $v:ident),*) => {$(
            impl From<$t> for DeviceError {
                fn from(e: $t) -> Self {
                    DeviceError::$v(e)
                }
            }
        )*};
    }
    from!(CredentialError => Credentials, SetupError => Store, keydist::Error => Member,
        JoinError => Join, KeyDistError => KeyDist, RecvError => Recv, SendError => Send);

    impl fmt::Display for DeviceError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                DeviceError::Credentials(e) => write!(f, "credentials: {e}"),
                DeviceError::Store(e) => write!(f, "sequence store: {e}"),
                DeviceError::Member(e) => write!(f, "member: {e}"),
                DeviceError::Address => f.write_str("no room for the interface address"),
                DeviceError::Join(e) => write!(f, "sockets: {e}"),
                DeviceError::KeyDist(e) => write!(f, "key distribution: {e}"),
                DeviceError::Recv(e) => write!(f, "receive: {e}"),
                DeviceError::Send(e) => write!(f, "send: {e}"),
            }
        }
    }

    impl core::error::Error for DeviceError {}

    /// The memory the network stack works in, owned by the caller (a `static` on a board):
    /// the group socket's and the key-distribution socket's queues.
    pub struct Buffers {
        meta: [[udp::PacketMetadata; 4]; 4],
        payload: [[u8; 2 * MTU]; 4],
        scratch: [u8; MTU],
    }

    impl Buffers {
        /// Empty buffers.
        pub const fn new() -> Self {
            Self {
                meta: [[udp::PacketMetadata::EMPTY; 4]; 4],
                payload: [[0; 2 * MTU]; 4],
                scratch: [0; MTU],
            }
        }
    }

    /// The device: its interface, its sockets, and the member with its two UDP sockets.
    pub struct Node<'a, F: NorFlash> {
        iface: Interface,
        sockets: SocketSet<'a>,
        member: MemberSocket<FlashSequenceStore<F>>,
        scratch: &'a mut [u8; MTU],
    }

    /// The same moment for smoltcp and for the group layer, from the one millisecond clock.
    fn instants(ms: u64) -> (smoltcp::time::Instant, Instant) {
        let net = smoltcp::time::Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
        (net, Instant(ms))
    }

    impl<'a, F: NorFlash> Node<'a, F> {
        /// Boots: opens the sequence store in `flash`, brings the interface up at `ip`, binds
        /// both sockets, joins the multicast group and starts joining at the key server.
        #[allow(clippy::too_many_arguments)]
        pub fn boot<D: Device>(
            device: &mut D,
            ms: u64,
            mac: [u8; 6],
            ip: IpAddress,
            buffers: &'a mut Buffers,
            storage: &'a mut [SocketStorage<'a>; 2],
            flash: F,
            device_id: DeviceId,
            credentials: MemberCredentials,
        ) -> Result<Self, DeviceError> {
            let (net_now, now) = instants(ms);
            let mut iface =
                ethernet_interface(device, mac, IpCidr::new(ip, 24), u64::from(mac[5]), net_now)
                    .ok_or(DeviceError::Address)?;
            let Buffers {
                meta,
                payload,
                scratch,
            } = buffers;
            let [m0, m1, m2, m3] = meta;
            let [p0, p1, p2, p3] = payload;
            let group_socket = udp::Socket::new(
                udp::PacketBuffer::new(&mut m0[..], &mut p0[..]),
                udp::PacketBuffer::new(&mut m1[..], &mut p1[..]),
            );
            let keydist_socket = udp::Socket::new(
                udp::PacketBuffer::new(&mut m2[..], &mut p2[..]),
                udp::PacketBuffer::new(&mut m3[..], &mut p3[..]),
            );
            let mut sockets = SocketSet::new(&mut storage[..]);
            let group_handle = sockets.add(group_socket);
            let keydist_handle = sockets.add(keydist_socket);

            // A lost store is handed on too: the member asks for a fresh epoch when it joins.
            let (store, _state) = FlashSequenceStore::open(flash, STORE_START, STORE_PAGES)?;
            let config = MemberConfig::new(device_id, GROUP_ID, Role::Sender);
            let mut member = MemberSocket::new(
                Member::new(config, credentials, store),
                group_handle,
                GROUP,
                keydist_handle,
                SERVER,
            );
            member.bind(&mut iface, &mut sockets, KEYDIST_PORT)?;
            member.member_mut().join(now)?;
            Ok(Self {
                iface,
                sockets,
                member,
                scratch,
            })
        }

        /// One pass of the main loop at `ms`: key-distribution messages both ways, frames, and
        /// the group's records to `deliver`.
        pub fn poll<D: Device, R: CryptoRng + ?Sized>(
            &mut self,
            device: &mut D,
            ms: u64,
            rng: &mut R,
            deliver: &mut dyn FnMut(SenderId, &[u8]),
        ) -> Result<(), DeviceError> {
            let (net_now, now) = instants(ms);
            self.member
                .poll_keydist(&mut self.sockets, now, rng, &mut self.scratch[..])?;
            self.iface.poll(net_now, device, &mut self.sockets);
            self.member
                .poll_keydist(&mut self.sockets, now, rng, &mut self.scratch[..])?;
            let mut buf = [0u8; MTU];
            while let Some(datagram) = self.member.recv(&mut self.sockets, now, &mut buf)? {
                for record in datagram.flatten() {
                    deliver(record.sender_id, record.plaintext);
                }
            }
            while self.member.poll_event().is_some() {} // a real device logs these
            self.iface.poll(net_now, device, &mut self.sockets);
            Ok(())
        }

        /// Whether the device holds the group's keys.
        pub fn is_joined(&self) -> bool {
            self.member.member().is_joined()
        }

        /// The sender ID the key server assigned.
        pub fn sender_id(&self) -> Option<SenderId> {
            self.member.member().group()?.config().own_sender_id
        }

        /// Seals `plaintext` with the distributed keys and queues it to the group.
        pub fn send(&mut self, ms: u64, plaintext: &[u8]) -> Result<(), DeviceError> {
            let (_, now) = instants(ms);
            self.member
                .send(&mut self.sockets, now, plaintext, &mut self.scratch[..])?;
            Ok(())
        }
    }
}

/// The four key files, as `dtls-group keygen` writes them: in `dir`, or made in a temporary
/// directory with the same code (then removed by the caller).
fn key_files(dir: Option<PathBuf>) -> std::io::Result<(PathBuf, bool)> {
    if let Some(dir) = dir {
        return Ok((dir, false));
    }
    let dir =
        std::env::temp_dir().join(format!("dtls-group-keydist-example-{}", std::process::id()));
    std::fs::create_dir(&dir)?;
    for name in ["server", "device"] {
        group_std::keyfile::generate(&dir.join(name))?; // `dtls-group keygen --out DIR/NAME`
    }
    Ok((dir, true))
}

/// The run: the key server (hub port 0) admits the device (port 1), the device joins and sends
/// "on" to the group, and the key server's node sees the record go by with the device's
/// sender ID. Returns that sender ID.
fn run(dir: &Path) -> Result<SenderId, Box<dyn std::error::Error>> {
    let mut rng = group_std::keyfile::os_rng();
    let mut hub: Box<Hub<2, 16, 1514>> = Box::default();
    let device_id = DeviceId(1);

    // The key server, with its key and the device's public key (from its configuration).
    let server_key = group_std::keyfile::read_private(&dir.join("server.key"))?;
    let device_pub = group_std::keyfile::read_public_file(&dir.join("device.pub"))?;
    let mut server: KeyServer<_> =
        KeyServer::open(ServerCredentials::new(server_key), MemoryServerStore::new())
            .map_err(|e| format!("key server: {e}"))?;
    server
        .create_group(
            GroupSpec::new(firmware::GROUP_ID, Suite::AES_128_CCM_8),
            Instant(0),
            &mut rng,
        )
        .map_err(|e| format!("key server: {e}"))?;
    server
        .admit_device(
            device_id,
            DeviceCredential::public_key(&device_pub),
            Role::Sender,
            &[firmware::GROUP_ID],
        )
        .map_err(|e| format!("key server: {e}"))?;
    let mut server_storage = [SocketStorage::EMPTY; 2];
    let mut server_sockets = SocketSet::new(&mut server_storage[..]);
    let mut server_iface = group_embedded::net::ethernet_interface(
        &mut hub.port(0),
        [2, 0, 0, 0, 0, 1],
        IpCidr::new(firmware::SERVER.addr, 24),
        1,
        smoltcp::time::Instant::ZERO,
    )
    .ok_or("key server: no room for its address")?;
    let udp_socket = || {
        udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]),
        )
    };
    let keydist = server_sockets.add(udp_socket());
    let watch = server_sockets.add(udp_socket()); // sees the group's traffic go by
    server_sockets
        .get_mut::<udp::Socket>(keydist)
        .bind(firmware::SERVER.port)?;
    server_sockets
        .get_mut::<udp::Socket>(watch)
        .bind(firmware::GROUP.port)?;
    server_iface.join_multicast_group(firmware::GROUP.addr)?;

    // The device, provisioned with the two lines of its key files.
    let device_key = std::fs::read_to_string(dir.join("device.key"))?;
    let server_pub = std::fs::read_to_string(dir.join("server.pub"))?;
    let credentials = firmware::credentials(&device_key, &server_pub)?;
    let mut flash: SimNorFlash<2, 512, 4> = SimNorFlash::new();
    FlashSequenceStore::commission_at_factory(&mut flash, 0, 2)
        .map_err(firmware::DeviceError::from)?;
    let mut buffers = Box::new(firmware::Buffers::new());
    let mut storage = [SocketStorage::EMPTY; 2];
    let mut device = firmware::Node::boot(
        &mut hub.port(1),
        0,
        [2, 0, 0, 0, 0, 2],
        IpAddress::v4(192, 0, 2, 2),
        &mut buffers,
        &mut storage,
        flash,
        device_id,
        credentials,
    )?;

    let mut endpoints: HashMap<DeviceId, IpEndpoint> = HashMap::new();
    let mut buf = [0u8; 2048];
    let mut sent = false;
    let mut seen = None;
    // Bounded: 500 passes of 10 virtual ms.
    for pass in 0..500u64 {
        let ms = pass * 10;
        let now = Instant(ms);
        device.poll(&mut hub.port(1), ms, &mut rng, &mut |_, _| {})?;
        server_iface.poll(
            smoltcp::time::Instant::from_millis(ms as i64),
            &mut hub.port(0),
            &mut server_sockets,
        );
        let socket = server_sockets.get_mut::<udp::Socket>(keydist);
        while let Ok((n, meta)) = socket.recv_slice(&mut buf) {
            // As the daemon does: note where a device is once it has answered a challenge.
            if let Ok(received) = server.handle_message(now, &mut rng, &buf[..n]) {
                endpoints.insert(received.device(), meta.endpoint);
            }
        }
        while let Some(tx) = server
            .poll_transmit(now, &mut rng, &mut buf)
            .map_err(|e| format!("key server: {e}"))?
        {
            if let Some(endpoint) = endpoints.get(&tx.device_id) {
                socket.send_slice(&buf[..tx.len], *endpoint)?;
            }
        }
        let watch = server_sockets.get_mut::<udp::Socket>(watch);
        while let Ok((n, _)) = watch.recv_slice(&mut buf) {
            if let Ok(record) = Record::new_checked(&buf[..n]) {
                seen = Some(record.header().sender_id);
            }
        }
        if device.is_joined() && !sent {
            device.send(ms, b"on")?;
            sent = true;
        }
        if seen.is_some() {
            break;
        }
    }
    let assigned = device.sender_id().ok_or("the device did not join")?;
    let seen = seen.ok_or("no record from the device went by")?;
    println!(
        "device joined with sender ID {}; its record went by with sender ID {}",
        assigned.0, seen.0
    );
    if seen != assigned {
        return Err("the record's sender ID is not the assigned one".into());
    }
    Ok(assigned)
}

fn main() -> ExitCode {
    let dir = std::env::args_os().nth(1).map(PathBuf::from);
    let (dir, made) = match key_files(dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: key files: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&dir);
    if made {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
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
    fn a_device_joins_with_keygen_credentials_and_sends() {
        let (dir, made) = super::key_files(None).unwrap();
        let result = super::run(&dir);
        if made {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        result.unwrap();
    }

    #[test]
    fn credentials_refuse_what_keygen_never_writes() {
        use super::firmware::{CredentialError, credentials};
        let key = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721\n";
        let public = "020b375ec216f6b749f3346204b0c426763f9ca502796aa1640feaa4af1e3fedf0\n";
        assert!(credentials(key, public).is_ok());
        assert_eq!(
            credentials(&key[..62], public).err(),
            Some(CredentialError::Hex)
        );
        assert_eq!(credentials("zz", public).err(), Some(CredentialError::Hex));
        assert_eq!(
            credentials(&"00".repeat(32), public).err(),
            Some(CredentialError::PrivateKey)
        );
        let compact = format!("05{}", &public[2..]);
        assert_eq!(
            credentials(key, &compact).err(),
            Some(CredentialError::PublicKey)
        );
    }
}
