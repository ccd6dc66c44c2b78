//! Bundles whose state work is done and whose per-member public-key work is left
//! ([`KeyServer::poll_outgoing`]): a driver with threads (group-std's key server daemon) seals
//! several on other threads and sends them in the order they were polled. The core stays
//! single-threaded and `no_std`: a [`BundleJob`] is plain data plus a pure function.

use core::fmt;

use p256::ecdh;

use super::super::credential::{Credential, DeviceCredential, ServerCredentials};
use super::super::error::Error;
use super::super::message::{KeyBundle, KeyMaterial, Message, MessageKind};
use super::super::store::ServerStore;
use super::KeyServer;
use super::outbound::Transmit;
use super::tables::ServerTables;

/// What [`KeyServer::poll_outgoing`] hands the driver.
// A bundle is about 1 KB; group-core has no allocator to box it, and each is moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    /// A join challenge or removal notice, already written to the caller's buffer.
    Ready(Transmit),
    /// A key bundle whose public-key work is left: [`BundleJob::seal`] writes it.
    Bundle(BundleJob),
}

/// A key bundle for one device: every state change of its transmission is done (the epoch
/// persisted as handed out, the server counter taken, the retransmission scheduled) and its
/// ephemeral key drawn; [`seal`](Self::seal) does what is left, the per-member public-key
/// work (the ephemeral public key, ECDH with the device's key, HKDF, the AES-CCM sealing of
/// the key material, the encoding and the server's signature), touching no server state.
///
/// It holds the epoch's key material and the ephemeral secret (both zeroized on drop; its
/// `Debug` shows only the recipient). `Send`: it may be sealed on another thread.
pub struct BundleJob {
    credential: DeviceCredential,
    bundle: KeyBundle,
    material: KeyMaterial,
    ephemeral: Option<ecdh::EphemeralSecret>,
}

impl BundleJob {
    pub(super) fn new(
        credential: DeviceCredential,
        bundle: KeyBundle,
        material: KeyMaterial,
        ephemeral: Option<ecdh::EphemeralSecret>,
    ) -> Self {
        Self {
            credential,
            bundle,
            material,
            ephemeral,
        }
    }

    /// The recipient.
    pub fn device_id(&self) -> super::super::vocabulary::DeviceId {
        self.bundle.header.device_id
    }

    /// Seals the key material to the device, encodes the bundle and protects it (the server's
    /// signature, or the PSK tag) into `buf` (at least
    /// [`MAX_MESSAGE_LEN`](super::super::MAX_MESSAGE_LEN) bytes). `server` must be the
    /// credentials of the key server that polled this job ([`KeyServer::credentials`]). The
    /// bytes are those [`KeyServer::poll_transmit`] would have written at this point.
    pub fn seal(self, server: &ServerCredentials, buf: &mut [u8]) -> Result<Transmit, Error> {
        let Self {
            credential,
            mut bundle,
            material,
            ephemeral,
        } = self;
        let device_id = bundle.header.device_id;
        let cred = Credential::for_device(server, &credential)?;
        bundle.sealed = cred.seal_secret(
            ephemeral.as_ref(),
            &bundle.header,
            bundle.epoch,
            bundle.suite,
            &material,
        )?;
        let len = cred.protect(&Message::KeyBundle(bundle), buf)?;
        Ok(Transmit {
            device_id,
            len,
            kind: MessageKind::KeyBundle,
        })
    }
}

impl fmt::Debug for BundleJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleJob")
            .field("device_id", &self.bundle.header.device_id)
            .field("group_id", &self.bundle.header.group_id)
            .field("epoch", &self.bundle.epoch)
            .finish_non_exhaustive()
    }
}

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
    /// The key server's own credentials, for [`BundleJob::seal`] (they sign; shareable
    /// between threads).
    pub fn credentials(&self) -> &ServerCredentials {
        &self.creds
    }
}
