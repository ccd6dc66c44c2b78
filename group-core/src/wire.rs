//! Record wire format (wire-format.md §1): bytes ↔ structure, no crypto, no state.
//!
//! Two views of a record, in the style of smoltcp:
//! - [`Record`]: a zero-copy view over a caller's buffer. [`Record::new_checked`] validates the
//!   lengths once; after that no accessor can panic.
//! - [`RecordHeader`]: the plain representation of the 13-byte header, with
//!   [`RecordHeader::parse`] and [`RecordHeader::emit`].
//!
//! ```text
//!  0      1      3       5     6             11       13
//!  | type | ver  | epoch | sid | seq (u40)   | length | fragment |
//! ```

use core::fmt;

/// Length of the DTLS 1.2 record header.
pub const HEADER_LEN: usize = 13;
/// Largest fragment DTLS 1.2 allows for a protected record: 2^14 + 2048 (RFC 6347 §4.1, RFC 5246 §6.2.3).
pub const MAX_FRAGMENT_LEN: usize = (1 << 14) + 2048;
/// Largest plaintext a record may carry: 2^14 bytes (RFC 6347 §4.1, RFC 5246 §6.2.1; more is a
/// `record_overflow`). Sealing refuses more and so does opening, before decryption (the
/// plaintext length follows from the length field and the suite), so the largest fragment this
/// crate accepts is 2^14 plus the suite's explicit nonce and tag (and a signature): at most
/// 2^14 + 88, well under [`MAX_FRAGMENT_LEN`].
pub const MAX_PLAINTEXT_LEN: usize = 1 << 14;
/// Largest sequence number the header can carry (40 bits); receivers accept it from other
/// implementations, and this crate's senders stop one below it ([`crate::sequence::LAST_SEQ`]).
pub const MAX_SEQ: u64 = (1 << 40) - 1;

/// Record content type (an open code point: unknown values are carried, not rejected at parse).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentType(pub u8);

impl ContentType {
    /// change_cipher_spec (20).
    pub const CHANGE_CIPHER_SPEC: Self = Self(20);
    /// alert (21).
    pub const ALERT: Self = Self(21);
    /// handshake (22).
    pub const HANDSHAKE: Self = Self(22);
    /// application_data (23): the only type the group layer protects and delivers.
    pub const APPLICATION_DATA: Self = Self(23);
}

impl fmt::Debug for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CHANGE_CIPHER_SPEC => f.write_str("ChangeCipherSpec"),
            Self::ALERT => f.write_str("Alert"),
            Self::HANDSHAKE => f.write_str("Handshake"),
            Self::APPLICATION_DATA => f.write_str("ApplicationData"),
            Self(v) => write!(f, "ContentType({v})"),
        }
    }
}

/// Record protocol version (open code point).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ProtocolVersion(pub u16);

impl ProtocolVersion {
    /// DTLS 1.2, 0xFEFD: the only version this layer accepts.
    pub const DTLS_1_2: Self = Self(0xFEFD);
}

/// Group key generation (DTLS epoch). Epoch 0 is the unprotected epoch and is never accepted.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Epoch(pub u16);

/// Sender ID: unique in the group for the lifetime of a group key (assigned by the key server).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct SenderId(pub u8);

/// Why bytes are not a well-formed record.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// Fewer than 13 bytes, or fewer bytes than the length field announces.
    Truncated,
    /// The version is not DTLS 1.2.
    UnsupportedVersion(ProtocolVersion),
    /// The length field exceeds 2^14 + 2048 or the configured maximum.
    LengthTooLarge,
    /// A sequence number above 2^40 - 1 was given to emit.
    SeqOutOfRange,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Bytes follow the record where exactly one record was expected.
    TrailingBytes,
    /// The fragment is shorter than the suite's explicit nonce, tag and signature.
    FragmentTooShort,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("record truncated"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported record version {:#06x}", v.0),
            Error::LengthTooLarge => f.write_str("record length too large"),
            Error::SeqOutOfRange => f.write_str("sequence number above 2^40-1"),
            Error::BufferTooSmall => f.write_str("buffer too small"),
            Error::TrailingBytes => f.write_str("bytes after the record"),
            Error::FragmentTooShort => f.write_str("fragment shorter than nonce and tag"),
        }
    }
}

impl core::error::Error for Error {}

/// The plain representation of a record header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordHeader {
    /// Content type.
    pub content_type: ContentType,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Epoch.
    pub epoch: Epoch,
    /// Sender ID (the top 8 bits of DTLS's 48-bit sequence number).
    pub sender_id: SenderId,
    /// Per-sender sequence number (the low 40 bits), at most [`MAX_SEQ`].
    pub seq: u64,
    /// Length of the fragment that follows.
    pub length: u16,
}

