//! The signed mode (docs/key-distribution.md §4): messages signed with ECDSA P-256 (low S,
//! [`crate::signature`]), bundle secrets sealed to the device's static key with
//! ephemeral-static ECDH.
//!
//! ```text
//! signature = ECDSA-P256-SHA256(sender key,
//!               "dtls-group kd v1" || direction[1] || peer_key[33] || version || mode || body)
//!   direction = 01 device→server (peer_key = the key server's key)
//!             = 02 server→device (peer_key = the recipient device's key)
//!   peer_key  = compressed SEC1; r || s, 32 bytes each, s low (s <= n/2)
//!
//! sealed secret (server→device, KeyBundle):
//!   Z         = ECDH(ephemeral secret, device public key).x            (32 bytes)
//!   prk       = HKDF-Extract(salt = "dtls-group kd v1 seal", ikm = Z)
//!   key||n    = HKDF-Expand(prk, ephemeral_pub[33] || device_pub[33], 16 + 13)
//!   ciphertext||tag = AES-128-CCM(key, n, aad, postcard(KeyMaterial)), 16-byte tag
//!   aad       = group_id[4] || device_id[4] || counter[8] || epoch[2] || suite[2]   (big endian)
//! ```

#[cfg(feature = "signed")]
use hkdf::Hkdf;
#[cfg(feature = "signed")]
use p256::ecdsa::SigningKey;
use p256::ecdsa::VerifyingKey;
#[cfg(feature = "signed")]
use p256::elliptic_curve::Generate;
#[cfg(feature = "signed")]
use p256::{PublicKey, ecdh};
#[cfg(feature = "signed")]
use rand_core::CryptoRng;
#[cfg(feature = "signed")]
use sha2::Sha256;
#[cfg(feature = "signed")]
use zeroize::Zeroizing;

use super::error::Error;
#[cfg(feature = "signed")]
use super::message::{
    COMPRESSED_KEY_LEN, CompressedKey, KeyBundle, KeyMaterial, Message, ProtectedMessage,
    SealedSecret, ServerHeader, encode_protected, parse, write_body,
};
#[cfg(feature = "signed")]
use super::sealing::{bundle_aad, ccm_open, ccm_seal};
#[cfg(feature = "signed")]
use super::view::SealedView;
#[cfg(all(feature = "signed", feature = "keydist-member"))]
use super::view::ServerProtected;
#[cfg(feature = "signed")]
use super::vocabulary::{Direction, Mode};
#[cfg(feature = "signed")]
use super::writer::{DeviceMessage, write_device_body};
#[cfg(feature = "signed")]
use crate::signature::{self, SIGNATURE_LEN};

#[cfg(feature = "signed")]
/// Domain-separation label at the start of every signed input.
pub const SIGN_LABEL: &[u8] = b"dtls-group kd v1";
#[cfg(feature = "signed")]
/// HKDF salt of the ECDH sealing of bundle secrets.
pub const SEAL_SALT: &[u8] = b"dtls-group kd v1 seal";

#[cfg(feature = "signed")]
/// The compressed SEC1 encoding of a public key.
pub(crate) fn compressed(key: &VerifyingKey) -> Result<[u8; COMPRESSED_KEY_LEN], Error> {
    let point = key.to_sec1_point(true);
    point.as_bytes().try_into().map_err(|_| Error::BadPublicKey)
}

#[cfg(any(
    feature = "keydist-server",
    all(feature = "keydist-member", feature = "record-signatures")
))]
/// Parses a SEC1 public key (33 or 65 bytes).
pub(crate) fn parse_key(bytes: &[u8]) -> Result<VerifyingKey, Error> {
    if bytes.len() != 33 && bytes.len() != 65 {
        return Err(Error::BadPublicKey);
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| Error::BadPublicKey)
}

#[cfg(feature = "signed")]
/// Signs `protected` (`version || mode || body`) for `direction`, bound to `peer`.
pub(crate) fn sign(
    key: &SigningKey,
    direction: Direction,
    peer: &VerifyingKey,
    protected: &[u8],
) -> Result<[u8; SIGNATURE_LEN], Error> {
    let peer = compressed(peer)?;
    let dir = [direction as u8];
    signature::sign(key, &[SIGN_LABEL, &dir, &peer, protected]).map_err(|_| Error::BadSignature)
}

