//! Key-distribution messages and their envelope (docs/key-distribution.md §2–§3).
//!
//! ```text
//! message = version[1] = 0x02 || mode[1] || body || trailer
//! body    = postcard(Message)           (varint enum tag, then the fields in order)
//! trailer = signature r||s [64]          (mode 0x01, Signed)
//!         = AES-128-CCM tag [16]         (mode 0x02, Psk)
//! ```
//!
//! postcard encodes `u8` as one byte, `u16`/`u32`/`u64` as LEB128 varints, `bool` as `00`/`01`,
//! `Option` as `00` or `01 || value`, a sequence as `varint(len) || items`, a fixed array as its
//! items (no length), an enum as `varint(variant index) || fields`, and a struct as its fields
//! in order. Nothing here verifies anything: [`parse`] only splits and decodes.

use core::fmt;

use heapless::Vec;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use super::error::Error;
use super::sender_list::SenderEntries;
use super::vocabulary::{
    DeviceId, Direction, MAX_MESSAGE_LEN, MAX_PART_KEYS, MAX_STALE, Mode, NONCE_LEN, Role, VERSION,
};
use super::writer::write_device_body;

/// Largest sealed secret: the longest [`KeyMaterial`] encoding (129 bytes) plus the tag.
pub const MAX_SEALED_LEN: usize = 160;

/// Length of a compressed SEC1 P-256 public key.
pub const COMPRESSED_KEY_LEN: usize = 33;

/// A fixed-size byte string, encoded as exactly `N` raw bytes (a postcard tuple).
#[derive(Clone, Copy, PartialEq, Eq, Zeroize)]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<const N: usize> Serialize for Bytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(N)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = Bytes<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes<N>, A::Error> {
                let mut out = [0u8; N];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_tuple(N, V::<N>)
    }
}

/// A compressed SEC1 P-256 public key (33 bytes, no length prefix).
pub type CompressedKey = Bytes<COMPRESSED_KEY_LEN>;

impl From<[u8; COMPRESSED_KEY_LEN]> for CompressedKey {
    fn from(b: [u8; COMPRESSED_KEY_LEN]) -> Self {
        Self(b)
    }
}

/// A SEC1 P-256 public key as a device sends it: 33 (compressed) or 65 (uncompressed) bytes,
/// with a varint length prefix. Empty in PSK mode.
pub type PublicKeyBytes = Vec<u8, 65>;

/// Fields every device → server message starts with.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeviceHeader {
    /// The group concerned.
    pub group_id: u32,
    /// The sending device.
    pub device_id: DeviceId,
    /// 16 fresh random bytes: makes every device message unique (the PSK mode's CCM nonce is
    /// taken from it) and is echoed in the response to a join request.
    pub nonce: [u8; NONCE_LEN],
    /// The highest server counter this device accepted for the group (0 if none): ties the
    /// message to the current membership, so messages of an earlier one are refused.
    pub counter: u64,
}

/// Fields every server → device message starts with.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ServerHeader {
    /// The group concerned.
    pub group_id: u32,
    /// The recipient device.
    pub device_id: DeviceId,
    /// Strictly increasing over every message the key server emits (persisted ahead of use):
    /// a device refuses any counter not above the last one it accepted.
    pub counter: u64,
}

/// Device → server: admit me to a group (also a rejoin, and the state-loss recovery request of
/// Group OSCORE §2.6.1.1 when `sequence_state_lost` is set).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Common fields.
    pub header: DeviceHeader,
    /// The role asked for.
    pub role: Role,
    /// The device's public key, SEC1 (33 or 65 bytes); empty in PSK mode.
    pub public_key: PublicKeyBytes,
    /// The device lost its sequence-number store: it must not send again under any key it held
    /// before, so the key server gives it a fresh epoch.
    pub sequence_state_lost: bool,
    /// The key server's challenge this request answers ([`JoinChallenge::challenge`]); `None`
    /// in a first request. Only a request that covers an outstanding challenge changes the
    /// key server's state (issue 10, finding 1): a replayed request gets a new challenge.
    pub challenge: Option<[u8; NONCE_LEN]>,
}

