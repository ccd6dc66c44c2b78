//! Regression tests for the record-layer findings of the issue-10 hardening review (findings 5,
//! 6 and 8 of `docs/threat-model.md`, "Hardening review of 5b5fb1a"). One test per finding,
//! named after the property it checks; each failed on 5b5fb1a.

use group_core::counters::Event;
use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const GID: u32 = 0x0a0b_0c0d;

fn keys_for(suite: Suite, epoch: u16) -> RecordKeys {
    native_keys(GID, Epoch(epoch), suite, &EpochSecret([epoch as u8; 32])).unwrap()
}

fn keys(epoch: u16) -> RecordKeys {
    keys_for(Suite::AES_128_CCM, epoch)
}

/// A sender with its own store, sending in epoch 1.
struct Sender {
    g: Group,
    store: MemorySequenceStore,
}

impl Sender {
    fn new(sid: u8) -> Self {
        let mut g: Group = Group::new(GroupConfig::new(GID).with_sender_id(SenderId(sid)));
        g.install_and_activate(Epoch(1), &keys(1), Instant(0))
            .unwrap();
        Self {
            g,
            store: MemorySequenceStore::commissioned(),
        }
    }

    fn move_to(&mut self, epoch: u16) {
        self.g
            .install_and_activate(Epoch(epoch), &keys(epoch), Instant(0))
            .unwrap();
    }

    fn seal(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = self
            .g
            .seal(Instant(0), &mut self.store, msg, &mut buf)
            .unwrap();
        buf[..n].to_vec()
    }
}

fn open<const N: usize, const W: usize>(
    g: &mut Group<N, W>,
    rec: &[u8],
) -> Result<(u8, u64), OpenError> {
    let mut b = rec.to_vec();
    g.open(Instant(0), &mut b).map(|d| (d.sender_id.0, d.seq))
}

fn events<const N: usize, const W: usize>(g: &mut Group<N, W>) -> Vec<Event> {
    core::iter::from_fn(|| g.poll_event()).collect()
}

/// Finding 5: a sender evicted from a full table in epoch E stays refused in E (and in every
/// epoch held when it was evicted) even when the key server lists it again, through
/// `add_sender` or `set_sender_key`: re-listing made a fresh state whose empty window took a
/// record accepted before the eviction as new, so it was delivered twice. It is admitted again
/// in a newer epoch, and the block outlives the epoch change while the old epoch is in grace.
#[test]
fn evicted_sender_stays_refused_in_its_epochs_whoever_relists_it() {
    for relist_with_key in [false, true] {
        let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
        l.install_and_activate(Epoch(1), &keys(1), Instant(0))
            .unwrap();
        let (mut a, mut b, mut c) = (Sender::new(1), Sender::new(2), Sender::new(3));
        let a1 = a.seal(b"a1");
        assert_eq!(open(&mut l, &a1), Ok((1, 0)));
        assert_eq!(open(&mut l, &b.seal(b"b1")), Ok((2, 0)));
        // Sender 3 fills the table: sender 1 (least recently active) is evicted.
        assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
        assert_eq!(
            events(&mut l),
            [Event::SenderEvicted {
                sender_id: SenderId(1)
            }]
        );
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1)))
        );

        // The next bundle (epoch 2, staged) lists sender 1 again and not sender 2, as
        // `keydist::Member` applies it: unlisted senders removed, listed ones added.
        l.install_epoch(Epoch(2), &keys(2)).unwrap();
        l.remove_sender(SenderId(2));
        if relist_with_key {
            let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
            l.set_sender_key(SenderId(1), *key.verifying_key()).unwrap();
        } else {
            l.add_sender(SenderId(1)).unwrap();
        }
        // Its epoch-1 record, accepted before the eviction, is not delivered again; nor is
        // anything else of sender 1 in epoch 1.
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1))),
            "relisted with key: {relist_with_key}"
        );
        assert_eq!(
            open(&mut l, &a.seal(b"a2")),
            Err(OpenError::UnknownSender(SenderId(1)))
        );
        // Epoch 2 active: epoch 1 is in its grace period and still refused for sender 1.
        l.activate_epoch(Epoch(2), Instant(0)).unwrap();
        assert_eq!(l.epochs().previous(), Some(Epoch(1)));
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1)))
        );
        // In the newer epoch sender 1 is admitted (its records there are all new here).
        a.move_to(2);
        assert_eq!(open(&mut l, &a.seal(b"a3")), Ok((1, 0)));
        assert_eq!(
            open(&mut l, &a1),
            Err(OpenError::UnknownSender(SenderId(1)))
        );
        assert_eq!(l.counters().accepted, 4);
    }
}

