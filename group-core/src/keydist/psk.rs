//! The PSK mode (feature `psk`): the same message protection as signed mode, from
//! a per-device 16-byte key provisioned at commissioning, with no public-key crypto on the
//! device (docs/key-distribution.md §5, including what it gives up).
//!
//! ```text
//! prk        = HKDF-Extract(salt = "dtls-group kd v1 psk", ikm = psk)
//! mac_key    = HKDF-Expand(prk, "mac" || direction[1] || device_id[4], 16)
//! tag        = AES-128-CCM(mac_key, mac_nonce, aad = version || mode || body, plaintext = "")
//! mac_nonce  = 00^5 || counter[8]      (server→device: the server counter, never reused)
//!            = 01 || challenge[0..12]  (server→device JoinChallenge: its fresh random nonce)
//!            = nonce[0..13]            (device→server: the message's fresh nonce)
//! seal key||n = HKDF-Expand(prk, "seal" || device_id[4] || counter[8], 16 + 13)
//! sealed     = AES-128-CCM(key, n, aad = secret aad (as in signed mode), postcard(KeyMaterial))
//! ```

use core::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::Error;
use super::message::{
    KeyBundle, KeyMaterial, Message, ProtectedMessage, SealedSecret, ServerHeader,
    encode_protected, parse, write_body,
};
use super::sealing::{CCM_NONCE_LEN, bundle_aad, ccm_open, ccm_seal, ccm_tag};
use super::view::SealedView;
#[cfg(feature = "keydist-member")]
use super::view::{ServerMessage, ServerProtected};
use super::vocabulary::{DeviceId, Direction, Mode, NONCE_LEN, TAG_LEN};
use super::writer::{DeviceMessage, write_device_body};

/// HKDF salt of the PSK schedule.
pub const PSK_SALT: &[u8] = b"dtls-group kd v1 psk";

/// A device's 16-byte pre-shared key. Zeroized on drop; `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Psk(pub [u8; 16]);

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(..)")
    }
}

impl serde::Serialize for Psk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Psk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(d).map(Psk)
    }
}

fn expand<const N: usize>(psk: &Psk, info: &[&[u8]]) -> Result<Zeroizing<[u8; N]>, Error> {
    let hk = Hkdf::<Sha256>::new(Some(PSK_SALT), &psk.0);
    let mut out = Zeroizing::new([0u8; N]);
    hk.expand_multi_info(info, out.as_mut_slice())
        .map_err(|_| Error::AuthenticationFailed)?;
    Ok(out)
}

fn mac_key(
    psk: &Psk,
    direction: Direction,
    device: DeviceId,
) -> Result<Zeroizing<[u8; 16]>, Error> {
    expand(psk, &[b"mac", &[direction as u8], &device.0.to_be_bytes()])
}

/// What a message's tag nonce is made of.
enum NonceSource<'a> {
    /// A server message's counter.
    Counter(u64),
    /// A join challenge's fresh random nonce.
    Challenge(&'a [u8; NONCE_LEN]),
    /// A device message's fresh nonce.
    Device(&'a [u8; NONCE_LEN]),
}

fn source_of(message: &Message) -> Option<NonceSource<'_>> {
    if let Some(h) = message.server_header() {
        Some(NonceSource::Counter(h.counter))
    } else if let Message::JoinChallenge(c) = message {
        Some(NonceSource::Challenge(&c.challenge))
    } else {
        message
            .device_header()
            .map(|h| NonceSource::Device(&h.nonce))
    }
}

#[cfg(feature = "keydist-member")]
fn server_source<'a>(message: &'a ServerMessage<'_>) -> NonceSource<'a> {
    match message {
        ServerMessage::JoinChallenge(c) => NonceSource::Challenge(&c.challenge),
        ServerMessage::KeyBundle(b) => NonceSource::Counter(b.header.counter),
        ServerMessage::Removed(r) => NonceSource::Counter(r.header.counter),
        ServerMessage::SenderKeys(p) => NonceSource::Counter(p.header.counter),
    }
}

fn mac_nonce(source: Option<NonceSource<'_>>) -> [u8; CCM_NONCE_LEN] {
    let mut n = [0u8; CCM_NONCE_LEN];
    match source {
        Some(NonceSource::Counter(counter)) => {
            let (_, tail) = n.split_at_mut(CCM_NONCE_LEN.saturating_sub(8));
            tail.copy_from_slice(&counter.to_be_bytes());
        }
        Some(NonceSource::Challenge(challenge)) => {
            // No counter (a challenge changes no server state, so it takes none): its fresh
            // random nonce, after a 01 byte that keeps it apart from every counter nonce (00
            // first).
            let (first, rest) = n.split_at_mut(1);
            first.fill(1);
            for (d, s) in rest.iter_mut().zip(challenge.iter()) {
                *d = *s;
            }
        }
        Some(NonceSource::Device(nonce)) => {
            for (d, s) in n.iter_mut().zip(nonce.iter()) {
                *d = *s;
            }
        }
        None => {}
    }
    n
}

/// The PSK tag of `protected` (= `version || mode || body` of `message`).
pub(crate) fn tag(psk: &Psk, message: &Message, protected: &[u8]) -> Result<[u8; TAG_LEN], Error> {
    let key = mac_key(psk, message.direction(), message.device_id())?;
    ccm_tag(&key, &mac_nonce(source_of(message)), protected)
}

