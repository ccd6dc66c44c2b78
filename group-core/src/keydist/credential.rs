//! Credentials: what the key server and a device hold to protect their messages to each
//! other, and the one place that tells the signed mode from the PSK mode.
//!
//! [`ServerCredentials`], [`MemberCredentials`] and [`DeviceCredential`] are what is
//! provisioned and stored. [`Credential`] pairs one side's own key with what it holds of its
//! peer, and protects and checks messages and seals and opens bundle secrets in that pair's
//! mode; the key server and the member only ever call it.

use core::fmt;

#[cfg(feature = "keydist-server")]
use p256::ecdh;
use p256::ecdsa::SigningKey;
#[cfg(feature = "signed")]
use p256::ecdsa::VerifyingKey;
#[cfg(feature = "keydist-server")]
use p256::elliptic_curve::Generate;
#[cfg(feature = "keydist-server")]
use rand_core::CryptoRng;
#[cfg(feature = "keydist-server")]
use serde::{Deserialize, Serialize};

use super::error::Error;
#[cfg(feature = "keydist-server")]
use super::message::CompressedKey;
use super::message::KeyMaterial;
#[cfg(feature = "keydist-server")]
use super::message::Message;
#[cfg(feature = "keydist-server")]
use super::message::ProtectedMessage;
#[cfg(feature = "keydist-member")]
use super::message::PublicKeyBytes;
#[cfg(feature = "keydist-server")]
use super::message::{SealedSecret, ServerHeader};
#[cfg(feature = "psk")]
use super::psk::{self, Psk};
#[cfg(feature = "keydist-server")]
use super::signed::parse_key;
#[cfg(feature = "signed")]
use super::signed::{self, compressed};
#[cfg(feature = "keydist-member")]
use super::view::{BundleView, ServerProtected};
#[cfg(feature = "keydist-member")]
use super::writer::DeviceMessage;

#[cfg(feature = "keydist-server")]
/// The key server's own credentials (not part of the stored state: provision them like a
/// device key, e.g. from a key file or secure element).
pub struct ServerCredentials {
    signing_key: SigningKey,
}

#[cfg(feature = "keydist-server")]
impl ServerCredentials {
    /// The key server's static P-256 key pair (signs every server message).
    pub fn new(signing_key: SigningKey) -> Self {
        Self { signing_key }
    }

    /// The public key devices must hold.
    pub fn public_key(&self) -> VerifyingKey {
        *self.signing_key.verifying_key()
    }
}

#[cfg(feature = "keydist-server")]
impl fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCredentials").finish_non_exhaustive()
    }
}

#[cfg(feature = "keydist-server")]
/// How an admitted device authenticates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceCredential {
    /// Its static P-256 public key (compressed SEC1).
    PublicKey(CompressedKey),
    /// Its 16-byte pre-shared key (feature `psk`).
    #[cfg(feature = "psk")]
    Psk(Psk),
}

#[cfg(feature = "keydist-server")]
impl DeviceCredential {
    /// A device identified by its P-256 public key.
    pub fn public_key(key: &VerifyingKey) -> Self {
        let bytes = compressed(key).unwrap_or([0u8; 33]);
        Self::PublicKey(CompressedKey::from(bytes))
    }

    pub(crate) fn is_psk(&self) -> bool {
        !matches!(self, Self::PublicKey(_))
    }

    /// Its public key, if it is identified by one.
    pub(crate) fn compressed_key(&self) -> Option<&CompressedKey> {
        match self {
            Self::PublicKey(k) => Some(k),
            #[cfg(feature = "psk")]
            Self::Psk(_) => None,
        }
    }

    /// Refuses a public key that is not a valid P-256 point.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(k) = self.compressed_key() {
            parse_key(&k.0)?;
        }
        Ok(())
    }

    /// Checks the public key a join request claims: the one on file (signed mode), or none
    /// (PSK mode).
    pub(crate) fn check_claimed_key(&self, claimed: &[u8]) -> Result<(), Error> {
        match self {
            Self::PublicKey(k) => {
                let claimed = parse_key(claimed)?;
                if compressed(&claimed)? != k.0 {
                    return Err(Error::UnknownDevice);
                }
                Ok(())
            }
            #[cfg(feature = "psk")]
            Self::Psk(_) => {
                if !claimed.is_empty() {
                    return Err(Error::BadPublicKey);
                }
                Ok(())
            }
        }
    }
}