#[cfg(feature = "signed")]
/// Verifies a signature trailer; high-S signatures are refused (no malleability).
pub(crate) fn verify(
    key: &VerifyingKey,
    direction: Direction,
    peer: &VerifyingKey,
    protected: &[u8],
    trailer: &[u8],
) -> Result<(), Error> {
    let peer = compressed(peer)?;
    let dir = [direction as u8];
    signature::verify(key, &[SIGN_LABEL, &dir, &peer, protected], trailer)
        .map_err(|_| Error::BadSignature)
}

#[cfg(feature = "signed")]
/// Encodes `message` in signed mode: `version || mode || body || signature`, the signature by
/// `key` bound to `peer` (the recipient device's key for server messages, the key server's
/// key for device messages). Returns the length written to `out`.
pub fn encode_signed(
    message: &Message,
    key: &SigningKey,
    peer: &VerifyingKey,
    out: &mut [u8],
) -> Result<usize, Error> {
    if let Some(d) = message.as_device() {
        return encode_device_signed(d, key, peer, out);
    }
    encode_protected(
        Mode::Signed,
        out,
        |body| write_body(message, body),
        |protected, trailer| {
            trailer.copy_from_slice(&sign(key, message.direction(), peer, protected)?);
            Ok(())
        },
    )
}

#[cfg(feature = "signed")]
/// Encodes a device message in signed mode (the member's path: the hand-written body, no
/// serde), signed by the device's `key` and bound to the key server's key `peer`.
pub(crate) fn encode_device_signed(
    message: DeviceMessage<'_>,
    key: &SigningKey,
    peer: &VerifyingKey,
    out: &mut [u8],
) -> Result<usize, Error> {
    encode_protected(
        Mode::Signed,
        out,
        |body| write_device_body(message, body),
        |protected, trailer| {
            trailer.copy_from_slice(&sign(key, Direction::DeviceToServer, peer, protected)?);
            Ok(())
        },
    )
}

#[cfg(feature = "signed")]
/// Checks the trailer of a parsed message: signed mode, then the signature by `key` (the
/// sender's), bound to `peer` (the receiver's own key).
pub(crate) fn check(
    pm: &ProtectedMessage<'_>,
    key: &VerifyingKey,
    peer: &VerifyingKey,
) -> Result<(), Error> {
    if pm.mode != Mode::Signed {
        return Err(Error::ModeMismatch);
    }
    verify(key, pm.message.direction(), peer, pm.protected, pm.trailer)
}

#[cfg(all(feature = "signed", feature = "keydist-member"))]
/// [`check`] for a server message decoded by borrowing.
pub(crate) fn check_server(
    pm: &ServerProtected<'_>,
    key: &VerifyingKey,
    peer: &VerifyingKey,
) -> Result<(), Error> {
    if pm.mode != Mode::Signed {
        return Err(Error::ModeMismatch);
    }
    verify(
        key,
        Direction::ServerToDevice,
        peer,
        pm.protected,
        pm.trailer,
    )
}

#[cfg(feature = "signed")]
/// Parses `bytes` and verifies its signature by `key`, bound to `peer`.
pub fn verify_signed<'a>(
    bytes: &'a [u8],
    key: &VerifyingKey,
    peer: &VerifyingKey,
) -> Result<ProtectedMessage<'a>, Error> {
    let pm = parse(bytes)?;
    check(&pm, key, peer)?;
    Ok(pm)
}

#[cfg(feature = "signed")]
/// Derives the CCM key and nonce of an ECDH-sealed secret.
fn ecdh_key_nonce(
    shared: &ecdh::SharedSecret,
    ephemeral: &[u8; COMPRESSED_KEY_LEN],
    recipient: &[u8; COMPRESSED_KEY_LEN],
) -> Result<Zeroizing<[u8; 29]>, Error> {
    let hk = Hkdf::<Sha256>::new(Some(SEAL_SALT), shared.raw_secret_bytes().as_slice());
    let mut okm = Zeroizing::new([0u8; 29]);
    hk.expand_multi_info(&[ephemeral, recipient], okm.as_mut_slice())
        .map_err(|_| Error::AuthenticationFailed)?;
    Ok(okm)
}