/// Finding 8: the exact sequence of the review. Sender A is evicted and blocked in E1; its first
/// record in a staged E2 makes a new state (which cleared the block); E2 is replaced by E3
/// before activation, so A's state covers only an epoch no longer held; the dead-slot rule gave
/// A's slot to a new sender D without blocking A; a replay of A's E1 record (E1 still current)
/// then made a trust-first state and was delivered a second time. A dead state's sender must
/// stay refused in every epoch in which it may have records.
#[test]
fn dead_slot_reuse_keeps_the_dead_sender_refused_in_every_epoch_it_may_have_records_in() {
    let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let (mut a, mut b, mut c, mut d) = (
        Sender::new(1),
        Sender::new(2),
        Sender::new(3),
        Sender::new(4),
    );
    // E1: A and B fill the table; C evicts A (blocked in E1).
    let a1 = a.seal(b"a1");
    assert_eq!(open(&mut l, &a1), Ok((1, 0)));
    assert_eq!(open(&mut l, &b.seal(b"b1")), Ok((2, 0)));
    assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
    assert_eq!(
        events(&mut l),
        [Event::SenderEvicted {
            sender_id: SenderId(1)
        }]
    );
    assert_eq!(
        open(&mut l, &a1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );

    // E2 staged; A's first record in E2 is accepted (E2 is newer than its block) and makes a
    // state for it (evicting B, the least recently active).
    l.install_epoch(Epoch(2), &keys(2)).unwrap();
    a.move_to(2);
    assert_eq!(open(&mut l, &a.seal(b"a2")), Ok((1, 0)));
    assert_eq!(
        events(&mut l),
        [Event::SenderEvicted {
            sender_id: SenderId(2)
        }]
    );
    // E2 is replaced by E3 before activation: A's state now covers no epoch held.
    l.install_epoch(Epoch(3), &keys(3)).unwrap();
    assert_eq!(l.epochs().staged(), Some(Epoch(3)));
    assert_eq!(l.current_epoch(), Some(Epoch(1)));

    // D's first record (E1) takes A's dead slot: no eviction event, nothing reopened.
    assert_eq!(open(&mut l, &d.seal(b"d1")), Ok((4, 0)));
    assert_eq!(events(&mut l), []);
    let table: Vec<u8> = l.senders().map(|s| s.sender_id.0).collect();
    assert!(!table.contains(&1), "{table:?}");

    // The replay of A's E1 record is refused.
    assert_eq!(
        open(&mut l, &a1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );
    // A record of A in the replaced E2 is in no epoch held.
    assert_eq!(
        open(&mut l, &a.seal(b"a2 again")),
        Err(OpenError::UnknownEpoch(Epoch(2)))
    );
    assert_eq!(l.counters().accepted, 5);
    // In E3 (newer than every epoch A may have records in) A is admitted again.
    a.move_to(3);
    assert_eq!(open(&mut l, &a.seal(b"a3")), Ok((1, 0)));

    // The same hole without any eviction: A's windows moved through two staged epochs (E2, E3)
    // that were replaced in turn, so its E1 window was dropped (its E1 records refused
    // `too_old` while the state lived); once E4 replaces E3 the state is dead and its slot is
    // reused. A must stay refused in E1, the epoch older than its windows that is still held.
    let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let (mut a, mut b, mut c) = (Sender::new(1), Sender::new(2), Sender::new(3));
    let a1 = a.seal(b"a1");
    assert_eq!(open(&mut l, &a1), Ok((1, 0)));
    for e in [2, 3] {
        l.install_epoch(Epoch(e), &keys(e)).unwrap();
        a.move_to(e);
        assert_eq!(open(&mut l, &a.seal(b"a")), Ok((1, 0)));
    }
    assert_eq!(open(&mut l, &a1), Err(OpenError::TooOld));
    l.install_epoch(Epoch(4), &keys(4)).unwrap();
    assert_eq!(l.current_epoch(), Some(Epoch(1)));
    assert_eq!(open(&mut l, &b.seal(b"b1")), Ok((2, 0)));
    assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
    assert_eq!(events(&mut l), []);
    assert_eq!(
        open(&mut l, &a1),
        Err(OpenError::UnknownSender(SenderId(1)))
    );
    assert_eq!(l.counters().accepted, 5);
}

/// Seals a record the way a sender that ignores the 2^14 limit would (header, explicit nonce
/// `epoch || sid || seq`, AEAD over the plaintext, tag), without `group_core::record`, which
/// refuses such plaintexts now.
fn raw_record(suite: Suite, epoch: u16, sid: u8, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    use group_core::suite::EpochCipher;
    use group_core::wire::{ContentType, ProtocolVersion, RecordHeader};
    let cipher = EpochCipher::new(&keys_for(suite, epoch)).unwrap();
    let p = cipher.params();
    let n = plaintext.len();
    let header = RecordHeader {
        content_type: ContentType::APPLICATION_DATA,
        version: ProtocolVersion::DTLS_1_2,
        epoch: Epoch(epoch),
        sender_id: SenderId(sid),
        seq,
        length: u16::try_from(p.explicit_nonce_len + n + p.tag_len).unwrap(),
    };
    let explicit = header.sequence_bytes();
    let mut out = header.to_bytes().unwrap().to_vec();
    out.extend_from_slice(&explicit[..p.explicit_nonce_len]);
    let mut aad = explicit.to_vec();
    aad.push(23);
    aad.extend_from_slice(&[0xfe, 0xfd]);
    aad.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
    let mut body = plaintext.to_vec();
    let mut tag = vec![0u8; p.tag_len];
    cipher
        .seal_in_place(&cipher.nonce(&explicit), &aad, &mut body, &mut tag)
        .unwrap();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

/// Finding 6: a plaintext is at most 2^14 bytes (RFC 6347 §4.1 / RFC 5246 §6.2.1;
/// `record_overflow`). Sealing 2^14 + 1 bytes was accepted, and so was opening such a record.
/// Now both refuse with a typed error and a counter, before any sequence number is used or any
/// decryption is done; exactly 2^14 passes. The configured maximum fragment is a second,
/// independent limit: at exactly it a record seals and opens, one byte over it does not.
#[test]
fn plaintexts_over_2_pow_14_are_refused_on_seal_and_open() {
    use group_core::record::{self, NonceProfile, SealError};
    use group_core::wire::MAX_PLAINTEXT_LEN;
    assert_eq!(MAX_PLAINTEXT_LEN, 16384);
    let suites = [Suite::AES_128_CCM_8, Suite::AES_128_CCM, Suite::AES_128_GCM];
    for suite in suites {
        let mk = |config: GroupConfig| {
            let mut g: Group = Group::new(config);
            g.install_and_activate(Epoch(1), &keys_for(suite, 1), Instant(0))
                .unwrap();
            g
        };
        let mut s = mk(GroupConfig::new(GID).with_sender_id(SenderId(1)));
        let mut l = mk(GroupConfig::new(GID));
        let mut store = MemorySequenceStore::commissioned();
        let mut buf = vec![0u8; 2 * MAX_PLAINTEXT_LEN];
        let max = vec![0x5a; MAX_PLAINTEXT_LEN];
        let over = vec![0x5a; MAX_PLAINTEXT_LEN + 1];
        assert_eq!(s.max_plaintext_len(), Ok(MAX_PLAINTEXT_LEN));

        // Protocol maximum: seals and opens.
        let n = s.seal(Instant(0), &mut store, &max, &mut buf).unwrap();
        let mut rec = buf[..n].to_vec();
        let d = l.open(Instant(0), &mut rec).unwrap();
        assert_eq!(d.plaintext.len(), MAX_PLAINTEXT_LEN, "{suite:?}");

        // One byte over: refused, counted, no sequence number used (seal and seal_in_place).
        let before = s.next_send_seq();
        assert_eq!(
            s.seal(Instant(0), &mut store, &over, &mut buf),
            Err(SealError::RecordOverflow)
        );
        assert_eq!(
            s.seal_in_place(Instant(0), &mut store, &mut buf, MAX_PLAINTEXT_LEN + 1),
            Err(SealError::RecordOverflow)
        );
        assert_eq!(s.next_send_seq(), before);
        assert_eq!(s.counters().seal_record_overflow, 2);
        assert_eq!(s.counters().sealed, 1);
        // The stateless sealer refuses too.
        let cipher = group_core::suite::EpochCipher::new(&keys_for(suite, 1)).unwrap();
        let seal = |pt: &[u8], out: &mut [u8]| {
            record::seal(
                &cipher,
                group_core::wire::ContentType::APPLICATION_DATA,
                Epoch(1),
                SenderId(9),
                7,
                pt,
                out,
            )
        };
        assert_eq!(seal(&over, &mut buf), Err(SealError::RecordOverflow));
        assert!(seal(&max, &mut buf).is_ok());

        // A record with 2^14 + 1 bytes of authentic plaintext (fragment well under
        // 2^14 + 2048): dropped as record_overflow before decryption, nothing delivered, no
        // state made for its sender.
        let mut big = raw_record(suite, 1, 2, 0, &over);
        assert!(big.len() - 13 < (1 << 14) + 2048);
        assert_eq!(
            l.open(Instant(0), &mut big.clone()),
            Err(OpenError::RecordOverflow)
        );
        assert_eq!(
            record::open_in_place(&cipher, &mut big, NonceProfile::Strict).map(|_| ()),
            Err(OpenError::RecordOverflow)
        );
        assert_eq!(l.counters().record_overflow, 1);
        assert_eq!(l.counters().authentication_failed, 0);
        assert_eq!(l.counters().accepted, 1);
        assert!(l.senders().all(|i| i.sender_id != SenderId(2)));
        // The same sender's record at exactly 2^14 (same seq) is then accepted.
        let mut ok = raw_record(suite, 1, 2, 0, &max);
        assert_eq!(
            l.open(Instant(0), &mut ok).map(|d| d.plaintext.len()),
            Ok(MAX_PLAINTEXT_LEN)
        );
        assert!(
            l.counters()
                .drop_reasons()
                .contains(&("record_overflow", 1))
        );

        // Configured maximum fragment (1200): the plaintext that fills it exactly seals and
        // opens; one byte more is PlaintextTooLarge on seal and malformed (over the configured
        // length) on open.
        let mut small = GroupConfig::new(GID).with_sender_id(SenderId(3));
        small.max_fragment_len = 1200;
        let mut s = mk(small);
        let mut small_l = GroupConfig::new(GID);
        small_l.max_fragment_len = 1200;
        let mut l = mk(small_l);
        let mut store = MemorySequenceStore::commissioned();
        let fit = s.max_plaintext_len().unwrap();
        let p = s.payload_offset().unwrap() - 13;
        assert_eq!(fit, 1200 - p - suite.params().unwrap().tag_len);
        let n = s
            .seal(Instant(0), &mut store, &vec![1; fit], &mut buf)
            .unwrap();
        assert_eq!(n, 13 + 1200);
        assert_eq!(
            l.open(Instant(0), &mut buf[..n]).map(|d| d.plaintext.len()),
            Ok(fit)
        );
        assert_eq!(
            s.seal(Instant(0), &mut store, &vec![1; fit + 1], &mut buf),
            Err(SealError::PlaintextTooLarge)
        );
        let mut one_over = raw_record(suite, 1, 4, 0, &vec![1; fit + 1]);
        assert_eq!(
            l.open(Instant(0), &mut one_over),
            Err(OpenError::Malformed(
                group_core::wire::Error::LengthTooLarge
            ))
        );
    }
}

/// Issue 12: the refusal bounds of dropped senders are kept relative to the epoch slots
/// (2 bits per sender ID). They must follow the epochs through every change of the slots: a
/// staged epoch replaced before activation, an activation (next → current → previous), the
/// previous epoch's grace period ending. At each step a dropped sender is refused in exactly
/// the held epochs up to its bound, and admitted in the newer ones.
#[test]
fn blocked_sender_ids_follow_the_epochs_through_staging_activation_and_grace() {
    let mut l: Group<2, 2> = Group::new(GroupConfig::new(GID).with_grace_ms(1_000));
    l.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let (mut a, mut b, mut c) = (Sender::new(1), Sender::new(2), Sender::new(3));
    // E1: A and B fill the table; C evicts A (blocked through E1, the highest epoch).
    let a1 = a.seal(b"a1");
    assert_eq!(open(&mut l, &a1), Ok((1, 0)));
    let b1 = b.seal(b"b1");
    assert_eq!(open(&mut l, &b1), Ok((2, 0)));
    assert_eq!(open(&mut l, &c.seal(b"c1")), Ok((3, 0)));
    let unknown = |sid| Err(OpenError::UnknownSender(SenderId(sid)));
    assert_eq!(open(&mut l, &a1), unknown(1));

    // E2 staged: A is admitted there (newer than its bound), still refused in E1.
    l.install_epoch(Epoch(2), &keys(2)).unwrap();
    let mut a2 = Sender::new(1);
    a2.move_to(2);
    assert_eq!(open(&mut l, &a2.seal(b"a2")), Ok((1, 0)));
    assert_eq!(open(&mut l, &a1), unknown(1));
    // B removed while E2 is staged: refused in E1 and E2 (its bound is E2).
    l.remove_sender(SenderId(2));
    assert_eq!(open(&mut l, &b1), unknown(2));
    let mut b2 = Sender::new(2);
    b2.move_to(2);
    let b2r = b2.seal(b"b2");
    assert_eq!(open(&mut l, &b2r), unknown(2));

    // E3 replaces the staged E2: B's bound (E2) now ends at the current epoch E1; in E3 both
    // are admitted; in E1 both are still refused. (A's first record in E2 evicted B, which
    // blocked it through E2 already.)
    l.install_epoch(Epoch(3), &keys(3)).unwrap();
    assert_eq!(open(&mut l, &b1), unknown(2));
    assert_eq!(open(&mut l, &a1), unknown(1));
    assert_eq!(open(&mut l, &b2r), Err(OpenError::UnknownEpoch(Epoch(2))));
    let (mut a3, mut b3) = (Sender::new(1), Sender::new(2));
    a3.move_to(3);
    b3.move_to(3);
    assert_eq!(open(&mut l, &b3.seal(b"b3")), Ok((2, 0)));
    // Removed again in E3's staging: B is refused through E3 now.
    l.remove_sender(SenderId(2));
    assert_eq!(open(&mut l, &b3.seal(b"b3 again")), unknown(2));
    assert_eq!(open(&mut l, &a3.seal(b"a3")), Ok((1, 0)));

    // E3 active, E1 in its grace period: A is still refused in E1 (previous), admitted in E3;
    // B is refused in both (its bound is E3).
    l.activate_epoch(Epoch(3), Instant(0)).unwrap();
    assert_eq!(l.epochs().previous(), Some(Epoch(1)));
    assert_eq!(open(&mut l, &a1), unknown(1));
    assert_eq!(open(&mut l, &b1), unknown(2));
    assert_eq!(open(&mut l, &a3.seal(b"a3'")), Ok((1, 1)));
    assert_eq!(open(&mut l, &b3.seal(b"b3'")), unknown(2));
    // E4 staged: B is admitted there; the others stay as they were.
    l.install_epoch(Epoch(4), &keys(4)).unwrap();
    let mut b4 = Sender::new(2);
    b4.move_to(4);
    assert_eq!(open(&mut l, &b4.seal(b"b4")), Ok((2, 0)));
    assert_eq!(open(&mut l, &b3.seal(b"b3''")), unknown(2));
    assert_eq!(open(&mut l, &a1), unknown(1));

    // E1's grace period ends; E4 activated: E3 is previous and B still refused there; nobody
    // is refused in E4, and E1 is no longer held.
    l.handle_timeout(Instant(1_000));
    assert_eq!(l.epochs().previous(), None);
    l.activate_epoch(Epoch(4), Instant(1_000)).unwrap();
    assert_eq!(l.epochs().previous(), Some(Epoch(3)));
    assert_eq!(open(&mut l, &b3.seal(b"b3'''")), unknown(2));
    assert_eq!(open(&mut l, &a1), Err(OpenError::UnknownEpoch(Epoch(1))));
    assert_eq!(open(&mut l, &b4.seal(b"b4'")), Ok((2, 1)));
    let mut a4 = Sender::new(1);
    a4.move_to(4);
    assert_eq!(open(&mut l, &a4.seal(b"a4")), Ok((1, 0)));
    // E5: E3 leaves the slots, B's bound with it.
    l.install_and_activate(Epoch(5), &keys(5), Instant(2_000))
        .unwrap();
    assert_eq!(open(&mut l, &b4.seal(b"b4''")), Ok((2, 2)));
}
