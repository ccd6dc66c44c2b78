//! Key schedules (wire-format.md §9): from key-server material to [`RecordKeys`].
//!
//! - [`native_keys`] (feature `native-schedule`, a default): HKDF-SHA256 (RFC 5869) from a
//!   32-byte epoch secret, bound to the group, epoch and suite.
//! - [`wolfssl_keys`] (feature `wolfssl-schedule`, a default): the TLS 1.2 PRF (RFC 5246 §5,
//!   P_SHA256) schedule wolfSSL's `wolfSSL_set_secret` uses, for interoperation with wolfSSL
//!   multicast members.
//!
//! Neither is needed by a device provisioned with raw record keys: a commissioning tool writes
//! each epoch's write key and IV, and the device installs them with
//! [`RecordKeys::new`] and [`Group::install_epoch`](crate::Group::install_epoch) (or
//! [`install_and_activate`](crate::Group::install_and_activate)). Sending in such an epoch
//! goes through the same sequence-persistence contract ([`crate::sequence`]) as in a derived
//! one; the tool must never hand a device an `(epoch, key)` it used before with a store
//! commissioned empty (docs/decisions.md, "Raw record keys on a light").

use core::fmt;

#[cfg(feature = "native-schedule")]
use hkdf::Hkdf;
#[cfg(feature = "wolfssl-schedule")]
use hmac::{Hmac, KeyInit, Mac};
#[cfg(any(feature = "native-schedule", feature = "wolfssl-schedule"))]
use sha2::Sha256;
#[cfg(any(feature = "native-schedule", feature = "wolfssl-schedule"))]
use zeroize::Zeroizing;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[cfg(any(feature = "native-schedule", feature = "wolfssl-schedule"))]
use crate::suite::{KeyError, MAX_IV_LEN, MAX_KEY_LEN, RecordKeys, Suite};
#[cfg(feature = "native-schedule")]
use crate::wire::Epoch;

#[cfg(feature = "native-schedule")]
/// Salt of the native schedule's HKDF-Extract.
pub const NATIVE_SALT: &[u8] = b"dtls-group v1";
#[cfg(feature = "native-schedule")]
/// Label prefix of the write key.
pub const NATIVE_KEY_LABEL: &[u8] = b"dtls-group key";
#[cfg(feature = "native-schedule")]
/// Label prefix of the write IV.
pub const NATIVE_IV_LABEL: &[u8] = b"dtls-group iv";

/// Whether this build derives keys on the wolfSSL schedule (feature `wolfssl-schedule`):
/// without it a member refuses a bundle with wolfSSL key material (`PolicyUnsupported`).
/// Cargo unifies features within one build, so a crate that depends on group-core without
/// the feature may still get it: this says which build it got.
pub const WOLFSSL_SCHEDULE: bool = cfg!(feature = "wolfssl-schedule");

/// A fresh 32-byte secret the key server picks for each epoch. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct EpochSecret(pub [u8; 32]);

impl fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochSecret(..)")
    }
}

#[cfg(feature = "native-schedule")]
#[cfg_attr(docsrs, doc(cfg(feature = "native-schedule")))]
/// Native schedule:
/// ```text
/// prk       = HKDF-Extract(salt = "dtls-group v1", ikm = epoch_secret)
/// ctx       = group_id[4, BE] || epoch[2, BE] || suite[2, BE]
/// write_key = HKDF-Expand(prk, "dtls-group key" || ctx, key_len)
/// write_iv  = HKDF-Expand(prk, "dtls-group iv"  || ctx, iv_len)
/// ```
pub fn native_keys(
    group_id: u32,
    epoch: Epoch,
    suite: Suite,
    secret: &EpochSecret,
) -> Result<RecordKeys, KeyError> {
    let params = suite.params().ok_or(KeyError::UnknownSuite(suite))?;
    let hk = Hkdf::<Sha256>::new(Some(NATIVE_SALT), &secret.0);
    let [g0, g1, g2, g3] = group_id.to_be_bytes();
    let [e0, e1] = epoch.0.to_be_bytes();
    let [s0, s1] = suite.0.to_be_bytes();
    let ctx = [g0, g1, g2, g3, e0, e1, s0, s1];
    let mut key = Zeroizing::new([0u8; MAX_KEY_LEN]);
    let mut iv = Zeroizing::new([0u8; MAX_IV_LEN]);
    let key_out = key
        .get_mut(..params.key_len)
        .ok_or(KeyError::BadKeyLength)?;
    hk.expand_multi_info(&[NATIVE_KEY_LABEL, &ctx], key_out)
        .map_err(|_| KeyError::BadKeyLength)?;
    let iv_out = iv.get_mut(..params.iv_len).ok_or(KeyError::BadIvLength)?;
    hk.expand_multi_info(&[NATIVE_IV_LABEL, &ctx], iv_out)
        .map_err(|_| KeyError::BadIvLength)?;
    RecordKeys::new(
        suite,
        key.get(..params.key_len).unwrap_or(&[]),
        iv.get(..params.iv_len).unwrap_or(&[]),
    )
}

