//! Cipher suites, record keys and the one nonce function (wire-format.md §1, §2).
//!
//! The suite is not on the wire: it is part of the group's configuration (and of the
//! key-distribution format). Keys live in [`RecordKeys`] (zeroized on drop, never printed);
//! an [`EpochCipher`] is the keyed AEAD of one epoch, built once and reused for every record.
//!
//! Each suite is a cargo feature (`aes-ccm` for CCM_8 and CCM, `aes-gcm`, `chacha20`); keys
//! for a suite that is not compiled in are refused with [`KeyError::SuiteNotEnabled`].

// A build without any suite (key distribution or tooling only) has an empty `Aead`.
#![cfg_attr(
    not(any(feature = "aes-ccm", feature = "aes-gcm", feature = "chacha20")),
    allow(unreachable_code, unused_variables, dead_code, unused_imports)
)]

use core::fmt;

#[cfg(any(feature = "aes-gcm", feature = "chacha20"))]
use aead::{AeadInOut, KeyInit, Nonce, Tag};
#[cfg(feature = "aes-gcm")]
use aes_gcm::Aes128Gcm;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[cfg(any(
    feature = "aes-ccm",
    feature = "keydist-member",
    feature = "keydist-server"
))]
pub(crate) mod ccm;
#[cfg(feature = "aes-ccm")]
use ccm::AesCcm;

/// Length of the explicit nonce carried by AES suites.
pub const EXPLICIT_NONCE_LEN: usize = 8;
/// Largest key of any suite.
pub const MAX_KEY_LEN: usize = 32;
/// Largest write IV of any suite.
pub const MAX_IV_LEN: usize = 12;
/// Largest tag of any suite.
pub const MAX_TAG_LEN: usize = 16;

/// A cipher suite code point (TLS registry values; open: unknown values can be carried).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Suite(pub u16);

impl Suite {
    /// AES-128-CCM with an 8-byte tag (0xC0A8, RFC 6655; mandatory in RFC 7925); needs the
    /// `aes-ccm` feature.
    pub const AES_128_CCM_8: Self = Self(0xC0A8);
    /// AES-128-CCM with a 16-byte tag (0xC0A4, RFC 6655); recommended for multicast; needs the
    /// `aes-ccm` feature.
    pub const AES_128_CCM: Self = Self(0xC0A4);
    /// AES-128-GCM (0x00A8 code point as in wire-format.md §2, RFC 5288 record protection); needs the
    /// `aes-gcm` feature.
    pub const AES_128_GCM: Self = Self(0x00A8);
    /// ChaCha20-Poly1305 (0xCCAB, RFC 7905 nonce); needs the `chacha20` feature.
    pub const CHACHA20_POLY1305: Self = Self(0xCCAB);

    /// The record-protection parameters of a known suite, or `None` for an unknown one.
    pub const fn params(self) -> Option<SuiteParams> {
        match self {
            Self::AES_128_CCM_8 => Some(SuiteParams::aes(8)),
            Self::AES_128_CCM | Self::AES_128_GCM => Some(SuiteParams::aes(16)),
            Self::CHACHA20_POLY1305 => Some(SuiteParams::CHACHA20),
            _ => None,
        }
    }

    /// Whether this build can protect records with the suite.
    pub const fn is_enabled(self) -> bool {
        (cfg!(feature = "aes-ccm") && matches!(self, Self::AES_128_CCM_8 | Self::AES_128_CCM))
            || (cfg!(feature = "aes-gcm") && matches!(self, Self::AES_128_GCM))
            || (cfg!(feature = "chacha20") && matches!(self, Self::CHACHA20_POLY1305))
    }

    /// A short name (`ccm8`, `ccm`, `gcm`, `chacha20`), or `None` for an unknown suite.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Self::AES_128_CCM_8 => Some("ccm8"),
            Self::AES_128_CCM => Some("ccm"),
            Self::AES_128_GCM => Some("gcm"),
            Self::CHACHA20_POLY1305 => Some("chacha20"),
            _ => None,
        }
    }

    /// Looks a suite up by its short name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::AES_128_CCM_8,
            Self::AES_128_CCM,
            Self::AES_128_GCM,
            Self::CHACHA20_POLY1305,
        ]
        .into_iter()
        .find(|s| s.name() == Some(name))
    }
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "Suite({n})"),
            None => write!(f, "Suite({:#06x})", self.0),
        }
    }
}

