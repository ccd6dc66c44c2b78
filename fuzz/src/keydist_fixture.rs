//! `keydist_server` / `keydist_member`: a key server with a group, device 1 (sender) joined
//! and acknowledged, device 2 (listener) with its join answered but the answer not yet
//! delivered, then a rekey whose bundle for device 1 is not yet delivered either: both
//! members are mid-protocol. Every message exchanged is captured, for the targets to replay
//! and mutate. [`setup_split`]: the same in a group with record signatures and 27 senders, whose
//! lists continue in `SenderKeys` parts; device 1 holds the rekey's bundle waiting for its
//! parts (captured, not delivered).

use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    MemberState, MemoryServerStore, Psk, Role, ServerCredentials,
};
use group_core::sequence::{MemorySequenceStore, StoreError, StoredSequence};
use group_core::suite::Suite;
use group_core::time::Instant;
use p256::ecdsa::SigningKey;

use crate::TestRng;

/// The group of the set-up.
pub const GROUP: u32 = 42;

/// The server type of the set-up.
pub type Server = KeyServer<MemoryServerStore>;
/// The member type of the set-up.
pub type Device = Member<MemorySequenceStore, 32>;

/// The set-up, mid-protocol.
pub struct Setup {
    /// The key server.
    pub server: Server,
    /// Device 1: joined sender, a rekey bundle in flight to it.
    pub joined: Device,
    /// Device 2: joining listener, its join response in flight.
    pub joining: Device,
    /// Every message exchanged, in order.
    pub captured: Vec<Vec<u8>>,
    /// The RNG (deterministic).
    pub rng: TestRng,
    /// The time of the set-up's last step.
    pub now: Instant,
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_slice(&[b; 32]).expect("valid scalar")
}

/// Device `m` asks to join and answers the server's challenge. Returns the three messages: the
/// join request, the challenge and the challenged join request, which is not yet handed to
/// the server.
fn challenged_join(
    server: &mut Server,
    m: &mut Device,
    now: Instant,
    rng: &mut TestRng,
) -> [Vec<u8>; 3] {
    let mut buf = [0u8; 2048];
    m.join(now).expect("join");
    let n = m
        .poll_transmit(now, rng, &mut buf)
        .expect("tx")
        .expect("join request");
    let request = buf[..n].to_vec();
    server
        .handle_message(now, rng, &request)
        .expect("join challenged");
    let t = server
        .poll_transmit(now, rng, &mut buf)
        .expect("tx")
        .expect("challenge");
    let challenge = buf[..t.len].to_vec();
    m.handle_message(now, &challenge)
        .expect("challenge accepted");
    let n = m
        .poll_transmit(now, rng, &mut buf)
        .expect("tx")
        .expect("challenged join request");
    [request, challenge, buf[..n].to_vec()]
}

/// Builds the set-up in PSK mode (fast) or signed mode.
pub fn setup(signed: bool) -> Setup {
    let mut rng = TestRng(7);
    let now = Instant(1_000);
    let server_key = key(0x11);
    let mut server: Server = KeyServer::open(
        ServerCredentials::new(server_key.clone()),
        MemoryServerStore::new(),
    )
    .expect("empty store");
    server
        .create_group(GroupSpec::new(GROUP, Suite::AES_128_CCM), now, &mut rng)
        .expect("group");
    let mut device = |id: u32, role: Role| -> Device {
        let (cred, creds) = if signed {
            let k = key(0x20 + id as u8);
            (
                DeviceCredential::public_key(k.verifying_key()),
                MemberCredentials::signed(k, *server_key.verifying_key()),
            )
        } else {
            let psk = Psk([id as u8; 16]);
            (
                DeviceCredential::Psk(psk.clone()),
                MemberCredentials::Psk(psk),
            )
        };
        server
            .admit_device(DeviceId(id), cred, role, &[GROUP])
            .expect("admit");
        Member::new(
            MemberConfig::new(DeviceId(id), GROUP, role),
            creds,
            MemorySequenceStore::commissioned(),
        )
    };
    let mut joined = device(1, Role::Sender);
    let mut joining = device(2, Role::Listener);
    let mut captured = Vec::new();
    let mut buf = [0u8; 2048];

    // Device 1 joins (join request, the server's challenge, the challenged join, the bundle)
    // and acknowledges.
    captured.extend(challenged_join(&mut server, &mut joined, now, &mut rng));
    server
        .handle_message(now, &mut rng, captured.last().expect("challenged join"))
        .expect("join accepted");
    let t = server
        .poll_transmit(now, &mut rng, &mut buf)
        .expect("tx")
        .expect("bundle");
    captured.push(buf[..t.len].to_vec());
    joined
        .handle_message(now, &buf[..t.len])
        .expect("bundle accepted");
    let n = joined
        .poll_transmit(now, &mut rng, &mut buf)
        .expect("tx")
        .expect("ack");
    captured.push(buf[..n].to_vec());
    server
        .handle_message(now, &mut rng, &buf[..n])
        .expect("ack accepted");
    assert!(joined.is_joined());

    // Device 2's challenged join is answered; the answer stays in flight.
    captured.extend(challenged_join(&mut server, &mut joining, now, &mut rng));
    server
        .handle_message(now, &mut rng, captured.last().expect("challenged join"))
        .expect("join accepted");
    while let Some(t) = server.poll_transmit(now, &mut rng, &mut buf).expect("tx") {
        captured.push(buf[..t.len].to_vec());
    }

    // A rekey: its bundle for device 1 (and device 2) stays in flight.
    server.rekey(GROUP, now, &mut rng).expect("rekey");
    while let Some(t) = server.poll_transmit(now, &mut rng, &mut buf).expect("tx") {
        captured.push(buf[..t.len].to_vec());
    }
    Setup {
        server,
        joined,
        joining,
        captured,
        rng,
        now,
    }
}

