//! Property tests of the record wire format (wire-format.md §1).
//!
//! - Every header with a 40-bit seq encodes to 13 bytes that decode back to it, byte for byte
//!   at the documented offsets; `parse` accepts it exactly when the version is DTLS 1.2 and the
//!   announced fragment fits (in the buffer and in 2^14 + 2048).
//! - `parse` of arbitrary bytes never panics, agrees with an independent oracle on whether the
//!   bytes are a header, and when it accepts, re-emitting gives back the first 13 bytes.
//! - `split_record` / `split_record_mut` / `Record` over concatenated records give every record
//!   back, and stop with an error at trailing garbage.

use group_core::wire::{
    ContentType, Epoch, Error, HEADER_LEN, MAX_FRAGMENT_LEN, MAX_SEQ, ProtocolVersion, Record,
    RecordHeader, SenderId, split_record, split_record_mut,
};
use proptest::prelude::*;

fn header_with(version: impl Strategy<Value = u16>) -> impl Strategy<Value = RecordHeader> {
    (
        any::<u8>(),
        version,
        any::<u16>(),
        any::<u8>(),
        prop_oneof![Just(0u64), Just(MAX_SEQ), 0..=MAX_SEQ],
        any::<u16>(),
    )
        .prop_map(|(t, v, e, sid, seq, length)| RecordHeader {
            content_type: ContentType(t),
            version: ProtocolVersion(v),
            epoch: Epoch(e),
            sender_id: SenderId(sid),
            seq,
            length,
        })
}

/// Any header: versions mostly DTLS 1.2, sometimes anything.
fn header() -> impl Strategy<Value = RecordHeader> {
    header_with(prop_oneof![3 => Just(0xFEFDu16), 1 => any::<u16>()])
}

/// A well-formed header for a fragment of `len` bytes.
fn dtls_header(len: u16) -> impl Strategy<Value = RecordHeader> {
    header_with(Just(0xFEFD)).prop_map(move |mut h| {
        h.length = len;
        h
    })
}

/// A record: well-formed header and a fragment of the announced length.
fn record() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64).prop_flat_map(|frag| {
        dtls_header(frag.len() as u16).prop_map(move |h| {
            let mut r = h.to_bytes().unwrap().to_vec();
            r.extend_from_slice(&frag);
            r
        })
    })
}

/// What `parse` should say about `bytes`, computed independently of the crate.
fn oracle(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let version = u16::from_be_bytes([bytes[1], bytes[2]]);
    if version != 0xFEFD {
        return Err(Error::UnsupportedVersion(ProtocolVersion(version)));
    }
    let length = usize::from(u16::from_be_bytes([bytes[11], bytes[12]]));
    if length > MAX_FRAGMENT_LEN {
        return Err(Error::LengthTooLarge);
    }
    if bytes.len() - HEADER_LEN < length {
        return Err(Error::Truncated);
    }
    Ok(())
}

