//! The one error enum of the C API and its stable names.

use core::ffi::c_char;

use group_core::group::{OpenError, SealError};
use group_core::sequence::StoreError;
use group_core::suite::KeyError;

/// What a `dg_` function returns: `DG_OK` (0) or why it did nothing. The values are stable
/// (new ones are only added); [`dg_error_name`] names each. Ranges: 1-19 misuse of the API,
/// 20-39 key material, 40-59 a record not delivered (each counted, see `dg_counters`), 60-79 a
/// record not sealed, 80-99 key distribution.
#[repr(i32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum dg_error {
    /// Success.
    DG_OK = 0,
    /// A required pointer was null.
    DG_ERR_NULL_POINTER = 1,
    /// The memory given to `dg_group_init` is smaller than `dg_group_size()`.
    DG_ERR_CONTEXT_TOO_SMALL = 2,
    /// The context is not aligned to `dg_group_align()`.
    DG_ERR_CONTEXT_UNALIGNED = 3,
    /// The context was never initialised, was deinitialised, or is a byte copy of one (a copy
    /// would repeat its sequence numbers).
    DG_ERR_NOT_INITIALISED = 4,
    /// An argument is out of range (a configuration field, a length).
    DG_ERR_INVALID_ARGUMENT = 5,
    /// The output buffer can't hold the result.
    DG_ERR_BUFFER_TOO_SMALL = 6,
    /// The feature this function needs is not compiled into this build of the library.
    DG_ERR_NOT_ENABLED = 7,
    /// No sequence store is set (`dg_group_set_sequence_store`): a sender can't seal.
    DG_ERR_NO_SEQUENCE_STORE = 8,
    /// A call is already running on this context: a callback (sequence store, random
    /// numbers) called the API with the context it was called for. Nothing was done.
    DG_ERR_CONTEXT_BUSY = 9,
    /// Buffers or output pointers of one call overlap each other or the context (sealing in
    /// place is not supported: use separate plaintext and output buffers).
    DG_ERR_BUFFERS_OVERLAP = 10,
    /// An output or configuration pointer is not aligned for its type.
    DG_ERR_POINTER_UNALIGNED = 11,
    /// The suite is unknown.
    DG_ERR_UNKNOWN_SUITE = 20,
    /// The suite is known but not compiled in.
    DG_ERR_SUITE_NOT_ENABLED = 21,
    /// The key has the wrong length for the suite.
    DG_ERR_BAD_KEY_LENGTH = 22,
    /// The IV has the wrong length for the suite.
    DG_ERR_BAD_IV_LENGTH = 23,
    /// Epoch 0 can't carry keys.
    DG_ERR_EPOCH_ZERO = 24,
    /// The epoch is not newer than one already installed.
    DG_ERR_EPOCH_NOT_NEWER = 25,
    /// No staged epoch with that number to activate.
    DG_ERR_NOT_STAGED = 26,
    /// Other key-material refusal.
    DG_ERR_KEY = 27,
    /// Not a well-formed record (counter `malformed`).
    DG_ERR_MALFORMED = 40,
    /// Not application data (counter `unsupported_content_type`).
    DG_ERR_UNSUPPORTED_CONTENT_TYPE = 41,
    /// The record's epoch is not held (counter `unknown_epoch`).
    DG_ERR_UNKNOWN_EPOCH = 42,
    /// The sender is not known or not admissible (counter `unknown_sender`).
    DG_ERR_UNKNOWN_SENDER = 43,
    /// Already received (counter `replay`).
    DG_ERR_REPLAY = 44,
    /// Older than the replay window (counter `too_old`).
    DG_ERR_TOO_OLD = 45,
    /// Authentication failed (counter `authentication_failed`).
    DG_ERR_AUTHENTICATION_FAILED = 46,
    /// The record carries this node's own sender ID (counter `own_sender_id`).
    DG_ERR_OWN_SENDER_ID = 47,
    /// The explicit nonce is not epoch || sender ID || seq (counter `nonce_mismatch`).
    DG_ERR_NONCE_MISMATCH = 48,
    /// The plaintext would exceed 2^14 bytes (counter `record_overflow`; when sealing,
    /// `seal_record_overflow`).
    DG_ERR_RECORD_OVERFLOW = 49,
    /// No keys yet: not joined (counter `unknown_epoch`).
    DG_ERR_NOT_JOINED = 50,
    /// Another reason a record was not delivered.
    DG_ERR_OPEN = 51,
    /// No current epoch to send in.
    DG_ERR_NO_CURRENT_EPOCH = 60,
    /// This node is a listener (no sender ID).
    DG_ERR_NOT_A_SENDER = 61,
    /// The record would exceed the configured maximum fragment length.
    DG_ERR_PLAINTEXT_TOO_LARGE = 62,
    /// The sequence state is missing or corrupt: this sender waits for a new epoch or sender
    /// ID (it never guesses a sequence number).
    DG_ERR_SEQUENCE_STATE_LOST = 63,
    /// The sequence store's save failed: nothing was sealed.
    DG_ERR_SEQUENCE_STORE = 64,
    /// The store holds a newer epoch or another sender ID for this epoch.
    DG_ERR_SEQUENCE_STALE = 65,
    /// The epoch's sequence numbers are used up: rekey.
    DG_ERR_SEQUENCE_EXHAUSTED = 66,
    /// The AEAD refused the input.
    DG_ERR_CRYPTO = 67,
    /// Another reason a record was not sealed.
    DG_ERR_SEAL = 68,
    /// Key distribution: the message does not decode (truncated, malformed, non-canonical,
    /// unknown version or mode).
    DG_ERR_KD_MALFORMED = 80,
    /// Key distribution: the signature or PSK tag does not verify, or the protection mode is
    /// not the agreed one.
    DG_ERR_KD_AUTHENTICATION = 81,
    /// Key distribution: replayed, stale, or not an answer to the outstanding request.
    DG_ERR_KD_REPLAYED = 82,
    /// Key distribution: for another device or group, or a kind a device never accepts.
    DG_ERR_KD_NOT_FOR_US = 83,
    /// Key distribution: the key server refuses this device (unknown, not admitted, not a
    /// member), or a bundle arrived while not joining.
    DG_ERR_KD_REFUSED = 84,
    /// Key distribution: the bundle can't be used (suite, policy, inconsistent, keys refused).
    DG_ERR_KD_BUNDLE = 85,
    /// Key distribution: another error.
    DG_ERR_KD_OTHER = 86,
    /// The random number callback failed: nothing was sent.
    DG_ERR_RNG = 87,
}