#[cfg(feature = "wolfssl-schedule")]
/// TLS 1.2 PRF with SHA-256 (RFC 5246 §5): fills `out` with
/// `P_SHA256(secret, label || seed_a || seed_b)`.
pub fn tls12_prf_sha256(secret: &[u8], label: &[u8], seed_a: &[u8], seed_b: &[u8], out: &mut [u8]) {
    type H = Hmac<Sha256>;
    let Ok(base) = <H as KeyInit>::new_from_slice(secret) else {
        // HMAC accepts keys of any length; this branch is unreachable in practice.
        out.zeroize();
        return;
    };
    // A(1) = HMAC(secret, seed)
    let mut a = Zeroizing::new({
        let mut m = base.clone();
        m.update(label);
        m.update(seed_a);
        m.update(seed_b);
        let r: [u8; 32] = m.finalize().into_bytes().into();
        r
    });
    for chunk in out.chunks_mut(32) {
        let mut m = base.clone();
        m.update(a.as_slice());
        m.update(label);
        m.update(seed_a);
        m.update(seed_b);
        let block = Zeroizing::new(<[u8; 32]>::from(m.finalize().into_bytes()));
        for (o, b) in chunk.iter_mut().zip(block.iter()) {
            *o = *b;
        }
        let mut m = base.clone();
        m.update(a.as_slice());
        *a = m.finalize().into_bytes().into();
    }
}

#[cfg(feature = "wolfssl-schedule")]
/// The master secret and key block of the wolfSSL schedule, for checking against wolfSSL.
pub struct WolfSslDerivation {
    /// `PRF(pms, "master secret", client_random || server_random)[0..48]`.
    pub master_secret: Zeroizing<[u8; 48]>,
    /// The keys every member uses to send and to receive.
    pub keys: RecordKeys,
}

#[cfg(feature = "wolfssl-schedule")]
impl fmt::Debug for WolfSslDerivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WolfSslDerivation").finish_non_exhaustive()
    }
}

#[cfg(feature = "wolfssl-schedule")]
/// wolfSSL-compatible schedule (`wolfSSL_set_secret`, no extended master secret):
/// ```text
/// master_secret = PRF(pms, "master secret", client_random || server_random)[0..48]
/// key_block     = PRF(master_secret, "key expansion", server_random || client_random)
/// AES suites:  write_key = key_block[0..16],  write_iv = key_block[16..20]
/// ChaCha20:    write_key = key_block[0..32],  write_iv = key_block[32..44]
/// ```
pub fn wolfssl_keys(
    suite: Suite,
    pms: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> Result<WolfSslDerivation, KeyError> {
    let params = suite.params().ok_or(KeyError::UnknownSuite(suite))?;
    let mut master = Zeroizing::new([0u8; 48]);
    tls12_prf_sha256(
        pms,
        b"master secret",
        client_random,
        server_random,
        &mut *master,
    );
    let mut block = Zeroizing::new([0u8; MAX_KEY_LEN + MAX_IV_LEN]);
    tls12_prf_sha256(
        &*master,
        b"key expansion",
        server_random,
        client_random,
        &mut *block,
    );
    let key_end = params.key_len;
    let iv_end = key_end.saturating_add(params.iv_len);
    let keys = RecordKeys::new(
        suite,
        block.get(..key_end).ok_or(KeyError::BadKeyLength)?,
        block.get(key_end..iv_end).ok_or(KeyError::BadIvLength)?,
    )?;
    Ok(WolfSslDerivation {
        master_secret: master,
        keys,
    })
}
