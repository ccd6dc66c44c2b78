//! Protection of key-distribution messages in signed mode (docs/key-distribution.md §4):
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

use aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes::Aes128;
use ccm::Ccm;
use ccm::consts::{U13, U16};
use hkdf::Hkdf;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::{PublicKey, ecdh};
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::message::{
    COMPRESSED_KEY_LEN, CompressedKey, KeyMaterial, MAX_KEY_MATERIAL_LEN, MAX_SEALED_LEN,
    SealedSecret, decode_key_material, encode_key_material,
};
use super::{DeviceId, Direction, Error, TAG_LEN};
use crate::signature::{self, SIGNATURE_LEN};

/// Domain-separation label at the start of every signed input.
pub const SIGN_LABEL: &[u8] = b"dtls-group kd v1";
/// HKDF salt of the ECDH sealing of bundle secrets.
pub const SEAL_SALT: &[u8] = b"dtls-group kd v1 seal";

/// AES-128-CCM with a 16-byte tag and a 13-byte nonce (L = 2).
pub(crate) type KdCcm = Ccm<Aes128, U16, U13>;
/// CCM nonce length used by key distribution.
#[cfg_attr(not(feature = "psk"), allow(dead_code))]
pub(crate) const CCM_NONCE_LEN: usize = 13;

/// The compressed SEC1 encoding of a public key.
pub(crate) fn compressed(key: &VerifyingKey) -> Result<[u8; COMPRESSED_KEY_LEN], Error> {
    let point = key.to_sec1_point(true);
    point.as_bytes().try_into().map_err(|_| Error::BadPublicKey)
}

/// Parses a SEC1 public key (33 or 65 bytes).
pub(crate) fn parse_key(bytes: &[u8]) -> Result<VerifyingKey, Error> {
    if bytes.len() != 33 && bytes.len() != 65 {
        return Err(Error::BadPublicKey);
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| Error::BadPublicKey)
}

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

/// The associated data that binds a sealed secret to its bundle.
pub(crate) fn secret_aad(
    group_id: u32,
    device: DeviceId,
    counter: u64,
    epoch: u16,
    suite: u16,
) -> [u8; 20] {
    let mut aad = [0u8; 20];
    let parts: [&[u8]; 5] = [
        &group_id.to_be_bytes(),
        &device.0.to_be_bytes(),
        &counter.to_be_bytes(),
        &epoch.to_be_bytes(),
        &suite.to_be_bytes(),
    ];
    let mut at = 0usize;
    for p in parts {
        let end = at.saturating_add(p.len());
        if let Some(dst) = aad.get_mut(at..end) {
            dst.copy_from_slice(p);
        }
        at = end;
    }
    aad
}

/// CCM-encrypts `material` under `key_nonce` (16-byte key || 13-byte nonce).
pub(crate) fn ccm_seal(
    key_nonce: &[u8; 29],
    aad: &[u8],
    material: &KeyMaterial,
) -> Result<heapless::Vec<u8, MAX_SEALED_LEN>, Error> {
    let mut buf = Zeroizing::new([0u8; MAX_SEALED_LEN]);
    let n = encode_key_material(
        material,
        buf.get_mut(..MAX_KEY_MATERIAL_LEN)
            .ok_or(Error::BufferTooSmall)?,
    )?;
    let (key, nonce) = key_nonce.split_at(16);
    let cipher = KdCcm::new_from_slice(key).map_err(|_| Error::AuthenticationFailed)?;
    let nonce = Nonce::<KdCcm>::try_from(nonce).map_err(|_| Error::AuthenticationFailed)?;
    let (pt, rest) = buf.split_at_mut(n);
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, pt.into())
        .map_err(|_| Error::AuthenticationFailed)?;
    rest.get_mut(..TAG_LEN)
        .ok_or(Error::BufferTooSmall)?
        .copy_from_slice(&tag);
    let total = n.saturating_add(TAG_LEN);
    heapless::Vec::from_slice(buf.get(..total).ok_or(Error::BufferTooSmall)?)
        .map_err(|_| Error::BufferTooSmall)
}