use dg_error::*;

/// Every value, for the name table and its tests.
const ALL: [dg_error; 49] = [
    DG_OK,
    DG_ERR_NULL_POINTER,
    DG_ERR_CONTEXT_TOO_SMALL,
    DG_ERR_CONTEXT_UNALIGNED,
    DG_ERR_NOT_INITIALISED,
    DG_ERR_INVALID_ARGUMENT,
    DG_ERR_BUFFER_TOO_SMALL,
    DG_ERR_NOT_ENABLED,
    DG_ERR_NO_SEQUENCE_STORE,
    DG_ERR_CONTEXT_BUSY,
    DG_ERR_BUFFERS_OVERLAP,
    DG_ERR_POINTER_UNALIGNED,
    DG_ERR_UNKNOWN_SUITE,
    DG_ERR_SUITE_NOT_ENABLED,
    DG_ERR_BAD_KEY_LENGTH,
    DG_ERR_BAD_IV_LENGTH,
    DG_ERR_EPOCH_ZERO,
    DG_ERR_EPOCH_NOT_NEWER,
    DG_ERR_NOT_STAGED,
    DG_ERR_KEY,
    DG_ERR_MALFORMED,
    DG_ERR_UNSUPPORTED_CONTENT_TYPE,
    DG_ERR_UNKNOWN_EPOCH,
    DG_ERR_UNKNOWN_SENDER,
    DG_ERR_REPLAY,
    DG_ERR_TOO_OLD,
    DG_ERR_AUTHENTICATION_FAILED,
    DG_ERR_OWN_SENDER_ID,
    DG_ERR_NONCE_MISMATCH,
    DG_ERR_RECORD_OVERFLOW,
    DG_ERR_NOT_JOINED,
    DG_ERR_OPEN,
    DG_ERR_NO_CURRENT_EPOCH,
    DG_ERR_NOT_A_SENDER,
    DG_ERR_PLAINTEXT_TOO_LARGE,
    DG_ERR_SEQUENCE_STATE_LOST,
    DG_ERR_SEQUENCE_STORE,
    DG_ERR_SEQUENCE_STALE,
    DG_ERR_SEQUENCE_EXHAUSTED,
    DG_ERR_CRYPTO,
    DG_ERR_SEAL,
    DG_ERR_KD_MALFORMED,
    DG_ERR_KD_AUTHENTICATION,
    DG_ERR_KD_REPLAYED,
    DG_ERR_KD_NOT_FOR_US,
    DG_ERR_KD_REFUSED,
    DG_ERR_KD_BUNDLE,
    DG_ERR_KD_OTHER,
    DG_ERR_RNG,
];

