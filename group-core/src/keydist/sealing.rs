//! AES-128-CCM as key distribution uses it (docs/key-distribution.md §4–§5): sealing key
//! material (both modes), the PSK mode's message tags, and the associated data that binds a
//! sealed secret to its bundle.
//!
//! ```text
//! ciphertext||tag = AES-128-CCM(key, nonce, aad, postcard(KeyMaterial)), 16-byte tag, 13-byte nonce
//! aad             = group_id[4] || device_id[4] || counter[8] || epoch[2] || suite[2]   (big endian)
//! ```

use zeroize::Zeroizing;

use super::error::Error;
use super::message::{
    KeyMaterial, MAX_KEY_MATERIAL_LEN, MAX_SEALED_LEN, ServerHeader, decode_key_material,
    encode_key_material,
};
use super::vocabulary::{DeviceId, TAG_LEN};
use crate::suite::ccm::AesCcm;

/// AES-128-CCM with a 16-byte tag and a 13-byte nonce (L = 2): the record layer's own CCM
/// (`suite::ccm`, one AES-CCM and one AES width in a member), byte for byte the `ccm` crate's
/// `Ccm<Aes128, U16, U13>` (checked there).
type KdCcm = AesCcm<CCM_NONCE_LEN>;
/// CCM nonce length used by key distribution.
pub(crate) const CCM_NONCE_LEN: usize = 13;

/// The associated data that binds a sealed secret to its bundle.
fn secret_aad(group_id: u32, device: DeviceId, counter: u64, epoch: u16, suite: u16) -> [u8; 20] {
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

/// The associated data of the secret sealed into the bundle with this header, epoch and suite.
pub(crate) fn bundle_aad(header: &ServerHeader, epoch: u16, suite: u16) -> [u8; 20] {
    secret_aad(
        header.group_id,
        header.device_id,
        header.counter,
        epoch,
        suite,
    )
}

/// The cipher and nonce of `key_nonce` (16-byte key || 13-byte nonce).
fn kd_cipher(key_nonce: &[u8; 29]) -> Result<(KdCcm, [u8; CCM_NONCE_LEN]), Error> {
    let (key, nonce) = key_nonce.split_at(16);
    let cipher = KdCcm::new(key, TAG_LEN).ok_or(Error::AuthenticationFailed)?;
    let nonce = <[u8; CCM_NONCE_LEN]>::try_from(nonce).map_err(|_| Error::AuthenticationFailed)?;
    Ok((cipher, nonce))
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
    let (cipher, nonce) = kd_cipher(key_nonce)?;
    let (pt, rest) = buf.split_at_mut_checked(n).ok_or(Error::BufferTooSmall)?;
    let tag = rest.get_mut(..TAG_LEN).ok_or(Error::BufferTooSmall)?;
    cipher
        .seal_in_place(&nonce, aad, pt, tag)
        .map_err(|_| Error::AuthenticationFailed)?;
    let total = n.saturating_add(TAG_LEN);
    heapless::Vec::from_slice(buf.get(..total).ok_or(Error::BufferTooSmall)?)
        .map_err(|_| Error::BufferTooSmall)
}

/// CCM-decrypts a sealed secret and decodes the key material. The plaintext buffer is wiped.
#[inline(never)] // its own frame (the member's join stack, issue 12)
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
    let (cipher, nonce) = kd_cipher(key_nonce)?;
    cipher
        .open_in_place(&nonce, aad, pt, tag)
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
    let cipher = KdCcm::new(key, TAG_LEN).ok_or(Error::AuthenticationFailed)?;
    let mut out = [0u8; TAG_LEN];
    cipher
        .seal_in_place(nonce, aad, &mut [], &mut out)
        .map_err(|_| Error::AuthenticationFailed)?;
    Ok(out)
}