#[cfg(feature = "keydist-server")]
impl fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PublicKey(k) => write!(f, "PublicKey({k:?})"),
            #[cfg(feature = "psk")]
            Self::Psk(_) => f.write_str("Psk(..)"),
        }
    }
}

#[cfg(feature = "keydist-member")]
/// How this device authenticates to the key server and the key server to it.
pub enum MemberCredentials {
    /// Signed mode: the device's static P-256 key pair (also its record-signing key in groups
    /// that require signatures) and the key server's public key (feature `signed`).
    #[cfg(feature = "signed")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signed")))]
    Signed {
        /// The device's key.
        device_key: SigningKey,
        /// The key server's public key.
        server_key: VerifyingKey,
    },
    /// PSK mode (feature `psk`): the device's 16-byte pre-shared key.
    #[cfg(feature = "psk")]
    Psk(Psk),
}

#[cfg(feature = "keydist-member")]
impl MemberCredentials {
    /// Signed-mode credentials.
    #[cfg(feature = "signed")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signed")))]
    pub fn signed(device_key: SigningKey, server_key: VerifyingKey) -> Self {
        Self::Signed {
            device_key,
            server_key,
        }
    }

    /// The device's key pair (signed mode), which also signs its records in groups that
    /// require signatures.
    pub(crate) fn device_key(&self) -> Option<&SigningKey> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { device_key, .. } => Some(device_key),
            #[cfg(feature = "psk")]
            Self::Psk(_) => None,
        }
    }

    /// The public key a join request carries: the device's (signed mode) or none (PSK).
    pub(crate) fn public_key_bytes(&self) -> Result<PublicKeyBytes, Error> {
        match self.device_key() {
            #[cfg(feature = "signed")]
            Some(device_key) => {
                let c = compressed(device_key.verifying_key())?;
                PublicKeyBytes::from_slice(&c).map_err(|_| Error::BadPublicKey)
            }
            _ => Ok(PublicKeyBytes::new()),
        }
    }

    /// The device's side of its pairing with the key server.
    pub(crate) fn credential(&self) -> Credential<'_> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed {
                device_key,
                server_key,
            } => Credential::Signed {
                own: device_key,
                peer: *server_key,
            },
            #[cfg(feature = "psk")]
            Self::Psk(psk) => Credential::Psk(psk),
        }
    }
}

#[cfg(feature = "keydist-member")]
impl fmt::Debug for MemberCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { server_key, .. } => f
                .debug_struct("Signed")
                .field("server_key", server_key)
                .finish_non_exhaustive(),
            #[cfg(feature = "psk")]
            Self::Psk(_) => f.write_str("Psk(..)"),
        }
    }
}

/// One side of a key server–device pairing: its own key and what it holds of the peer.
pub(crate) enum Credential<'a> {
    /// Signed mode: this side signs with `own` and opens secrets sealed to it; `peer` is the
    /// other side's public key (verifies its messages, receives sealed secrets).
    #[cfg(feature = "signed")]
    Signed {
        /// This side's key pair.
        own: &'a SigningKey,
        /// The peer's public key.
        peer: VerifyingKey,
    },
    /// PSK mode: the device's pre-shared key, held by both sides.
    #[cfg(feature = "psk")]
    Psk(&'a Psk),
}

impl<'a> Credential<'a> {
    /// The key server's side of its pairing with `device`.
    #[cfg(feature = "keydist-server")]
    pub(crate) fn for_device(
        server: &'a ServerCredentials,
        device: &'a DeviceCredential,
    ) -> Result<Self, Error> {
        match device {
            DeviceCredential::PublicKey(k) => Ok(Self::Signed {
                own: &server.signing_key,
                peer: parse_key(&k.0)?,
            }),
            #[cfg(feature = "psk")]
            DeviceCredential::Psk(psk) => Ok(Self::Psk(psk)),
        }
    }

