//! Seal and open one record with an epoch's keys (wire-format.md §1): stateless, in place, over the
//! caller's buffer. Replay and sender state live in [`crate::group`].
//!
//! ```text
//! record   = header[13] || explicit_nonce[8] || ciphertext[n] || tag[8|16]
//! nonce    = write_iv[4] || explicit_nonce[8]            (AES suites, RFC 5288 / 6655)
//!          = write_iv[12] XOR (0^4 || epoch||sid||seq)   (ChaCha20-Poly1305, RFC 7905)
//! aad      = epoch[2] || sid[1] || seq[5] || type[1] || version[2] || n[2]
//! ```

pub use crate::group::errors::{OpenError, SealError};
use crate::suite::{EXPLICIT_NONCE_LEN, EpochCipher};
use crate::wire::{
    self, ContentType, Epoch, HEADER_LEN, MAX_FRAGMENT_LEN, MAX_PLAINTEXT_LEN, ProtocolVersion,
    RecordHeader, SenderId,
};

/// How a receiver treats the explicit nonce of AES records.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum NonceProfile {
    /// Refuse a record whose explicit nonce differs from `epoch || sid || seq` (default): such a
    /// sender may be reusing nonces.
    #[default]
    Strict,
    /// Accept whatever explicit nonce the record carries (the DTLS 1.2 rule; needed for wolfSSL,
    /// whose AES-CCM members count nonces from 0 each). Senders of this crate never do that.
    Compatibility,
}

/// Offset of the plaintext in a record buffer for this cipher: header plus explicit nonce.
pub fn payload_offset(cipher: &EpochCipher) -> usize {
    HEADER_LEN.saturating_add(cipher.params().explicit_nonce_len)
}

/// Record length for a plaintext of `plaintext_len` bytes.
pub fn record_len(cipher: &EpochCipher, plaintext_len: usize) -> usize {
    payload_offset(cipher)
        .saturating_add(plaintext_len)
        .saturating_add(cipher.params().tag_len)
}

fn aad(header: &RecordHeader, plaintext_len: u16) -> [u8; 13] {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = header.sequence_bytes();
    let [v0, v1] = header.version.0.to_be_bytes();
    let [n0, n1] = plaintext_len.to_be_bytes();
    [
        s0,
        s1,
        s2,
        s3,
        s4,
        s5,
        s6,
        s7,
        header.content_type.0,
        v0,
        v1,
        n0,
        n1,
    ]
}

/// Where the parts of a record lie, for one cipher.
struct Layout {
    explicit: core::ops::Range<usize>,
    body: core::ops::Range<usize>,
    tag: core::ops::Range<usize>,
}

fn layout(cipher: &EpochCipher, plaintext_len: usize) -> Layout {
    let p = cipher.params();
    let e_end = HEADER_LEN.saturating_add(p.explicit_nonce_len);
    let b_end = e_end.saturating_add(plaintext_len);
    Layout {
        explicit: HEADER_LEN..e_end,
        body: e_end..b_end,
        tag: b_end..b_end.saturating_add(p.tag_len),
    }
}

/// The identity of a record: `epoch || sender ID || seq`, its DTLS 64-bit sequence number and
/// (for the AES suites) its explicit nonce. A sender never seals two records with the same
/// identity under one key.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct RecordId {
    /// Epoch.
    pub epoch: Epoch,
    /// Sender ID.
    pub sender_id: SenderId,
    /// Sequence number (at most 2^40 − 1).
    pub seq: u64,
}

/// Seals a record in place. `buf[payload_offset(cipher)..][..plaintext_len]` holds the
/// plaintext; the header, explicit nonce (`epoch || sid || seq`) and tag are written around it.
/// Returns the record length. The caller guarantees `(epoch, sid, seq)` was never used before.
/// A plaintext over 2^14 bytes is refused ([`SealError::RecordOverflow`]).
pub fn seal_in_place(
    cipher: &EpochCipher,
    content_type: ContentType,
    epoch: Epoch,
    sender_id: SenderId,
    seq: u64,
    buf: &mut [u8],
    plaintext_len: usize,
) -> Result<usize, SealError> {
    let id = RecordId {
        epoch,
        sender_id,
        seq,
    };
    seal_in_place_with_trailer(cipher, content_type, id, buf, plaintext_len, 0)
}