/// Server → device: prove that your join request is fresh. The answer to a join request that
/// carries no outstanding challenge (RFC 9594's `kdc_nonce` exchange): the device sends its
/// request again with `challenge` set to this nonce, under its signature or PSK tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct JoinChallenge {
    /// The group concerned.
    pub group_id: u32,
    /// The recipient device.
    pub device_id: DeviceId,
    /// The nonce of the join request this answers: a device accepts a challenge only while that
    /// request is outstanding.
    pub echo: [u8; NONCE_LEN],
    /// The key server's fresh random nonce (16 bytes, from its RNG, kept in memory only, valid
    /// once and for a limited time).
    pub challenge: [u8; NONCE_LEN],
}

/// Unknown-sender policy, as carried in a bundle.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WireAdmission {
    /// Accept a sender's first authenticated record (wire-format.md §6).
    TrustFirst,
    /// Accept only the senders the bundle lists.
    Strict,
}

/// Explicit-nonce policy, as carried in a bundle.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WireNonceProfile {
    /// Refuse a record whose explicit nonce is not `epoch || sid || seq`.
    Strict,
    /// Accept any explicit nonce (wolfSSL interoperation).
    Compatibility,
}

/// The group's record-layer policy, as carried in every bundle.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BundlePolicy {
    /// Smallest replay window (records) members must keep per sender.
    pub replay_window: u16,
    /// Unknown-sender policy.
    pub admission: WireAdmission,
    /// Explicit-nonce policy.
    pub nonce_profile: WireNonceProfile,
    /// Every record carries an ECDSA P-256 signature (wire-format.md §8).
    pub signatures_required: bool,
    /// How long the previous epoch stays receivable after a switch (ms).
    pub grace_ms: u32,
    /// Largest record fragment (bytes).
    pub max_fragment_len: u16,
}

/// One sender of the group.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SenderEntry {
    /// Its sender ID.
    pub sender_id: u8,
    /// Its record-signing key (compressed SEC1), present iff the group requires signatures.
    pub public_key: Option<CompressedKey>,
}

/// The secret part of a bundle, encrypted to the recipient.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Signed mode: the server's fresh ephemeral P-256 key (compressed). PSK mode: absent.
    pub ephemeral: Option<CompressedKey>,
    /// AES-128-CCM ciphertext of `postcard(KeyMaterial)` followed by the 16-byte tag.
    pub ciphertext: Vec<u8, MAX_SEALED_LEN>,
}

/// Server → device: the join response and every rekey. A complete statement of what the
/// device needs for the group's newest epoch.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct KeyBundle {
    /// Common fields.
    pub header: ServerHeader,
    /// The nonce of the join request this answers, until the device acknowledged a bundle of
    /// its membership; `None` afterwards.
    pub echo: Option<[u8; NONCE_LEN]>,
    /// The epoch the keys are for (never 0, never reused).
    pub epoch: u16,
    /// The cipher suite (TLS code point).
    pub suite: u16,
    /// The recipient's sender ID (senders only).
    pub sender_id: Option<u8>,
    /// The record-layer policy.
    pub policy: BundlePolicy,
    /// Milliseconds from reception until the epoch becomes the one to send in (0: at once).
    /// The epoch is receivable as soon as it is installed.
    pub activate_in_ms: u32,
    /// Milliseconds from activation after which the keys expire (0: no expiry).
    pub lifetime_ms: u32,
    /// Every sender of the group in this epoch (with keys iff signatures are required).
    pub senders: SenderEntries,
    /// Sender IDs revoked or released since the previous epoch (RFC 9594 `stale_node_ids`).
    pub stale: Vec<u8, MAX_STALE>,
    /// The key material, encrypted to the recipient.
    pub sealed: SealedSecret,
}