/// Record-protection sizes of a suite.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SuiteParams {
    /// Key length in bytes.
    pub key_len: usize,
    /// Write IV length in bytes (4 for AES suites: the implicit salt; 12 for ChaCha20).
    pub iv_len: usize,
    /// Tag length in bytes.
    pub tag_len: usize,
    /// Explicit nonce bytes at the start of the fragment (8 for AES suites, 0 for ChaCha20).
    pub explicit_nonce_len: usize,
}

impl SuiteParams {
    /// ChaCha20-Poly1305: 32-byte key, 12-byte IV, no explicit nonce (RFC 7905).
    const CHACHA20: Self = Self {
        key_len: 32,
        iv_len: 12,
        tag_len: 16,
        explicit_nonce_len: 0,
    };

    const fn aes(tag_len: usize) -> Self {
        Self {
            key_len: 16,
            iv_len: 4,
            tag_len,
            explicit_nonce_len: EXPLICIT_NONCE_LEN,
        }
    }

    /// Bytes a record adds to its plaintext: header, explicit nonce and tag.
    pub const fn overhead(&self) -> usize {
        crate::wire::HEADER_LEN
            .saturating_add(self.explicit_nonce_len)
            .saturating_add(self.tag_len)
    }
}

/// Why key material was refused.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The suite is unknown.
    UnknownSuite(Suite),
    /// The suite is known but not compiled in (enable its feature: `aes-ccm`, `aes-gcm`,
    /// `chacha20`).
    SuiteNotEnabled(Suite),
    /// The key has the wrong length for the suite.
    BadKeyLength,
    /// The IV has the wrong length for the suite.
    BadIvLength,
    /// Epoch 0 is the unprotected epoch and can't carry group keys.
    EpochZero,
    /// The epoch is not newer than one already installed (epochs are never reused).
    EpochNotNewer,
    /// No staged epoch with that number to activate.
    NotStaged,
    /// The group requires record signatures, and this build has no `record-signatures`
    /// feature (its records would otherwise be accepted unsigned).
    SignaturesNotEnabled,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::UnknownSuite(s) => write!(f, "unknown suite {:#06x}", s.0),
            KeyError::SuiteNotEnabled(s) => write!(f, "suite {s:?} not enabled in this build"),
            KeyError::BadKeyLength => f.write_str("wrong key length for suite"),
            KeyError::BadIvLength => f.write_str("wrong IV length for suite"),
            KeyError::EpochZero => f.write_str("epoch 0 can't carry keys"),
            KeyError::EpochNotNewer => f.write_str("epoch not newer than an installed epoch"),
            KeyError::NotStaged => f.write_str("no staged epoch with that number"),
            KeyError::SignaturesNotEnabled => {
                f.write_str("record signatures required but not enabled in this build")
            }
        }
    }
}

impl core::error::Error for KeyError {}

/// The write key and write IV of one epoch. Zeroized on drop; `Debug` prints only the suite.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RecordKeys {
    #[zeroize(skip)]
    suite: Suite,
    key: [u8; MAX_KEY_LEN],
    iv: [u8; MAX_IV_LEN],
}

impl RecordKeys {
    /// Checks lengths against the suite and copies the material.
    pub fn new(suite: Suite, key: &[u8], iv: &[u8]) -> Result<Self, KeyError> {
        let params = suite.params().ok_or(KeyError::UnknownSuite(suite))?;
        if !suite.is_enabled() {
            return Err(KeyError::SuiteNotEnabled(suite));
        }
        if key.len() != params.key_len {
            return Err(KeyError::BadKeyLength);
        }
        if iv.len() != params.iv_len {
            return Err(KeyError::BadIvLength);
        }
        let mut out = Self {
            suite,
            key: [0; MAX_KEY_LEN],
            iv: [0; MAX_IV_LEN],
        };
        out.key
            .get_mut(..key.len())
            .ok_or(KeyError::BadKeyLength)?
            .copy_from_slice(key);
        out.iv
            .get_mut(..iv.len())
            .ok_or(KeyError::BadIvLength)?
            .copy_from_slice(iv);
        Ok(out)
    }

    /// The suite these keys are for.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The write key (secret).
    pub fn key(&self) -> &[u8] {
        let len = self.suite.params().map_or(0, |p| p.key_len);
        self.key.get(..len).unwrap_or(&[])
    }

