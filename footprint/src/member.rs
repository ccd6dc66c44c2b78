//! The member images' work: a key-distribution member (32 senders) joins through the key
//! server's messages recorded on the host (`transcripts/`), installs the group keys, follows
//! the rekey a second member's join causes, seals a record and opens the second member's.
//!
//! [`drive`] is also what the host-side generator runs for the member it records, so the
//! member's generator draws the same values in the image as on the host.

use core::mem::size_of;

use group_core::keydist::{DeviceId, Member, MemberConfig, MemberCredentials, Role};
use group_core::sequence::MemorySequenceStore;
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

use crate::rng::TestRng;
use crate::stack::measure;
use crate::transcript::{self, RECORD, RECORD_PLAINTEXT};
use crate::{Failure, Figures, GROUP_ID};

/// The member context the images keep.
pub type Device = Member<MemorySequenceStore, 32, 2>;
/// The recorded member's device ID.
pub const DEVICE: DeviceId = DeviceId(1);
/// The second member's device ID (its records are in the transcript).
pub const PEER: DeviceId = DeviceId(2);
/// The recorded member's generator seed.
pub const DEVICE_SEED: u64 = 0x0123_4567;
/// Largest key-distribution datagram either side sends.
pub const MAX_MESSAGE: usize = 1200;
/// The epoch the member joins in and the one the rekey moves it to.
pub const EPOCHS: (Epoch, Epoch) = (Epoch(1), Epoch(2));

/// A member as the images configure it.
pub fn device(creds: MemberCredentials) -> Device {
    Member::new(
        MemberConfig::new(DEVICE, GROUP_ID, Role::Sender),
        creds,
        MemorySequenceStore::commissioned(),
    )
}

/// One step of the member: hands it `incoming` (if any), then collects what it sends into
/// `sink` until it has nothing more. Returns the peak stack of the step's library calls.
pub fn drive(
    m: &mut Device,
    now: Instant,
    rng: &mut TestRng,
    incoming: Option<&[u8]>,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<usize, Failure> {
    let mut peak = 0usize;
    if let Some(bytes) = incoming {
        let (r, s) = measure(|| m.handle_message(now, bytes));
        r.map_err(|_| Failure::Join)?;
        peak = peak.max(s);
    }
    let mut buf = [0u8; MAX_MESSAGE];
    for _ in 0..4 {
        let (r, s) = measure(|| m.poll_transmit(now, rng, &mut buf));
        peak = peak.max(s);
        match r.map_err(|_| Failure::Join)? {
            Some(n) => sink(buf.get(..n).ok_or(Failure::Join)?),
            None => break,
        }
    }
    Ok(peak)
}

/// Replays `transcript` into a member with `creds`: join, rekey, seal, open.
#[inline(never)]
pub fn run(creds: MemberCredentials, transcript: &[u8]) -> Result<Figures, Failure> {
    let mut m = device(creds);
    let mut rng = TestRng(DEVICE_SEED);
    let mut f = Figures {
        ram_group32: size_of::<Device>(),
        ..Figures::default()
    };
    let (r, s) = measure(|| m.join(Instant(0)));
    r.map_err(|_| Failure::Join)?;
    f.join = s;
    f.join = f
        .join
        .max(drive(&mut m, Instant(0), &mut rng, None, &mut |_| {})?);
    let mut opened = 0usize;
    for e in transcript::entries(transcript).ok_or(Failure::Transcript)? {
        let e = e.ok_or(Failure::Transcript)?;
        let now = Instant(u64::from(e.now_ms));
        if e.tag == RECORD {
            let mut rec = [0u8; 64];
            let rec = rec.get_mut(..e.bytes.len()).ok_or(Failure::Transcript)?;
            rec.copy_from_slice(e.bytes);
            let (r, s) = measure(|| {
                m.open(now, rec)
                    .map(|d| (d.sender_id, d.epoch, d.plaintext == RECORD_PLAINTEXT))
            });
            f.open = f.open.max(s);
            let (sid, epoch, ok) = r.map_err(|_| Failure::Open)?;
            if !ok || epoch != EPOCHS.1 || sid == SenderId(0) {
                return Err(Failure::Open);
            }
            opened = opened.saturating_add(1);
            continue;
        }
        let joined = m.is_joined();
        let s = drive(&mut m, now, &mut rng, Some(e.bytes), &mut |_| {})?;
        if joined {
            f.rekey = f.rekey.max(s);
        } else {
            f.join = f.join.max(s);
        }
    }
    if !m.is_joined() {
        return Err(Failure::Join);
    }
    let now = Instant(u64::from(LAST_MS));
    let mut out = [0u8; 64];
    let (r, s) = measure(|| m.seal(now, b"on", &mut out));
    f.seal = s;
    r.map_err(|_| Failure::Seal)?;
    let current = m.group().and_then(|g| g.current_epoch());
    if current != Some(EPOCHS.1) {
        return Err(Failure::Rekey);
    }
    if opened == 0 {
        return Err(Failure::Open);
    }
    Ok(f.finish())
}

/// When the recorded scenario ends (the rekeyed epoch is active by then), in milliseconds.
pub const LAST_MS: u32 = 5_000;

/// The PSK member's pre-shared key (test value).
pub const PSK: [u8; 16] = [0x11; 16];
/// The signed member's private key (test value).
pub const DEVICE_KEY: [u8; 32] = [0x3c; 32];
/// The key server's private key (test value, used on the host only: the image holds the
/// public key, [`SERVER_PUBLIC`]).
pub const SERVER_KEY: [u8; 32] = [0x5a; 32];
/// The key server's public key (uncompressed SEC1), written by the transcript generator.
pub const SERVER_PUBLIC: &[u8] = include_bytes!("../transcripts/server-public.bin");

/// The signed member's credentials: its key and the key server's public key.
#[cfg(feature = "signed")]
pub fn signed_credentials() -> Option<MemberCredentials> {
    let device = p256::ecdsa::SigningKey::from_slice(&DEVICE_KEY).ok()?;
    let server = p256::ecdsa::VerifyingKey::from_sec1_bytes(SERVER_PUBLIC).ok()?;
    Some(MemberCredentials::signed(device, server))
}