/// The name of an error value as a static, NUL-terminated string (`"DG_ERR_REPLAY"`), or
/// `"DG_ERR_UNKNOWN"` for a value that is not a `dg_error`. Never null; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn dg_error_name(code: i32) -> *const c_char {
    let name: &'static core::ffi::CStr = match ALL.iter().find(|e| **e as i32 == code) {
        Some(e) => c_name(*e),
        None => c"DG_ERR_UNKNOWN",
    };
    name.as_ptr()
}

/// NUL-terminated names: the identifiers of the variants (a test checks).
const fn c_name(e: dg_error) -> &'static core::ffi::CStr {
    match e {
        DG_OK => c"DG_OK",
        DG_ERR_NULL_POINTER => c"DG_ERR_NULL_POINTER",
        DG_ERR_CONTEXT_TOO_SMALL => c"DG_ERR_CONTEXT_TOO_SMALL",
        DG_ERR_CONTEXT_UNALIGNED => c"DG_ERR_CONTEXT_UNALIGNED",
        DG_ERR_NOT_INITIALISED => c"DG_ERR_NOT_INITIALISED",
        DG_ERR_INVALID_ARGUMENT => c"DG_ERR_INVALID_ARGUMENT",
        DG_ERR_BUFFER_TOO_SMALL => c"DG_ERR_BUFFER_TOO_SMALL",
        DG_ERR_NOT_ENABLED => c"DG_ERR_NOT_ENABLED",
        DG_ERR_NO_SEQUENCE_STORE => c"DG_ERR_NO_SEQUENCE_STORE",
        DG_ERR_CONTEXT_BUSY => c"DG_ERR_CONTEXT_BUSY",
        DG_ERR_BUFFERS_OVERLAP => c"DG_ERR_BUFFERS_OVERLAP",
        DG_ERR_POINTER_UNALIGNED => c"DG_ERR_POINTER_UNALIGNED",
        DG_ERR_UNKNOWN_SUITE => c"DG_ERR_UNKNOWN_SUITE",
        DG_ERR_SUITE_NOT_ENABLED => c"DG_ERR_SUITE_NOT_ENABLED",
        DG_ERR_BAD_KEY_LENGTH => c"DG_ERR_BAD_KEY_LENGTH",
        DG_ERR_BAD_IV_LENGTH => c"DG_ERR_BAD_IV_LENGTH",
        DG_ERR_EPOCH_ZERO => c"DG_ERR_EPOCH_ZERO",
        DG_ERR_EPOCH_NOT_NEWER => c"DG_ERR_EPOCH_NOT_NEWER",
        DG_ERR_NOT_STAGED => c"DG_ERR_NOT_STAGED",
        DG_ERR_KEY => c"DG_ERR_KEY",
        DG_ERR_MALFORMED => c"DG_ERR_MALFORMED",
        DG_ERR_UNSUPPORTED_CONTENT_TYPE => c"DG_ERR_UNSUPPORTED_CONTENT_TYPE",
        DG_ERR_UNKNOWN_EPOCH => c"DG_ERR_UNKNOWN_EPOCH",
        DG_ERR_UNKNOWN_SENDER => c"DG_ERR_UNKNOWN_SENDER",
        DG_ERR_REPLAY => c"DG_ERR_REPLAY",
        DG_ERR_TOO_OLD => c"DG_ERR_TOO_OLD",
        DG_ERR_AUTHENTICATION_FAILED => c"DG_ERR_AUTHENTICATION_FAILED",
        DG_ERR_OWN_SENDER_ID => c"DG_ERR_OWN_SENDER_ID",
        DG_ERR_NONCE_MISMATCH => c"DG_ERR_NONCE_MISMATCH",
        DG_ERR_RECORD_OVERFLOW => c"DG_ERR_RECORD_OVERFLOW",
        DG_ERR_NOT_JOINED => c"DG_ERR_NOT_JOINED",
        DG_ERR_OPEN => c"DG_ERR_OPEN",
        DG_ERR_NO_CURRENT_EPOCH => c"DG_ERR_NO_CURRENT_EPOCH",
        DG_ERR_NOT_A_SENDER => c"DG_ERR_NOT_A_SENDER",
        DG_ERR_PLAINTEXT_TOO_LARGE => c"DG_ERR_PLAINTEXT_TOO_LARGE",
        DG_ERR_SEQUENCE_STATE_LOST => c"DG_ERR_SEQUENCE_STATE_LOST",
        DG_ERR_SEQUENCE_STORE => c"DG_ERR_SEQUENCE_STORE",
        DG_ERR_SEQUENCE_STALE => c"DG_ERR_SEQUENCE_STALE",
        DG_ERR_SEQUENCE_EXHAUSTED => c"DG_ERR_SEQUENCE_EXHAUSTED",
        DG_ERR_CRYPTO => c"DG_ERR_CRYPTO",
        DG_ERR_SEAL => c"DG_ERR_SEAL",
        DG_ERR_KD_MALFORMED => c"DG_ERR_KD_MALFORMED",
        DG_ERR_KD_AUTHENTICATION => c"DG_ERR_KD_AUTHENTICATION",
        DG_ERR_KD_REPLAYED => c"DG_ERR_KD_REPLAYED",
        DG_ERR_KD_NOT_FOR_US => c"DG_ERR_KD_NOT_FOR_US",
        DG_ERR_KD_REFUSED => c"DG_ERR_KD_REFUSED",
        DG_ERR_KD_BUNDLE => c"DG_ERR_KD_BUNDLE",
        DG_ERR_KD_OTHER => c"DG_ERR_KD_OTHER",
        DG_ERR_RNG => c"DG_ERR_RNG",
    }
}