    /// The write IV (secret).
    pub fn iv(&self) -> &[u8] {
        let len = self.suite.params().map_or(0, |p| p.iv_len);
        self.iv.get(..len).unwrap_or(&[])
    }
}

impl PartialEq for RecordKeys {
    /// Constant-time comparison of the key material.
    fn eq(&self, other: &Self) -> bool {
        self.suite == other.suite
            && bool::from(self.key.ct_eq(&other.key) & self.iv.ct_eq(&other.iv))
    }
}
impl Eq for RecordKeys {}

impl fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Authentication failed, or the AEAD refused the input. Deliberately opaque.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AeadError;

impl fmt::Display for AeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("authentication failed")
    }
}

impl core::error::Error for AeadError {}

#[allow(clippy::large_enum_variant)]
enum Aead {
    /// AES-128-CCM_8 and AES-128-CCM: group-core's own CCM (`suite/ccm.rs`), whose speed does
    /// not depend on the build's codegen units.
    #[cfg(feature = "aes-ccm")]
    Ccm(AesCcm),
    #[cfg(feature = "aes-gcm")]
    Gcm(Aes128Gcm),
    #[cfg(feature = "chacha20")]
    ChaCha(chacha20poly1305::ChaCha20Poly1305),
}

/// The keyed AEAD of one epoch plus its write IV. The key schedule runs once, in
/// [`EpochCipher::new`]; the AES key schedules are zeroized on drop. The suite's sizes are not
/// stored: [`EpochCipher::params`] reads them from the AEAD (issue 12, RAM of a `Group`).
pub struct EpochCipher {
    aead: Aead,
    suite: Suite,
    iv: [u8; MAX_IV_LEN],
}

impl Drop for EpochCipher {
    fn drop(&mut self) {
        self.iv.zeroize();
    }
}