/// Server → device: the verifying keys of a bundle's entries that the bundle itself does not
/// carry (a group that requires record signatures, with more senders than one message holds:
/// docs/key-distribution.md §3, "`SenderKeys`"). Protected like every server message (the
/// server's signature bound to the recipient's key, or the PSK tag), with its own counter;
/// bound to its bundle by `epoch` and `bundle` (the bundle's counter). A member installs
/// nothing of the bundle until it holds every key the bundle lists, then acknowledges the
/// bundle.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SenderKeys {
    /// Common fields (its own counter, above the bundle's).
    pub header: ServerHeader,
    /// The bundle's epoch.
    pub epoch: u16,
    /// The bundle's counter: this part completes that bundle only.
    pub bundle: u64,
    /// Index in the bundle's sender list of the entry the first key belongs to.
    pub first: u8,
    /// The keys of entries `first`, `first + 1`, … (compressed SEC1), in list order.
    pub keys: Vec<CompressedKey, MAX_PART_KEYS>,
}

/// Device → server: this bundle arrived and is installed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Ack {
    /// Common fields; `counter` is the acknowledged bundle's counter.
    pub header: DeviceHeader,
    /// The acknowledged bundle's epoch.
    pub epoch: u16,
}

/// Device → server: remove me from the group.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Leave {
    /// Common fields.
    pub header: DeviceHeader,
}

/// Why a member asks for a new epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RekeyReport {
    /// Its sequence number passed the per-sender budget.
    SenderBudget,
    /// Records under the epoch key reached the confidentiality limit.
    GroupUsage,
    /// Its sequence numbers are exhausted.
    SequenceExhausted,
    /// Authentication failures reached the integrity limit.
    IntegrityLimit,
    /// The keys' lifetime ended.
    Expired,
    /// The application asked for a new epoch.
    Requested,
}

/// Device → server: the epoch should be replaced.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RekeyNeeded {
    /// Common fields.
    pub header: DeviceHeader,
    /// The epoch concerned.
    pub epoch: u16,
    /// Why.
    pub reason: RekeyReport,
}

/// Why a device was removed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RemovedReason {
    /// It asked to leave.
    Left,
    /// The operator revoked it.
    Revoked,
}

/// Server → device: you are no longer a member; forget the keys.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Removed {
    /// Common fields.
    pub header: ServerHeader,
    /// Why.
    pub reason: RemovedReason,
}

/// Every message kind. The postcard variant index is the kind's number. (Decoded one at a
/// time on the stack: a bundle's size is the price of having no allocator.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Message {
    /// 0: device → server.
    JoinRequest(JoinRequest),
    /// 1: server → device.
    KeyBundle(KeyBundle),
    /// 2: device → server.
    Ack(Ack),
    /// 3: device → server.
    Leave(Leave),
    /// 4: device → server.
    RekeyNeeded(RekeyNeeded),
    /// 5: server → device.
    Removed(Removed),
    /// 6: server → device.
    JoinChallenge(JoinChallenge),
    /// 7: server → device.
    SenderKeys(SenderKeys),
}

/// A message kind, for sizes and logs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageKind {
    /// [`JoinRequest`].
    JoinRequest,
    /// [`KeyBundle`].
    KeyBundle,
    /// [`Ack`].
    Ack,
    /// [`Leave`].
    Leave,
    /// [`RekeyNeeded`].
    RekeyNeeded,
    /// [`Removed`].
    Removed,
    /// [`JoinChallenge`].
    JoinChallenge,
    /// [`SenderKeys`].
    SenderKeys,
}