/// Senders besides device 1 in [`setup_split`]'s group (devices 3, 4, …): with device 1, more
/// than `MAX_SIGNING_SENDERS`, so every bundle's list is split.
const EXTRA_SENDERS: u32 = 25;

/// Builds the split-list set-up (signed mode): a group with record signatures and 26 senders
/// (device 1 and 25 others), device 2 a listener whose join response is in flight, then a
/// rekey whose bundle device 1 holds while its `SenderKeys` parts are in flight.
pub fn setup_split() -> Setup {
    let mut rng = TestRng(9);
    let now = Instant(1_000);
    let server_key = key(0x11);
    let mut server: Server = KeyServer::open(
        ServerCredentials::new(server_key.clone()),
        MemoryServerStore::new(),
    )
    .expect("empty store");
    server
        .create_group(
            // No rekey on join: the senders' joins below share one epoch (and its bundles);
            // the explicit rekey then sends every member a new epoch's full, split list.
            GroupSpec::new(GROUP, Suite::AES_128_CCM)
                .with_signatures()
                .with_rekey_on_join(false),
            now,
            &mut rng,
        )
        .expect("group");
    let mut devices: Vec<(u32, Device)> = Vec::new();
    for id in (1..=2).chain(3..3 + EXTRA_SENDERS) {
        let k = key(0x20 + id as u8);
        let role = if id == 2 {
            Role::Listener
        } else {
            Role::Sender
        };
        server
            .admit_device(
                DeviceId(id),
                DeviceCredential::public_key(k.verifying_key()),
                role,
                &[GROUP],
            )
            .expect("admit");
        let m = Member::new(
            MemberConfig::new(DeviceId(id), GROUP, role),
            MemberCredentials::signed(k, *server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        );
        devices.push((id, m));
    }
    let mut captured = Vec::new();
    // Every message both ways until quiet; messages for device 2 are captured and withheld
    // once `hold_2`, and so are device 1's parts once `hold_1_parts`. Once `hold_2`, the
    // other senders' messages are dropped too: they have joined, and what they would do with
    // later bundles (open, acknowledge) costs P-256 work the set-up doesn't need.
    let exchange = |server: &mut Server,
                    devices: &mut Vec<(u32, Device)>,
                    captured: &mut Vec<Vec<u8>>,
                    rng: &mut TestRng,
                    hold_2: bool,
                    hold_1_parts: bool| {
        let mut buf = [0u8; 2048];
        loop {
            let mut moved = false;
            for (id, m) in devices.iter_mut() {
                while let Some(n) = m.poll_transmit(now, rng, &mut buf).expect("tx") {
                    moved = true;
                    if *id <= 2 {
                        captured.push(buf[..n].to_vec());
                    }
                    let _ = server.handle_message(now, rng, &buf[..n]);
                }
            }
            while let Some(t) = server.poll_transmit(now, rng, &mut buf).expect("tx") {
                moved = true;
                let id = t.device_id.0;
                let bytes = &buf[..t.len];
                if id <= 2 {
                    captured.push(bytes.to_vec());
                }
                let part = t.kind == group_core::keydist::MessageKind::SenderKeys;
                if (id >= 2 && hold_2) || (id == 1 && hold_1_parts && part) {
                    continue;
                }
                if let Some((_, m)) = devices.iter_mut().find(|(d, _)| *d == id) {
                    let _ = m.handle_message(now, bytes);
                }
            }
            if !moved {
                break;
            }
        }
    };
    // The senders (device 1 and the others) join together: every join request is
    // challenged, then every challenged request is answered, and only then are the bundles
    // sent (the server builds a due member's bundle when it is polled, so each gets one).
    // Joined one at a time, every join sent every member a new bundle: O(N²) signed bundles,
    // 2.7 s a run, which starved the two keydist targets of executions.
    let mut challenged = Vec::new();
    for (id, m) in devices.iter_mut().filter(|(id, _)| *id != 2) {
        let [request, challenge, answer] = challenged_join(&mut server, m, now, &mut rng);
        if *id == 1 {
            captured.extend([request, challenge, answer.clone()]);
        }
        challenged.push(answer);
    }
    for request in &challenged {
        server
            .handle_message(now, &mut rng, request)
            .expect("join accepted");
    }
    exchange(
        &mut server,
        &mut devices,
        &mut captured,
        &mut rng,
        false,
        false,
    );
    assert!(devices.iter().all(|(id, m)| *id == 2 || m.is_joined()));
    // Then device 2, a listener (its answer withheld).
    devices[1].1.join(now).expect("join");
    exchange(
        &mut server,
        &mut devices,
        &mut captured,
        &mut rng,
        true,
        false,
    );
    // A rekey: device 1 gets the bundle, its parts stay in flight.
    server.rekey(GROUP, now, &mut rng).expect("rekey");
    exchange(
        &mut server,
        &mut devices,
        &mut captured,
        &mut rng,
        true,
        true,
    );
    let joining = devices.remove(1).1;
    let joined = devices.remove(0).1;
    assert!(joined.is_completing_bundle());
    Setup {
        server,
        joined,
        joining,
        captured,
        rng,
        now,
    }
}

/// What a server refusal must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerSummary {
    store: Option<Vec<u8>>,
    members: Vec<(DeviceId, Option<u8>)>,
    pending: [bool; 2],
    epochs: Option<(Option<u16>, Option<u16>)>,
    deadline: Option<Instant>,
}