/// [`seal_in_place`] for a record that will carry a `trailer_len`-byte trailer after the tag
/// (the signature of wire-format.md §8): the header's length covers the trailer, which the caller
/// fills afterwards. Returns the record length without the trailer. A sequence number above
/// 2^40 − 1 is refused ([`SealError::Header`]).
pub fn seal_in_place_with_trailer(
    cipher: &EpochCipher,
    content_type: ContentType,
    id: RecordId,
    buf: &mut [u8],
    plaintext_len: usize,
    trailer_len: usize,
) -> Result<usize, SealError> {
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return Err(SealError::RecordOverflow);
    }
    let total = record_len(cipher, plaintext_len);
    let with_trailer = total.saturating_add(trailer_len);
    let fragment_len = with_trailer.saturating_sub(HEADER_LEN);
    if fragment_len > MAX_FRAGMENT_LEN {
        return Err(SealError::PlaintextTooLarge);
    }
    let length = u16::try_from(fragment_len).map_err(|_| SealError::PlaintextTooLarge)?;
    let n = u16::try_from(plaintext_len).map_err(|_| SealError::PlaintextTooLarge)?;
    if buf.len() < with_trailer {
        return Err(SealError::BufferTooSmall);
    }
    let buf = buf.get_mut(..total).ok_or(SealError::BufferTooSmall)?;
    let header = RecordHeader {
        content_type,
        version: ProtocolVersion::DTLS_1_2,
        epoch: id.epoch,
        sender_id: id.sender_id,
        seq: id.seq,
        length,
    };
    header.emit(buf).map_err(SealError::Header)?;
    let seq_bytes = header.sequence_bytes();
    let l = layout(cipher, plaintext_len);
    if let Some(e) = buf.get_mut(l.explicit) {
        e.copy_from_slice(seq_bytes.get(..e.len()).unwrap_or(&[]));
    }
    let nonce = cipher.nonce(&seq_bytes);
    let aad = aad(&header, n);
    let (body, tag) = buf
        .get_mut(l.body.start..l.tag.end)
        .ok_or(SealError::BufferTooSmall)?
        .split_at_mut_checked(plaintext_len)
        .ok_or(SealError::BufferTooSmall)?;
    cipher
        .seal_in_place(&nonce, &aad, body, tag)
        .map_err(|_| SealError::Crypto)?;
    Ok(total)
}

/// Copies `plaintext` into `out` and seals it there; returns the record length.
pub fn seal(
    cipher: &EpochCipher,
    content_type: ContentType,
    epoch: Epoch,
    sender_id: SenderId,
    seq: u64,
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    let start = payload_offset(cipher);
    let end = start.saturating_add(plaintext.len());
    out.get_mut(start..end)
        .ok_or(SealError::BufferTooSmall)?
        .copy_from_slice(plaintext);
    seal_in_place(
        cipher,
        content_type,
        epoch,
        sender_id,
        seq,
        out,
        plaintext.len(),
    )
}

/// A record's parts after parsing, before decryption.
#[derive(Clone, Copy, Debug)]
pub struct ParsedRecord {
    /// The header.
    pub header: RecordHeader,
    /// Plaintext length (`length - explicit nonce - tag - trailer`).
    pub plaintext_len: usize,
}

/// Parses exactly one record for `cipher`: header, lengths, and, in the strict profile, the
/// explicit nonce. `trailer_len` is the length of a signature after the tag (0 if none). A
/// plaintext over 2^14 bytes is refused here, before any decryption
/// ([`OpenError::RecordOverflow`]).
pub fn parse(
    cipher: &EpochCipher,
    record: &[u8],
    profile: NonceProfile,
    trailer_len: usize,
) -> Result<ParsedRecord, OpenError> {
    let header = RecordHeader::parse(record)?;
    parse_fragment(cipher, header, record, profile, trailer_len)
}