impl Message {
    /// The kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::JoinRequest(_) => MessageKind::JoinRequest,
            Message::KeyBundle(_) => MessageKind::KeyBundle,
            Message::Ack(_) => MessageKind::Ack,
            Message::Leave(_) => MessageKind::Leave,
            Message::RekeyNeeded(_) => MessageKind::RekeyNeeded,
            Message::Removed(_) => MessageKind::Removed,
            Message::JoinChallenge(_) => MessageKind::JoinChallenge,
            Message::SenderKeys(_) => MessageKind::SenderKeys,
        }
    }

    /// Which way this kind travels.
    pub fn direction(&self) -> Direction {
        match self {
            Message::KeyBundle(_)
            | Message::Removed(_)
            | Message::JoinChallenge(_)
            | Message::SenderKeys(_) => Direction::ServerToDevice,
            _ => Direction::DeviceToServer,
        }
    }

    /// The group named.
    pub fn group_id(&self) -> u32 {
        match self {
            Message::JoinRequest(m) => m.header.group_id,
            Message::KeyBundle(m) => m.header.group_id,
            Message::Ack(m) => m.header.group_id,
            Message::Leave(m) => m.header.group_id,
            Message::RekeyNeeded(m) => m.header.group_id,
            Message::Removed(m) => m.header.group_id,
            Message::JoinChallenge(m) => m.group_id,
            Message::SenderKeys(m) => m.header.group_id,
        }
    }

    /// The device named (sender of a device message, recipient of a server message).
    pub fn device_id(&self) -> DeviceId {
        match self {
            Message::JoinRequest(m) => m.header.device_id,
            Message::KeyBundle(m) => m.header.device_id,
            Message::Ack(m) => m.header.device_id,
            Message::Leave(m) => m.header.device_id,
            Message::RekeyNeeded(m) => m.header.device_id,
            Message::Removed(m) => m.header.device_id,
            Message::JoinChallenge(m) => m.device_id,
            Message::SenderKeys(m) => m.header.device_id,
        }
    }

    /// The device header of a device message.
    pub fn device_header(&self) -> Option<&DeviceHeader> {
        match self {
            Message::JoinRequest(m) => Some(&m.header),
            Message::Ack(m) => Some(&m.header),
            Message::Leave(m) => Some(&m.header),
            Message::RekeyNeeded(m) => Some(&m.header),
            Message::KeyBundle(_)
            | Message::Removed(_)
            | Message::JoinChallenge(_)
            | Message::SenderKeys(_) => None,
        }
    }

    /// The server header of a server message.
    pub fn server_header(&self) -> Option<&ServerHeader> {
        match self {
            Message::KeyBundle(m) => Some(&m.header),
            Message::Removed(m) => Some(&m.header),
            Message::SenderKeys(m) => Some(&m.header),
            _ => None,
        }
    }
}

/// A message split into its parts; nothing verified yet.
#[derive(Debug)]
pub struct ProtectedMessage<'a> {
    /// The protection mode.
    pub mode: Mode,
    /// The decoded body.
    pub message: Message,
    /// `version || mode || body`: what the trailer protects.
    pub protected: &'a [u8],
    /// The signature or tag.
    pub trailer: &'a [u8],
}

/// Whether `bytes` is exactly the postcard encoding of `value` (compared while encoding, no
/// buffer). postcard's decoder accepts non-minimal varints (`80 00` for 0, also as enum tags
/// and sequence lengths), so a decoded value can have several byte strings; keeping only the
/// one the encoder writes makes decoding canonical: one message, one byte string.
fn is_canonical<T: Serialize>(value: &T, bytes: &[u8]) -> bool {
    struct Compare<'a> {
        expected: &'a [u8],
        at: usize,
    }
    impl postcard::ser_flavors::Flavor for Compare<'_> {
        type Output = bool;
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            match self.expected.get(self.at) {
                Some(b) if *b == data => {
                    self.at = self.at.saturating_add(1);
                    Ok(())
                }
                _ => Err(postcard::Error::SerializeBufferFull),
            }
        }
        fn finalize(self) -> postcard::Result<bool> {
            Ok(self.at == self.expected.len())
        }
    }
    postcard::serialize_with_flavor(
        value,
        Compare {
            expected: bytes,
            at: 0,
        },
    )
    .unwrap_or(false)
}