/// CCM-decrypts a sealed secret and decodes the key material. The plaintext buffer is wiped.
pub(crate) fn ccm_open(
    key_nonce: &[u8; 29],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<KeyMaterial, Error> {
    let split = ciphertext
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(Error::AuthenticationFailed)?;
    let (ct, tag) = ciphertext
        .split_at_checked(split)
        .ok_or(Error::AuthenticationFailed)?;
    let mut buf = Zeroizing::new([0u8; MAX_SEALED_LEN]);
    let pt = buf.get_mut(..ct.len()).ok_or(Error::AuthenticationFailed)?;
    pt.copy_from_slice(ct);
    let (key, nonce) = key_nonce.split_at(16);
    let cipher = KdCcm::new_from_slice(key).map_err(|_| Error::AuthenticationFailed)?;
    let nonce = Nonce::<KdCcm>::try_from(nonce).map_err(|_| Error::AuthenticationFailed)?;
    let tag = Tag::<KdCcm>::try_from(tag).map_err(|_| Error::AuthenticationFailed)?;
    cipher
        .decrypt_inout_detached(&nonce, aad, pt.into(), &tag)
        .map_err(|_| Error::AuthenticationFailed)?;
    decode_key_material(pt)
}

/// CCM with empty plaintext: a 16-byte tag over `aad` (the PSK mode's message protection).
#[cfg(feature = "psk")]
pub(crate) fn ccm_tag(
    key: &[u8; 16],
    nonce: &[u8; CCM_NONCE_LEN],
    aad: &[u8],
) -> Result<[u8; TAG_LEN], Error> {
    let cipher = KdCcm::new_from_slice(key).map_err(|_| Error::AuthenticationFailed)?;
    let nonce =
        Nonce::<KdCcm>::try_from(nonce.as_slice()).map_err(|_| Error::AuthenticationFailed)?;
    let mut empty = [0u8; 0];
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, empty.as_mut_slice().into())
        .map_err(|_| Error::AuthenticationFailed)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&tag);
    Ok(out)
}

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

/// Seals `material` to `recipient` with a fresh ephemeral key (ECDH-ES).
pub(crate) fn seal_ecdh<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &VerifyingKey,
    aad: &[u8],
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let eph = ecdh::EphemeralSecret::generate_from_rng(rng);
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

/// Opens a secret sealed to `own` (the device's static key).
pub(crate) fn open_ecdh(
    own: &SigningKey,
    sealed: &SealedSecret,
    aad: &[u8],
) -> Result<KeyMaterial, Error> {
    let eph = sealed.ephemeral.ok_or(Error::InconsistentBundle)?;
    let eph_key = PublicKey::from_sec1_bytes(&eph.0).map_err(|_| Error::BadPublicKey)?;
    let shared = ecdh::diffie_hellman(own.as_nonzero_scalar(), eph_key.as_affine());
    let key_nonce = ecdh_key_nonce(&shared, &eph.0, &compressed(own.verifying_key())?)?;
    ccm_open(&key_nonce, aad, &sealed.ciphertext)
}

impl From<[u8; COMPRESSED_KEY_LEN]> for CompressedKey {
    fn from(b: [u8; COMPRESSED_KEY_LEN]) -> Self {
        Self(b)
    }
}

/// How to protect an outgoing message.
pub(crate) enum Protect<'a> {
    /// Sign with `key`, bound to `peer` (the recipient device, or the key server).
    Signed {
        key: &'a SigningKey,
        peer: &'a VerifyingKey,
    },
    /// Tag with keys derived from a device's PSK.
    #[cfg(feature = "psk")]
    Psk(&'a super::psk::Psk),
}

/// How to check an incoming message.
pub(crate) enum Check<'a> {
    /// Verify with `key` (the sender's), bound to `peer` (the receiver's own key).
    Signed {
        key: &'a VerifyingKey,
        peer: &'a VerifyingKey,
    },
    /// Verify the tag with keys derived from the device's PSK.
    #[cfg(feature = "psk")]
    Psk(&'a super::psk::Psk),
}

/// Encodes and protects `message`; returns the total length written to `out`.
pub(crate) fn protect(
    message: &super::Message,
    how: Protect<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let mode = match how {
        Protect::Signed { .. } => super::Mode::Signed,
        #[cfg(feature = "psk")]
        Protect::Psk(_) => super::Mode::Psk,
    };
    let n = super::message::encode_unprotected(mode, message, out)?;
    let end = n.saturating_add(mode.trailer_len());
    if end > super::MAX_MESSAGE_LEN {
        return Err(Error::CapacityExceeded);
    }
    let (protected, rest) = out.split_at_mut_checked(n).ok_or(Error::BufferTooSmall)?;
    let trailer = rest
        .get_mut(..mode.trailer_len())
        .ok_or(Error::BufferTooSmall)?;
    match how {
        Protect::Signed { key, peer } => {
            trailer.copy_from_slice(&sign(key, message.direction(), peer, protected)?);
        }
        #[cfg(feature = "psk")]
        Protect::Psk(psk) => {
            trailer.copy_from_slice(&super::psk::tag(psk, message, protected)?);
        }
    }
    Ok(end)
}

/// Checks the trailer of a parsed message: mode, then signature or tag.
pub(crate) fn check(pm: &super::ProtectedMessage<'_>, how: Check<'_>) -> Result<(), Error> {
    match how {
        Check::Signed { key, peer } => {
            if pm.mode != super::Mode::Signed {
                return Err(Error::ModeMismatch);
            }
            verify(key, pm.message.direction(), peer, pm.protected, pm.trailer)
        }
        #[cfg(feature = "psk")]
        Check::Psk(psk) => {
            if pm.mode != super::Mode::Psk {
                return Err(Error::ModeMismatch);
            }
            super::psk::verify(psk, &pm.message, pm.protected, pm.trailer)
        }
    }
}