impl From<KeyError> for dg_error {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::UnknownSuite(_) => DG_ERR_UNKNOWN_SUITE,
            KeyError::SuiteNotEnabled(_) => DG_ERR_SUITE_NOT_ENABLED,
            KeyError::BadKeyLength => DG_ERR_BAD_KEY_LENGTH,
            KeyError::BadIvLength => DG_ERR_BAD_IV_LENGTH,
            KeyError::EpochZero => DG_ERR_EPOCH_ZERO,
            KeyError::EpochNotNewer => DG_ERR_EPOCH_NOT_NEWER,
            KeyError::NotStaged => DG_ERR_NOT_STAGED,
            _ => DG_ERR_KEY,
        }
    }
}

impl From<OpenError> for dg_error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Malformed(_) => DG_ERR_MALFORMED,
            OpenError::UnsupportedContentType(_) => DG_ERR_UNSUPPORTED_CONTENT_TYPE,
            OpenError::UnknownEpoch(_) => DG_ERR_UNKNOWN_EPOCH,
            OpenError::UnknownSender(_) => DG_ERR_UNKNOWN_SENDER,
            OpenError::Replay => DG_ERR_REPLAY,
            OpenError::TooOld => DG_ERR_TOO_OLD,
            OpenError::AuthenticationFailed => DG_ERR_AUTHENTICATION_FAILED,
            OpenError::OwnSenderId => DG_ERR_OWN_SENDER_ID,
            OpenError::NonceMismatch => DG_ERR_NONCE_MISMATCH,
            OpenError::RecordOverflow => DG_ERR_RECORD_OVERFLOW,
            OpenError::NotJoined => DG_ERR_NOT_JOINED,
            _ => DG_ERR_OPEN,
        }
    }
}