/// The server's observable state.
pub fn server_summary(s: &Server) -> ServerSummary {
    ServerSummary {
        store: s.store().bytes().map(<[u8]>::to_vec),
        members: s.members(GROUP).collect(),
        pending: [1, 2].map(|d| s.is_pending(DeviceId(d), GROUP)),
        epochs: s.epochs(GROUP),
        deadline: s.poll_timeout(),
    }
}

/// What a member refusal must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct MemberSummary {
    state: MemberState,
    last_counter: u64,
    epochs: Option<(Option<u16>, Option<u16>, Option<u16>)>,
    next_send: Option<(u16, u64)>,
    stored: Result<Option<StoredSequence>, StoreError>,
    deadline: Option<Instant>,
    completing: bool,
}

/// A member's observable state.
pub fn member_summary(m: &Device) -> MemberSummary {
    MemberSummary {
        state: m.state(),
        last_counter: m.last_counter(),
        epochs: m.group().map(|g| {
            let e = g.epochs();
            (
                e.previous().map(|x| x.0),
                g.current_epoch().map(|x| x.0),
                e.staged().map(|x| x.0),
            )
        }),
        next_send: m
            .group()
            .and_then(|g| g.next_send_seq())
            .map(|(e, s)| (e.0, s)),
        stored: m.store().stored(),
        deadline: m.poll_timeout(),
        completing: m.is_completing_bundle(),
    }
}

/// Decodes a target input into datagrams: after the configuration byte, a list of
/// `k` bytes. `k` even: a raw datagram of `next byte` bytes. `k` odd: captured message
/// `k >> 1` (modulo their number) with `next byte % 4` edits of two bytes each
/// (position, XOR mask; a zero mask truncates at the position).
pub fn datagrams(captured: &[Vec<u8>], mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let next = |d: &mut &[u8]| -> Option<u8> {
        let (b, rest) = d.split_first()?;
        *d = rest;
        Some(*b)
    };
    while let Some(k) = next(&mut data) {
        let Some(n) = next(&mut data) else { break };
        if k & 1 == 0 {
            let take = usize::from(n).min(data.len());
            out.push(data[..take].to_vec());
            data = &data[take..];
        } else {
            let mut msg = captured[usize::from(k >> 1) % captured.len()].clone();
            for _ in 0..n % 4 {
                let (Some(pos), Some(mask)) = (next(&mut data), next(&mut data)) else {
                    break;
                };
                let i = usize::from(pos) % msg.len().max(1);
                if mask == 0 {
                    msg.truncate(i);
                } else if let Some(b) = msg.get_mut(i) {
                    *b ^= mask;
                }
            }
            out.push(msg);
        }
    }
    out
}
