//! ECDSA P-256 signatures with low S: the one place that signs and verifies, for signed records
//! (wire-format.md §8, [`Group`](crate::group::Group)) and signed key-distribution messages
//! ([`keydist`](crate::keydist)).
//!
//! A signature is `r || s` (32 bytes each, [`SIGNATURE_LEN`]) over SHA-256 of the concatenated
//! parts. Signing always emits the low-S form (`s <= n/2`); verification refuses the high-S
//! form, so a valid signature can't be re-encoded into a second valid one.

#[cfg(any(feature = "record-signatures", feature = "signed"))]
use p256::ecdsa::signature::{MultipartSigner, MultipartVerifier};
#[cfg(any(feature = "record-signatures", feature = "signed"))]
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

/// Length of an ECDSA P-256 signature (`r || s`).
pub const SIGNATURE_LEN: usize = 64;

/// Signing or verification failed (opaque: a crypto failure carries no detail).
#[cfg(any(feature = "record-signatures", feature = "signed"))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SignatureError;

#[cfg(any(feature = "record-signatures", feature = "signed"))]
/// Signs the concatenation of `parts` with `key`; the signature is in low-S form.
pub(crate) fn sign(
    key: &SigningKey,
    parts: &[&[u8]],
) -> Result<[u8; SIGNATURE_LEN], SignatureError> {
    let sig: Signature = key.try_multipart_sign(parts).map_err(|_| SignatureError)?;
    let bytes = sig.normalize_s().to_bytes();
    let mut out = [0u8; SIGNATURE_LEN];
    out.copy_from_slice(bytes.as_slice());
    Ok(out)
}

#[cfg(any(feature = "record-signatures", feature = "signed"))]
/// Verifies `signature` (`r || s`) by `key` over the concatenation of `parts`. A high-S
/// signature is refused.
pub(crate) fn verify(
    key: &VerifyingKey,
    parts: &[&[u8]],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let sig = Signature::from_slice(signature).map_err(|_| SignatureError)?;
    if sig.normalize_s() != sig {
        return Err(SignatureError);
    }
    key.multipart_verify(parts, &sig)
        .map_err(|_| SignatureError)
}

#[cfg(all(test, feature = "record-signatures"))]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};

    #[test]
    fn parts_sign_as_their_concatenation_and_high_s_is_refused() {
        let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
        let whole = b"dtls-group signed input";
        let sig = sign(&key, &[&whole[..5], &whole[5..]]).unwrap();
        // Deterministic (RFC 6979): the same as signing the whole in one part, normalized.
        let one: Signature = key.sign(whole);
        assert_eq!(&sig[..], one.normalize_s().to_bytes().as_slice());
        assert_eq!(verify(key.verifying_key(), &[whole], &sig), Ok(()));
        assert!(
            key.verifying_key()
                .verify(whole, &Signature::from_slice(&sig).unwrap())
                .is_ok()
        );
        // The high-S twin verifies mathematically but is refused here.
        let low = Signature::from_slice(&sig).unwrap();
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        assert_ne!(high, low);
        assert_eq!(
            verify(key.verifying_key(), &[whole], &high.to_bytes()),
            Err(SignatureError)
        );
        assert_eq!(
            verify(key.verifying_key(), &[b"other"], &sig),
            Err(SignatureError)
        );
        assert_eq!(
            verify(key.verifying_key(), &[whole], &sig[..63]),
            Err(SignatureError)
        );
    }
}