impl From<SealError> for dg_error {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NoCurrentEpoch => DG_ERR_NO_CURRENT_EPOCH,
            SealError::NotASender => DG_ERR_NOT_A_SENDER,
            SealError::BufferTooSmall => DG_ERR_BUFFER_TOO_SMALL,
            SealError::PlaintextTooLarge => DG_ERR_PLAINTEXT_TOO_LARGE,
            SealError::RecordOverflow => DG_ERR_RECORD_OVERFLOW,
            SealError::SequenceStateLost(_) => DG_ERR_SEQUENCE_STATE_LOST,
            SealError::SequenceStore(StoreError::Missing | StoreError::Corrupt) => {
                DG_ERR_SEQUENCE_STATE_LOST
            }
            SealError::SequenceStore(_) => DG_ERR_SEQUENCE_STORE,
            SealError::SequenceStale => DG_ERR_SEQUENCE_STALE,
            SealError::SequenceExhausted => DG_ERR_SEQUENCE_EXHAUSTED,
            SealError::Crypto => DG_ERR_CRYPTO,
            _ => DG_ERR_SEAL,
        }
    }
}

impl From<group_core::keydist::Error> for dg_error {
    fn from(e: group_core::keydist::Error) -> Self {
        use group_core::keydist::Error as E;
        match e {
            E::Truncated
            | E::Malformed
            | E::TrailingBytes
            | E::NonCanonical
            | E::UnsupportedVersion(_)
            | E::UnsupportedMode(_) => DG_ERR_KD_MALFORMED,
            E::ModeMismatch | E::BadSignature | E::AuthenticationFailed => DG_ERR_KD_AUTHENTICATION,
            E::Replayed | E::Stale | E::NonceMismatch => DG_ERR_KD_REPLAYED,
            E::WrongDevice | E::WrongGroup | E::UnexpectedKind => DG_ERR_KD_NOT_FOR_US,
            E::NotJoined | E::UnknownDevice | E::NotAdmitted | E::NotMember | E::UnknownGroup => {
                DG_ERR_KD_REFUSED
            }
            E::BadPublicKey
            | E::UnsupportedSuite(_)
            | E::PolicyUnsupported
            | E::InconsistentBundle
            | E::Key(_)
            | E::Seal(_) => DG_ERR_KD_BUNDLE,
            _ => DG_ERR_KD_OTHER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_and_values_are_unique() {
        for e in ALL {
            let name = std::format!("{e:?}");
            assert_eq!(c_name(e).to_str().unwrap(), name);
            // SAFETY: dg_error_name returns a pointer to a static NUL-terminated string.
            let got = unsafe { core::ffi::CStr::from_ptr(dg_error_name(e as i32)) };
            assert_eq!(got.to_str().unwrap(), name);
        }
        let mut values: std::vec::Vec<i32> = ALL.iter().map(|e| *e as i32).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), ALL.len());
        // SAFETY: as above.
        let unknown = unsafe { core::ffi::CStr::from_ptr(dg_error_name(1000)) };
        assert_eq!(unknown.to_str().unwrap(), "DG_ERR_UNKNOWN");
    }
}