/// Splits and decodes a message without verifying it: version, mode, body, trailer. Unknown
/// versions and modes, truncation, undecodable bodies, trailing bytes and bodies that are not
/// the canonical encoding of what they decode to ([`Error::NonCanonical`]) are typed errors.
#[inline(never)] // the decoding's temporaries stay out of the caller's frame (stack, issue 12)
pub fn parse(bytes: &[u8]) -> Result<ProtectedMessage<'_>, Error> {
    let (&version, rest) = bytes.split_first().ok_or(Error::Truncated)?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let (&mode_byte, _) = rest.split_first().ok_or(Error::Truncated)?;
    let mode = Mode::from_byte(mode_byte).ok_or(Error::UnsupportedMode(mode_byte))?;
    let split = bytes
        .len()
        .checked_sub(mode.trailer_len())
        .filter(|s| *s > 2)
        .ok_or(Error::Truncated)?;
    let (protected, trailer) = bytes.split_at_checked(split).ok_or(Error::Truncated)?;
    let body = protected.get(2..).ok_or(Error::Truncated)?;
    let (message, left) = postcard::take_from_bytes::<Message>(body).map_err(map_postcard)?;
    if !left.is_empty() {
        return Err(Error::TrailingBytes);
    }
    if !is_canonical(&message, body) {
        return Err(Error::NonCanonical);
    }
    Ok(ProtectedMessage {
        mode,
        message,
        protected,
        trailer,
    })
}

/// Writes `version || mode || body || trailer` into `out` and returns its length: `body`
/// writes the body into the buffer it is given and returns its length; `trailer` fills the
/// trailer (`mode`'s length) from the protected part before it. A message over
/// [`MAX_MESSAGE_LEN`] is refused with [`Error::CapacityExceeded`].
pub(crate) fn encode_protected(
    mode: Mode,
    out: &mut [u8],
    body: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
    trailer: impl FnOnce(&[u8], &mut [u8]) -> Result<(), Error>,
) -> Result<usize, Error> {
    let [v, m, rest @ ..] = out else {
        return Err(Error::BufferTooSmall);
    };
    *v = VERSION;
    *m = mode as u8;
    let n = body(rest)?.saturating_add(2);
    let end = n.saturating_add(mode.trailer_len());
    if end > MAX_MESSAGE_LEN {
        return Err(Error::CapacityExceeded);
    }
    let (protected, rest) = out.split_at_mut_checked(n).ok_or(Error::BufferTooSmall)?;
    let slot = rest
        .get_mut(..mode.trailer_len())
        .ok_or(Error::BufferTooSmall)?;
    trailer(protected, slot)?;
    Ok(end)
}

/// Writes `postcard(message)` into `out`; returns its length. Device kinds go through the
/// member's hand-written writer ([`write_device_body`], the same bytes), server kinds
/// through postcard.
pub(crate) fn write_body(message: &Message, out: &mut [u8]) -> Result<usize, Error> {
    match message.as_device() {
        Some(d) => write_device_body(d, out),
        None => postcard::to_slice(message, out)
            .map(|s| s.len())
            .map_err(|_| Error::BufferTooSmall),
    }
}

pub(crate) fn map_postcard(e: postcard::Error) -> Error {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => Error::Truncated,
        _ => Error::Malformed,
    }
}

/// The key material of one epoch: what the sealed secret decrypts to. Zeroized on drop; its
/// `Debug` prints nothing secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMaterial {
    /// 0: a 32-byte epoch secret for the native HKDF schedule (wire-format.md §9).
    Native {
        /// The epoch secret.
        secret: [u8; 32],
    },
    /// 1: wolfSSL-compatible material (`wolfSSL_set_secret`): the TLS 1.2 PRF schedule.
    WolfSsl {
        /// Pre-master secret.
        pms: Bytes<64>,
        /// Client random.
        client_random: [u8; 32],
        /// Server random.
        server_random: [u8; 32],
    },
}