    /// Encodes and protects `message` for the peer; returns the length written to `out`.
    #[cfg(feature = "keydist-server")]
    pub(crate) fn protect(&self, message: &Message, out: &mut [u8]) -> Result<usize, Error> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { own, peer } => signed::encode_signed(message, own, peer, out),
            #[cfg(feature = "psk")]
            Self::Psk(psk) => psk::encode_psk(message, psk, out),
        }
    }

    /// Encodes and protects a device message for the key server (the member's side: the
    /// hand-written body, no serde); returns the length written to `out`.
    #[cfg(feature = "keydist-member")]
    pub(crate) fn protect_device(
        &self,
        message: DeviceMessage<'_>,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { own, peer } => signed::encode_device_signed(message, own, peer, out),
            #[cfg(feature = "psk")]
            Self::Psk(psk) => psk::encode_device_psk(message, psk, out),
        }
    }

    /// Checks that a parsed message from the peer is protected in this pairing's mode, by
    /// the peer, for this side.
    #[cfg(feature = "keydist-server")]
    pub(crate) fn check(&self, pm: &ProtectedMessage<'_>) -> Result<(), Error> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { own, peer } => signed::check(pm, peer, own.verifying_key()),
            #[cfg(feature = "psk")]
            Self::Psk(psk) => psk::check(pm, psk),
        }
    }

    /// Draws from `rng` what sealing a secret for the peer (a device) needs: the signed
    /// mode's ephemeral key (nothing in PSK mode), so that the sealing itself, the public-key
    /// work, needs no RNG and can run on another thread ([`Credential::seal_secret`]).
    #[cfg(feature = "keydist-server")]
    pub(crate) fn draw_ephemeral<R: CryptoRng + ?Sized>(
        device: &DeviceCredential,
        rng: &mut R,
    ) -> Option<ecdh::EphemeralSecret> {
        match device {
            DeviceCredential::PublicKey(_) => Some(ecdh::EphemeralSecret::generate_from_rng(rng)),
            #[cfg(feature = "psk")]
            DeviceCredential::Psk(_) => None,
        }
    }

    /// Seals key material for the peer (a device) in the bundle with this header, epoch and
    /// suite, with the ephemeral key drawn by [`Credential::draw_ephemeral`] (signed mode;
    /// missing: [`Error::BadPublicKey`]).
    #[cfg(feature = "keydist-server")]
    pub(crate) fn seal_secret(
        &self,
        ephemeral: Option<&ecdh::EphemeralSecret>,
        header: &ServerHeader,
        epoch: u16,
        suite: u16,
        material: &KeyMaterial,
    ) -> Result<SealedSecret, Error> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { peer, .. } => {
                let eph = ephemeral.ok_or(Error::BadPublicKey)?;
                let aad = super::sealing::bundle_aad(header, epoch, suite);
                signed::seal_ecdh_with(eph, peer, &aad, material)
            }
            #[cfg(feature = "psk")]
            Self::Psk(psk) => psk::seal_secret_psk(psk, header, epoch, suite, material),
        }
    }

    /// Checks a server message decoded by borrowing, as [`check`](Self::check).
    #[cfg(feature = "keydist-member")]
    pub(crate) fn check_server(&self, pm: &ServerProtected<'_>) -> Result<(), Error> {
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { own, peer } => signed::check_server(pm, peer, own.verifying_key()),
            #[cfg(feature = "psk")]
            Self::Psk(psk) => psk::check_server(pm, psk),
        }
    }

    /// Opens the key material of a bundle addressed to this side (a device).
    #[cfg(feature = "keydist-member")]
    pub(crate) fn open_secret(&self, bundle: &BundleView<'_>) -> Result<KeyMaterial, Error> {
        let (h, e, s, sealed) = (&bundle.header, bundle.epoch, bundle.suite, &bundle.sealed);
        match self {
            #[cfg(feature = "signed")]
            Self::Signed { own, .. } => signed::open_sealed(own, h, e, s, sealed),
            #[cfg(feature = "psk")]
            Self::Psk(psk) => psk::open_sealed(psk, h, e, s, sealed),
        }
    }
}
