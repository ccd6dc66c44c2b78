//! Record header: parse then emit gives the same 13 bytes; emit then parse gives the same
//! header (when the emitted header's length fits the bytes that follow it).
#![no_main]

use group_core::wire::{
    self, ContentType, Epoch, HEADER_LEN, MAX_FRAGMENT_LEN, MAX_SEQ, ProtocolVersion, Record,
    RecordHeader, SenderId,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // 1. parse → emit.
    match RecordHeader::parse(data) {
        Ok(h) => {
            let head: &[u8; HEADER_LEN] = data.first_chunk().expect("parse checked the length");
            assert_eq!(RecordHeader::from_bytes(head), h);
            assert_eq!(&h.to_bytes().expect("a parsed seq fits 40 bits"), head);
            let mut out = [0u8; HEADER_LEN];
            h.emit(&mut out).expect("13 bytes suffice");
            assert_eq!(&out, head);
            assert_eq!(h.version, ProtocolVersion::DTLS_1_2);
            assert!(h.seq <= MAX_SEQ);
            assert!(usize::from(h.length) <= MAX_FRAGMENT_LEN);
            assert!(h.record_len() <= data.len());
            // The zero-copy view and the splitter agree with the header.
            let r = Record::new_checked(data).expect("same checks as parse");
            assert_eq!(*r.header(), h);
            assert_eq!(r.fragment().len(), usize::from(h.length));
            assert_eq!(r.as_bytes().len(), h.record_len());
            let (rec, rest) = wire::split_record(data).expect("same checks as parse");
            assert_eq!(rec.len(), h.record_len());
            assert_eq!(rec.len() + rest.len(), data.len());
            let [e0, e1] = h.epoch.0.to_be_bytes();
            let seq = h.sequence_bytes();
            assert_eq!(seq[..3], [e0, e1, h.sender_id.0]);
            assert_eq!(&seq[3..], &head[6..11]);
        }
        Err(e) => {
            // Typed refusals, each for the reason it names.
            match e {
                wire::Error::Truncated => {
                    let announced = data
                        .first_chunk::<HEADER_LEN>()
                        .map(|h| HEADER_LEN + usize::from(RecordHeader::from_bytes(h).length));
                    assert!(announced.is_none_or(|n| n > data.len()));
                }
                wire::Error::UnsupportedVersion(v) => assert_ne!(v, ProtocolVersion::DTLS_1_2),
                wire::Error::LengthTooLarge => {}
                other => panic!("parse returned {other:?}"),
            }
            assert!(Record::new_checked(data).is_err());
            assert!(wire::split_record(data).is_err());
        }
    }

    // 2. emit → parse: the input's first 16 bytes as a header's fields (type, version, epoch,
    // sid, a 64-bit seq so that out-of-range numbers are tried, length).
    let Some((fields, _)) = data.split_first_chunk::<16>() else {
        return;
    };
    let be =
        |r: core::ops::Range<usize>| fields[r].iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
    let h = RecordHeader {
        content_type: ContentType(fields[0]),
        version: ProtocolVersion(be(1..3) as u16),
        epoch: Epoch(be(3..5) as u16),
        sender_id: SenderId(fields[5]),
        seq: be(6..14),
        length: be(14..16) as u16,
    };
    let mut short = [0u8; HEADER_LEN - 1];
    assert!(h.emit(&mut short).is_err());
    let mut buf = vec![0u8; HEADER_LEN + usize::from(h.length)];
    match h.emit(&mut buf) {
        Ok(()) => {
            assert!(h.seq <= MAX_SEQ);
            match RecordHeader::parse(&buf) {
                Ok(p) => assert_eq!(p, h),
                Err(wire::Error::UnsupportedVersion(v)) => assert_eq!(v, h.version),
                Err(wire::Error::LengthTooLarge) => {
                    assert!(usize::from(h.length) > MAX_FRAGMENT_LEN)
                }
                Err(e) => panic!("emitted header {h:?} does not parse: {e:?}"),
            }
        }
        Err(e) => {
            assert_eq!(e, wire::Error::SeqOutOfRange);
            assert!(h.seq > MAX_SEQ);
        }
    }
});