impl Zeroize for KeyMaterial {
    fn zeroize(&mut self) {
        match self {
            KeyMaterial::Native { secret } => secret.zeroize(),
            KeyMaterial::WolfSsl {
                pms,
                client_random,
                server_random,
            } => {
                pms.zeroize();
                client_random.zeroize();
                server_random.zeroize();
            }
        }
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for KeyMaterial {}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Native { .. } => f.write_str("KeyMaterial::Native(..)"),
            KeyMaterial::WolfSsl { .. } => f.write_str("KeyMaterial::WolfSsl(..)"),
        }
    }
}

/// Largest [`KeyMaterial`] encoding.
pub const MAX_KEY_MATERIAL_LEN: usize = 1 + 64 + 32 + 32;

/// Encodes key material (the plaintext of a sealed secret).
pub fn encode_key_material(m: &KeyMaterial, out: &mut [u8]) -> Result<usize, Error> {
    postcard::to_slice(m, out)
        .map(|s| s.len())
        .map_err(|_| Error::BufferTooSmall)
}

/// Decodes key material; trailing bytes and non-canonical encodings (e.g. the variant tag as
/// a non-minimal varint) are refused: only the bytes [`encode_key_material`] writes decode.
///
/// Read by hand rather than through serde (postcard's encoding: the variant index as a `u32`
/// varint, then the fields' bytes, fixed-size arrays without a length): serde's element-by-
/// element array reader cost a member ~1 KB of flash. It returns what postcard's decoder and
/// the canonical check returned for every input (`Truncated`, `Malformed` for an unknown
/// variant or an overlong varint, `TrailingBytes`, `NonCanonical`; checked against postcard
/// by `keydist_canonical`'s property test).
pub fn decode_key_material(bytes: &[u8]) -> Result<KeyMaterial, Error> {
    // The variant index: 7 bits a byte, low first, at most 5 bytes, the fifth below 0x10 (so
    // no shift loses a bit). Running out of bytes before its last byte is truncation.
    let mut variant = 0u32;
    let mut last = None;
    for (i, (&byte, shift)) in bytes.iter().zip([0u32, 7, 14, 21, 28]).enumerate() {
        if shift == 28 && byte > 0x0f {
            return Err(Error::Malformed);
        }
        variant |= u32::from(byte & 0x7f).wrapping_shl(shift);
        if byte & 0x80 == 0 {
            last = Some(i);
            break;
        }
    }
    let last = last.ok_or(Error::Truncated)?;
    let (_, body) = bytes
        .get(last..)
        .and_then(<[u8]>::split_first)
        .ok_or(Error::Truncated)?;
    // Lengths first, then the material is copied straight from `bytes` into the value (which
    // wipes itself on drop): no secret bytes are left in a local on an early return.
    let need = match variant {
        0 => 32,
        1 => 128, // pms 64, client and server randoms 32 each
        _ => return Err(Error::Malformed),
    };
    match body.len().cmp(&need) {
        core::cmp::Ordering::Less => return Err(Error::Truncated),
        core::cmp::Ordering::Greater => return Err(Error::TrailingBytes),
        core::cmp::Ordering::Equal => {}
    }
    // The only canonical variant index is one byte (0 or 1).
    if last != 0 {
        return Err(Error::NonCanonical);
    }
    let m = if variant == 0 {
        KeyMaterial::Native {
            secret: *body.first_chunk::<32>().ok_or(Error::Truncated)?,
        }
    } else {
        let (pms, randoms) = body.split_first_chunk::<64>().ok_or(Error::Truncated)?;
        let (client, server) = randoms.split_first_chunk::<32>().ok_or(Error::Truncated)?;
        KeyMaterial::WolfSsl {
            pms: Bytes(*pms),
            client_random: *client,
            server_random: *server.first_chunk::<32>().ok_or(Error::Truncated)?,
        }
    };
    Ok(m)
}