/// Bytes that often look like a header: arbitrary, or a DTLS 1.2 prefix with a small length.
fn header_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        (
            any::<[u8; 13]>(),
            0u16..24,
            prop::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(|(mut h, len, tail)| {
                h[1] = 0xFE;
                h[2] = 0xFD;
                h[11..13].copy_from_slice(&len.to_be_bytes());
                let mut v = h.to_vec();
                v.extend_from_slice(&tail);
                v
            }),
        (any::<[u8; 13]>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(mut h, tail)| {
            // DTLS 1.2 with a length around the 2^14 + 2048 limit.
            h[1] = 0xFE;
            h[2] = 0xFD;
            let len = (MAX_FRAGMENT_LEN as u16).wrapping_add(u16::from(h[0] % 3)) - 1;
            h[11..13].copy_from_slice(&len.to_be_bytes());
            let mut v = h.to_vec();
            v.extend_from_slice(&tail);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Encoding then decoding gives the header back, with every field at its documented place.
    #[test]
    fn header_round_trips(h in header()) {
        let b = h.to_bytes().unwrap();
        prop_assert_eq!(RecordHeader::from_bytes(&b), h);
        prop_assert_eq!(b[0], h.content_type.0);
        prop_assert_eq!(&b[1..3], &h.version.0.to_be_bytes()[..]);
        prop_assert_eq!(&b[3..5], &h.epoch.0.to_be_bytes()[..]);
        prop_assert_eq!(b[5], h.sender_id.0);
        prop_assert_eq!(&b[6..11], &h.seq.to_be_bytes()[3..]);
        prop_assert_eq!(&b[11..13], &h.length.to_be_bytes()[..]);
        prop_assert_eq!(&h.sequence_bytes()[..], &b[3..11]);
        prop_assert_eq!(h.record_len(), HEADER_LEN + usize::from(h.length));

        // emit writes the same 13 bytes and leaves the rest of the buffer alone.
        let mut out = [0xA5u8; 20];
        h.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..HEADER_LEN], &b[..]);
        prop_assert!(out[HEADER_LEN..].iter().all(|&x| x == 0xA5));
        prop_assert_eq!(h.emit(&mut out[..HEADER_LEN - 1]), Err(Error::BufferTooSmall));

        // parse, given the fragment, accepts exactly the well-formed ones.
        let mut rec = b.to_vec();
        rec.resize(HEADER_LEN + usize::from(h.length), 0);
        let expected = if h.version != ProtocolVersion::DTLS_1_2 {
            Err(Error::UnsupportedVersion(h.version))
        } else if usize::from(h.length) > MAX_FRAGMENT_LEN {
            Err(Error::LengthTooLarge)
        } else {
            Ok(h)
        };
        prop_assert_eq!(RecordHeader::parse(&rec), expected);
        if expected.is_ok() && h.length > 0 {
            // One byte short of the announced fragment.
            prop_assert_eq!(RecordHeader::parse(&rec[..rec.len() - 1]), Err(Error::Truncated));
        }
    }

    /// A seq above 40 bits can't be encoded (it would spill into the sender ID).
    #[test]
    fn seq_above_40_bits_is_refused(h in header(), seq in (MAX_SEQ + 1)..=u64::MAX) {
        let h = RecordHeader { seq, ..h };
        prop_assert_eq!(h.to_bytes(), Err(Error::SeqOutOfRange));
        let mut out = [0u8; 13];
        prop_assert_eq!(h.emit(&mut out), Err(Error::SeqOutOfRange));
        prop_assert_eq!(out, [0u8; 13]);
    }

    /// Arbitrary bytes: no panic, the oracle's verdict, and an exact round trip when accepted.
    #[test]
    fn parse_of_arbitrary_bytes(bytes in header_like_bytes()) {
        let parsed = RecordHeader::parse(&bytes);
        prop_assert_eq!(parsed.map(|_| ()), oracle(&bytes));
        if let Ok(h) = parsed {
            let mut out = [0u8; HEADER_LEN];
            h.emit(&mut out).unwrap();
            prop_assert_eq!(&out[..], &bytes[..HEADER_LEN]);
            let r = Record::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(r.header(), &h);
            prop_assert_eq!(r.fragment(), &bytes[HEADER_LEN..h.record_len()]);
            prop_assert_eq!(r.as_bytes(), &bytes[..h.record_len()]);
        } else {
            prop_assert!(Record::new_checked(&bytes[..]).is_err());
            prop_assert!(split_record(&bytes).is_err());
        }
    }

    /// A datagram of several records splits back into exactly those records; bytes after the
    /// last one that are not a whole record are an error, never a record.
    #[test]
    fn split_gives_the_records_back(
        records in prop::collection::vec(record(), 1..6),
        garbage in prop::collection::vec(any::<u8>(), 0..12),
    ) {
        let mut datagram: Vec<u8> = records.concat();
        datagram.extend_from_slice(&garbage);

        let mut rest = &datagram[..];
        for r in &records {
            let (got, tail) = split_record(rest).unwrap();
            prop_assert_eq!(got, &r[..]);
            let view = Record::new_checked(got).unwrap();
            prop_assert_eq!(view.fragment(), &r[HEADER_LEN..]);
            prop_assert_eq!(view.as_bytes(), &r[..]);
            rest = tail;
        }
        prop_assert_eq!(rest, &garbage[..]);
        match oracle(&garbage) {
            Ok(()) => {
                let (got, _) = split_record(&garbage).unwrap();
                prop_assert_eq!(got.len(), RecordHeader::parse(&garbage).unwrap().record_len());
            }
            Err(e) => prop_assert_eq!(split_record(rest).map(|_| ()), Err(e)),
        }

        // The mutable twin splits identically.
        let mut copy = datagram.clone();
        let mut rest = &mut copy[..];
        for r in &records {
            let (got, tail) = split_record_mut(rest).unwrap();
            prop_assert_eq!(&got[..], &r[..]);
            rest = tail;
        }
        prop_assert_eq!(&rest[..], &garbage[..]);
    }
}