/// Checks a PSK tag in constant time.
pub(crate) fn verify(
    psk: &Psk,
    message: &Message,
    protected: &[u8],
    trailer: &[u8],
) -> Result<(), Error> {
    let expected = tag(psk, message, protected)?;
    tags_match(&expected, trailer)
}

fn tags_match(expected: &[u8; TAG_LEN], trailer: &[u8]) -> Result<(), Error> {
    if trailer.len() == TAG_LEN && bool::from(expected.as_slice().ct_eq(trailer)) {
        Ok(())
    } else {
        Err(Error::AuthenticationFailed)
    }
}

fn seal_key(psk: &Psk, device: DeviceId, counter: u64) -> Result<Zeroizing<[u8; 29]>, Error> {
    expand(
        psk,
        &[b"seal", &device.0.to_be_bytes(), &counter.to_be_bytes()],
    )
}

/// Seals key material for `device` in the bundle with `counter`.
pub(crate) fn seal(
    psk: &Psk,
    device: DeviceId,
    counter: u64,
    aad: &[u8],
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let key = seal_key(psk, device, counter)?;
    Ok(SealedSecret {
        ephemeral: None,
        ciphertext: ccm_seal(&key, aad, material)?,
    })
}

/// Opens a PSK-sealed secret.
pub(crate) fn open(
    psk: &Psk,
    device: DeviceId,
    counter: u64,
    sealed: &SealedView<'_>,
    aad: &[u8],
) -> Result<KeyMaterial, Error> {
    if sealed.ephemeral.is_some() {
        return Err(Error::InconsistentBundle);
    }
    let key = seal_key(psk, device, counter)?;
    ccm_open(&key, aad, sealed.ciphertext)
}

/// Encodes `message` in PSK mode: `version || mode || body || tag`. A device kind is written
/// exactly as a member writes it ([`write_device_body`], the same function).
pub fn encode_psk(message: &Message, psk: &Psk, out: &mut [u8]) -> Result<usize, Error> {
    if let Some(d) = message.as_device() {
        return encode_device_psk(d, psk, out);
    }
    encode_protected(
        Mode::Psk,
        out,
        |body| write_body(message, body),
        |protected, trailer| {
            trailer.copy_from_slice(&tag(psk, message, protected)?);
            Ok(())
        },
    )
}

/// Encodes a device message in PSK mode (the member's path: the hand-written body, no serde):
/// the tag under the device → server key, its nonce the message's fresh nonce.
pub(crate) fn encode_device_psk(
    message: DeviceMessage<'_>,
    psk: &Psk,
    out: &mut [u8],
) -> Result<usize, Error> {
    encode_protected(
        Mode::Psk,
        out,
        |body| write_device_body(message, body),
        |protected, trailer| {
            let key = mac_key(psk, Direction::DeviceToServer, message.device_id())?;
            let source = NonceSource::Device(&message.header().nonce);
            trailer.copy_from_slice(&ccm_tag(&key, &mac_nonce(Some(source)), protected)?);
            Ok(())
        },
    )
}

/// Checks the trailer of a parsed message: PSK mode, then the tag with keys derived from the
/// device's PSK.
pub(crate) fn check(pm: &ProtectedMessage<'_>, psk: &Psk) -> Result<(), Error> {
    if pm.mode != Mode::Psk {
        return Err(Error::ModeMismatch);
    }
    verify(psk, &pm.message, pm.protected, pm.trailer)
}

/// [`check`] for a server message decoded by borrowing.
#[cfg(feature = "keydist-member")]
pub(crate) fn check_server(pm: &ServerProtected<'_>, psk: &Psk) -> Result<(), Error> {
    if pm.mode != Mode::Psk {
        return Err(Error::ModeMismatch);
    }
    let key = mac_key(psk, Direction::ServerToDevice, pm.message.device_id())?;
    let expected = ccm_tag(
        &key,
        &mac_nonce(Some(server_source(&pm.message))),
        pm.protected,
    )?;
    tags_match(&expected, pm.trailer)
}

/// Parses `bytes` and verifies its PSK tag.
pub fn verify_psk<'a>(bytes: &'a [u8], psk: &Psk) -> Result<ProtectedMessage<'a>, Error> {
    let pm = parse(bytes)?;
    check(&pm, psk)?;
    Ok(pm)
}

/// Seals key material with a device's PSK for the bundle with this header, epoch and suite.
pub fn seal_secret_psk(
    psk: &Psk,
    header: &ServerHeader,
    epoch: u16,
    suite: u16,
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let aad = bundle_aad(header, epoch, suite);
    seal(psk, header.device_id, header.counter, &aad, material)
}

/// [`open_bundle_secret`](super::open_bundle_secret) for a PSK device.
pub fn open_bundle_secret_psk(psk: &Psk, bundle: &KeyBundle) -> Result<KeyMaterial, Error> {
    open_sealed(
        psk,
        &bundle.header,
        bundle.epoch,
        bundle.suite,
        &bundle.sealed.view(),
    )
}

/// Opens the secret sealed into the bundle with this header, epoch and suite.
pub(crate) fn open_sealed(
    psk: &Psk,
    header: &ServerHeader,
    epoch: u16,
    suite: u16,
    sealed: &SealedView<'_>,
) -> Result<KeyMaterial, Error> {
    let aad = bundle_aad(header, epoch, suite);
    open(psk, header.device_id, header.counter, sealed, &aad)
}