/// [`parse`] for a record whose header the caller already parsed from `record`.
pub fn parse_fragment(
    cipher: &EpochCipher,
    header: RecordHeader,
    record: &[u8],
    profile: NonceProfile,
    trailer_len: usize,
) -> Result<ParsedRecord, OpenError> {
    if record.len() != header.record_len() {
        return Err(OpenError::Malformed(wire::Error::TrailingBytes));
    }
    let p = cipher.params();
    let plaintext_len = usize::from(header.length)
        .checked_sub(p.explicit_nonce_len)
        .and_then(|v| v.checked_sub(p.tag_len))
        .and_then(|v| v.checked_sub(trailer_len))
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return Err(OpenError::RecordOverflow);
    }
    if profile == NonceProfile::Strict && p.explicit_nonce_len == EXPLICIT_NONCE_LEN {
        let l = layout(cipher, plaintext_len);
        if record.get(l.explicit) != Some(header.sequence_bytes().as_slice()) {
            return Err(OpenError::NonceMismatch);
        }
    }
    Ok(ParsedRecord {
        header,
        plaintext_len,
    })
}

/// Authenticates and decrypts a parsed record in place. Returns the plaintext, a sub-slice of
/// `record`. On failure the would-be plaintext bytes are wiped.
pub fn decrypt<'a>(
    cipher: &EpochCipher,
    parsed: &ParsedRecord,
    record: &'a mut [u8],
) -> Result<&'a mut [u8], OpenError> {
    let l = layout(cipher, parsed.plaintext_len);
    let mut explicit = parsed.header.sequence_bytes();
    if cipher.params().explicit_nonce_len == EXPLICIT_NONCE_LEN {
        let carried = record
            .get(l.explicit.clone())
            .and_then(|s| <&[u8; EXPLICIT_NONCE_LEN]>::try_from(s).ok())
            .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
        explicit = *carried;
    }
    let nonce = cipher.nonce(&explicit);
    let n = u16::try_from(parsed.plaintext_len)
        .map_err(|_| OpenError::Malformed(wire::Error::LengthTooLarge))?;
    let aad = aad(&parsed.header, n);
    let region = record
        .get_mut(l.body.start..l.tag.end)
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    let (body, tag) = region
        .split_at_mut_checked(parsed.plaintext_len)
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    cipher
        .open_in_place(&nonce, &aad, body, tag)
        .map_err(|_| OpenError::AuthenticationFailed)?;
    Ok(body)
}

/// Parses, authenticates and decrypts one record with no replay or sender state: the
/// stateless core of [`crate::group::Group::open`]. Only application data is processed.
pub fn open_in_place<'a>(
    cipher: &EpochCipher,
    record: &'a mut [u8],
    profile: NonceProfile,
) -> Result<(RecordHeader, &'a mut [u8]), OpenError> {
    let parsed = parse(cipher, record, profile, 0)?;
    if parsed.header.content_type != ContentType::APPLICATION_DATA {
        return Err(OpenError::UnsupportedContentType(
            parsed.header.content_type,
        ));
    }
    let pt = decrypt(cipher, &parsed, record)?;
    Ok((parsed.header, pt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{EpochSecret, native_keys};
    use crate::suite::Suite;
    use crate::wire::MAX_SEQ;

    #[test]
    fn a_header_that_cannot_be_emitted_is_not_sequence_exhaustion() {
        let keys = native_keys(7, Epoch(1), Suite::AES_128_CCM, &EpochSecret([1; 32])).unwrap();
        let cipher = EpochCipher::new(&keys).unwrap();
        let mut buf = [0u8; 64];
        let id = RecordId {
            epoch: Epoch(1),
            sender_id: SenderId(1),
            seq: MAX_SEQ + 1,
        };
        let ct = ContentType::APPLICATION_DATA;
        assert_eq!(
            seal_in_place_with_trailer(&cipher, ct, id, &mut buf, 1, 0),
            Err(SealError::Header(wire::Error::SeqOutOfRange))
        );
        let id = RecordId { seq: MAX_SEQ, ..id };
        assert!(seal_in_place_with_trailer(&cipher, ct, id, &mut buf, 1, 0).is_ok());
    }
}