#[cfg(feature = "signed")]
/// Seals `material` to `recipient` with a fresh ephemeral key (ECDH-ES).
pub(crate) fn seal_ecdh<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &VerifyingKey,
    aad: &[u8],
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    seal_ecdh_with(
        &ecdh::EphemeralSecret::generate_from_rng(rng),
        recipient,
        aad,
        material,
    )
}

#[cfg(feature = "signed")]
/// Seals `material` to `recipient` with the ephemeral key `eph`, drawn by the caller (the
/// key server draws it in order and may leave this, the public-key work, to another thread).
pub(crate) fn seal_ecdh_with(
    eph: &ecdh::EphemeralSecret,
    recipient: &VerifyingKey,
    aad: &[u8],
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let eph_pub = VerifyingKey::from(eph.public_key());
    let eph_bytes = compressed(&eph_pub)?;
    let recipient_pub = PublicKey::from(recipient);
    let shared = eph.diffie_hellman(&recipient_pub);
    let key_nonce = ecdh_key_nonce(&shared, &eph_bytes, &compressed(recipient)?)?;
    let ciphertext = ccm_seal(&key_nonce, aad, material)?;
    Ok(SealedSecret {
        ephemeral: Some(CompressedKey::from(eph_bytes)),
        ciphertext,
    })
}

#[cfg(feature = "signed")]
#[inline(never)] // its own frame, not summed into the member's bundle planning (stack, issue 12)
/// Opens a secret sealed to `own` (the device's static key).
pub(crate) fn open_ecdh(
    own: &SigningKey,
    sealed: &SealedView<'_>,
    aad: &[u8],
) -> Result<KeyMaterial, Error> {
    let eph = sealed.ephemeral.ok_or(Error::InconsistentBundle)?;
    // Each step in its own frame, called one after the other: the point decompression, the
    // scalar multiplication and the CCM opening are each deep, and none holds the others'
    // temporaries (the member's join stack, issue 12).
    let eph_key = ephemeral_point(&eph)?;
    let key_nonce = ecdh_open_key(own, &eph_key, &eph)?;
    ccm_open(&key_nonce, aad, sealed.ciphertext)
}

#[cfg(feature = "signed")]
#[inline(never)] // its own frame (stack, issue 12)
fn ephemeral_point(eph: &CompressedKey) -> Result<PublicKey, Error> {
    PublicKey::from_sec1_bytes(&eph.0).map_err(|_| Error::BadPublicKey)
}

#[cfg(feature = "signed")]
#[inline(never)] // its own frame (stack, issue 12)
fn ecdh_open_key(
    own: &SigningKey,
    eph_key: &PublicKey,
    eph: &CompressedKey,
) -> Result<Zeroizing<[u8; 29]>, Error> {
    let shared = ecdh::diffie_hellman(own.as_nonzero_scalar(), eph_key.as_affine());
    ecdh_key_nonce(&shared, &eph.0, &compressed(own.verifying_key())?)
}

#[cfg(feature = "signed")]
/// Seals key material to `recipient` for the bundle with this header, epoch and suite
/// (ephemeral-static ECDH, HKDF-SHA256, AES-128-CCM).
pub fn seal_secret<R: rand_core::CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &VerifyingKey,
    header: &ServerHeader,
    epoch: u16,
    suite: u16,
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let aad = bundle_aad(header, epoch, suite);
    seal_ecdh(rng, recipient, &aad, material)
}

#[cfg(feature = "signed")]
/// Decrypts the key material of a bundle addressed to the holder of `device_key` (signed
/// mode), without any other check: for diagnostics, test taps and golden vectors. Members use
/// [`Member::handle_message`](super::Member::handle_message), which verifies everything first.
pub fn open_bundle_secret(
    device_key: &SigningKey,
    bundle: &KeyBundle,
) -> Result<KeyMaterial, Error> {
    open_sealed(
        device_key,
        &bundle.header,
        bundle.epoch,
        bundle.suite,
        &bundle.sealed.view(),
    )
}

#[cfg(feature = "signed")]
/// Opens the secret sealed to `own` in the bundle with this header, epoch and suite.
pub(crate) fn open_sealed(
    own: &SigningKey,
    header: &ServerHeader,
    epoch: u16,
    suite: u16,
    sealed: &SealedView<'_>,
) -> Result<KeyMaterial, Error> {
    let aad = bundle_aad(header, epoch, suite);
    open_ecdh(own, sealed, &aad)
}