impl RecordHeader {
    /// Parses a header from the first 13 bytes of `bytes`. Checks the version and that the
    /// announced fragment fits in `bytes` and in [`MAX_FRAGMENT_LEN`].
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (hdr, rest) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(Error::Truncated)?;
        let header = Self::from_bytes(hdr);
        if header.version != ProtocolVersion::DTLS_1_2 {
            return Err(Error::UnsupportedVersion(header.version));
        }
        if usize::from(header.length) > MAX_FRAGMENT_LEN {
            return Err(Error::LengthTooLarge);
        }
        if rest.len() < usize::from(header.length) {
            return Err(Error::Truncated);
        }
        Ok(header)
    }

    /// Decodes the 13 header bytes without any check.
    pub fn from_bytes(hdr: &[u8; HEADER_LEN]) -> Self {
        let [t, v0, v1, e0, e1, sid, s0, s1, s2, s3, s4, l0, l1] = *hdr;
        Self {
            content_type: ContentType(t),
            version: ProtocolVersion(u16::from_be_bytes([v0, v1])),
            epoch: Epoch(u16::from_be_bytes([e0, e1])),
            sender_id: SenderId(sid),
            seq: u64::from_be_bytes([0, 0, 0, s0, s1, s2, s3, s4]),
            length: u16::from_be_bytes([l0, l1]),
        }
    }

    /// Encodes the header; fails if `seq` does not fit in 40 bits.
    pub fn to_bytes(&self) -> Result<[u8; HEADER_LEN], Error> {
        if self.seq > MAX_SEQ {
            return Err(Error::SeqOutOfRange);
        }
        let [t] = [self.content_type.0];
        let [v0, v1] = self.version.0.to_be_bytes();
        let [e0, e1] = self.epoch.0.to_be_bytes();
        let [_, _, _, s0, s1, s2, s3, s4] = self.seq.to_be_bytes();
        let [l0, l1] = self.length.to_be_bytes();
        Ok([
            t,
            v0,
            v1,
            e0,
            e1,
            self.sender_id.0,
            s0,
            s1,
            s2,
            s3,
            s4,
            l0,
            l1,
        ])
    }

    /// Writes the header into the first 13 bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), Error> {
        let bytes = self.to_bytes()?;
        let dst = out
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        *dst = bytes;
        Ok(())
    }

    /// The 8 bytes `epoch || sid || seq`: DTLS's 64-bit record sequence, used in the AAD and as
    /// the explicit nonce a sender writes.
    pub fn sequence_bytes(&self) -> [u8; 8] {
        let [e0, e1] = self.epoch.0.to_be_bytes();
        let [_, _, _, s0, s1, s2, s3, s4] = (self.seq & MAX_SEQ).to_be_bytes();
        [e0, e1, self.sender_id.0, s0, s1, s2, s3, s4]
    }

    /// Total record length: header plus fragment.
    pub fn record_len(&self) -> usize {
        HEADER_LEN.saturating_add(usize::from(self.length))
    }
}

/// A zero-copy view of one record over a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Record<T: AsRef<[u8]>> {
    buffer: T,
    header: RecordHeader,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// Validates the header and lengths. `buffer` may hold more bytes after the record (the next
    /// records of the datagram); [`Record::fragment`] stops at the announced length.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let header = RecordHeader::parse(buffer.as_ref())?;
        Ok(Self { buffer, header })
    }

    /// The parsed header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The fragment: exactly `length` bytes after the header.
    pub fn fragment(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header.record_len())
            .unwrap_or(&[])
    }

    /// The bytes of this record (header and fragment).
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..self.header.record_len())
            .unwrap_or(&[])
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// Splits the first record off a datagram: returns `(record, rest)`, where `record` holds exactly
/// one header and its fragment. A receiver accepts several records in one datagram (wire-format.md §1).
pub fn split_record(datagram: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let header = RecordHeader::parse(datagram)?;
    datagram
        .split_at_checked(header.record_len())
        .ok_or(Error::Truncated)
}

/// Mutable twin of [`split_record`], for in-place decryption of each record of a datagram.
pub fn split_record_mut(datagram: &mut [u8]) -> Result<(&mut [u8], &mut [u8]), Error> {
    let header = RecordHeader::parse(datagram)?;
    datagram
        .split_at_mut_checked(header.record_len())
        .ok_or(Error::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = RecordHeader {
            content_type: ContentType::APPLICATION_DATA,
            version: ProtocolVersion::DTLS_1_2,
            epoch: Epoch(0x0102),
            sender_id: SenderId(0x03),
            seq: 0x04_0506_0708,
            length: 0,
        };
        let b = h.to_bytes().unwrap();
        assert_eq!(b, [23, 0xfe, 0xfd, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
        assert_eq!(RecordHeader::parse(&b).unwrap(), h);
        assert_eq!(h.sequence_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(RecordHeader::parse(&[23, 0xfe]), Err(Error::Truncated));
        let mut b = [23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0xaa];
        assert_eq!(RecordHeader::parse(&b), Err(Error::Truncated));
        b[12] = 1;
        assert!(RecordHeader::parse(&b).is_ok());
        b[1] = 0xfe;
        b[2] = 0xff;
        assert_eq!(
            RecordHeader::parse(&b),
            Err(Error::UnsupportedVersion(ProtocolVersion(0xfeff)))
        );
        let h = RecordHeader {
            content_type: ContentType::APPLICATION_DATA,
            version: ProtocolVersion::DTLS_1_2,
            epoch: Epoch(1),
            sender_id: SenderId(1),
            seq: MAX_SEQ + 1,
            length: 0,
        };
        assert_eq!(h.to_bytes(), Err(Error::SeqOutOfRange));
    }

    #[test]
    fn splits_datagram() {
        let mut d = [0u8; 30];
        let h = RecordHeader {
            content_type: ContentType::APPLICATION_DATA,
            version: ProtocolVersion::DTLS_1_2,
            epoch: Epoch(1),
            sender_id: SenderId(2),
            seq: 3,
            length: 2,
        };
        h.emit(&mut d).unwrap();
        h.emit(&mut d[15..]).unwrap();
        let (a, rest) = split_record(&d[..30]).unwrap();
        assert_eq!(a.len(), 15);
        let (b, rest) = split_record(rest).unwrap();
        assert_eq!(b.len(), 15);
        assert!(rest.is_empty());
    }
}