impl fmt::Debug for EpochCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochCipher")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl EpochCipher {
    /// Builds the keyed AEAD.
    pub fn new(keys: &RecordKeys) -> Result<Self, KeyError> {
        let suite = keys.suite();
        let params = suite.params().ok_or(KeyError::UnknownSuite(suite))?;
        let key = keys.key();
        let aead = match suite {
            #[cfg(feature = "aes-ccm")]
            Suite::AES_128_CCM_8 | Suite::AES_128_CCM => {
                Aead::Ccm(AesCcm::new(key, params.tag_len).ok_or(KeyError::BadKeyLength)?)
            }
            #[cfg(feature = "aes-gcm")]
            Suite::AES_128_GCM => {
                Aead::Gcm(KeyInit::new_from_slice(key).map_err(|_| KeyError::BadKeyLength)?)
            }
            #[cfg(feature = "chacha20")]
            Suite::CHACHA20_POLY1305 => {
                Aead::ChaCha(KeyInit::new_from_slice(key).map_err(|_| KeyError::BadKeyLength)?)
            }
            other => return Err(KeyError::SuiteNotEnabled(other)),
        };
        Ok(Self {
            aead,
            suite,
            iv: keys.iv,
        })
    }

    /// Whether `self` and `other` were keyed with the same [`RecordKeys`] (the same suite,
    /// write key and write IV), without holding a copy of either: the IVs are compared, and
    /// each cipher seals the same fixed 16-byte block under the same fixed nonce; the two
    /// ciphertexts and tags (24 to 32 bytes, a function of the secret key) are compared. All
    /// comparisons are constant time. Two different keys give the same output with probability
    /// about 2^-128 (a 128-bit block cipher or stream under two keys), so a retransmitted
    /// bundle is recognised and a different key for a held epoch is refused
    /// ([`EpochSet::install`](crate::epochs::EpochSet::install)). The outputs are wiped; they
    /// never leave this function.
    pub fn same_keys(&self, other: &EpochCipher) -> bool {
        // No record nonce has this form for the AES suites with an epoch in use (the explicit
        // part would be epoch 0xFFFF, sid 0xFF, seq 2^40 - 1, which no sender reaches), and
        // the output is never sent anyway.
        const NONCE: [u8; 12] = [0xFF; 12];
        const AAD: &[u8] = b"dtls-group same keys";
        let mut mine = [0u8; 16 + MAX_TAG_LEN];
        let mut theirs = [0u8; 16 + MAX_TAG_LEN];
        let sealed = |c: &EpochCipher, out: &mut [u8; 16 + MAX_TAG_LEN]| {
            let tag_len = c.params().tag_len;
            let (buf, tag) = out.split_at_mut(16);
            let tag = tag.get_mut(..tag_len).ok_or(AeadError)?;
            c.seal_in_place(&NONCE, AAD, buf, tag)
        };
        let ok = sealed(self, &mut mine).is_ok() && sealed(other, &mut theirs).is_ok();
        let same = self.suite == other.suite
            && ok
            && bool::from(self.iv.ct_eq(&other.iv) & mine.ct_eq(&theirs));
        mine.zeroize();
        theirs.zeroize();
        same
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The suite's sizes.
    pub fn params(&self) -> SuiteParams {
        match self.aead {
            #[cfg(feature = "aes-ccm")]
            Aead::Ccm(ref a) => SuiteParams::aes(a.tag_len()),
            #[cfg(feature = "aes-gcm")]
            Aead::Gcm(_) => SuiteParams::aes(16),
            #[cfg(feature = "chacha20")]
            Aead::ChaCha(_) => SuiteParams::CHACHA20,
        }
    }

    /// The one nonce function. `explicit` is the 8-byte explicit nonce: for AES suites the
    /// bytes carried in the record (RFC 5288/6655: `nonce = write_iv[4] || explicit[8]`); for
    /// ChaCha20-Poly1305 `epoch || sid || seq` (RFC 7905: `nonce = write_iv XOR (0^4 || it)`).
    pub fn nonce(&self, explicit: &[u8; EXPLICIT_NONCE_LEN]) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        if self.params().explicit_nonce_len == 0 {
            nonce = self.iv;
            for (n, e) in nonce.iter_mut().rev().zip(explicit.iter().rev()) {
                *n ^= *e;
            }
        } else {
            let [a, b, c, d, ..] = self.iv;
            let (salt, rest) = nonce.split_at_mut(4);
            salt.copy_from_slice(&[a, b, c, d]);
            rest.copy_from_slice(explicit);
        }
        nonce
    }

    /// Encrypts `buf` in place and writes the tag into `tag` (exactly `tag_len` bytes).
    pub fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), AeadError> {
        #[cfg(any(feature = "aes-gcm", feature = "chacha20"))]
        fn run<A: AeadInOut>(
            a: &A,
            nonce: &[u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &mut [u8],
        ) -> Result<(), AeadError> {
            let n = Nonce::<A>::try_from(nonce.as_slice()).map_err(|_| AeadError)?;
            let t = a
                .encrypt_inout_detached(&n, aad, buf.into())
                .map_err(|_| AeadError)?;
            if tag.len() != t.len() {
                return Err(AeadError);
            }
            tag.copy_from_slice(&t);
            Ok(())
        }
        match self.aead {
            #[cfg(feature = "aes-ccm")]
            Aead::Ccm(ref a) => a.seal_in_place(nonce, aad, buf, tag),
            #[cfg(feature = "aes-gcm")]
            Aead::Gcm(ref a) => run(a, nonce, aad, buf, tag),
            #[cfg(feature = "chacha20")]
            Aead::ChaCha(ref a) => run(a, nonce, aad, buf, tag),
        }
    }

    /// Decrypts `buf` in place if `tag` authenticates it. On failure `buf` is wiped.
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AeadError> {
        #[cfg(any(feature = "aes-gcm", feature = "chacha20"))]
        fn run<A: AeadInOut>(
            a: &A,
            nonce: &[u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8],
        ) -> Result<(), AeadError> {
            let n = Nonce::<A>::try_from(nonce.as_slice()).map_err(|_| AeadError)?;
            let t = Tag::<A>::try_from(tag).map_err(|_| AeadError)?;
            a.decrypt_inout_detached(&n, aad, buf.into(), &t)
                .map_err(|_| AeadError)
        }
        let result: Result<(), AeadError> = match self.aead {
            #[cfg(feature = "aes-ccm")]
            Aead::Ccm(ref a) => a.open_in_place(nonce, aad, buf, tag),
            #[cfg(feature = "aes-gcm")]
            Aead::Gcm(ref a) => run(a, nonce, aad, buf, tag),
            #[cfg(feature = "chacha20")]
            Aead::ChaCha(ref a) => run(a, nonce, aad, buf, tag),
        };
        if result.is_err() {
            buf.zeroize();
        }
        result
    }
}
