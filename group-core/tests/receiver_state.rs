//! The receiver's per-sender state during a rollout (issue 12): each sender keeps a whole
//! replay window in its current epoch and, once it moved to a newer epoch, its previous epoch
//! as the highest accepted sequence number and the 16 numbers up to it
//! (docs/decisions.md, "Receiver state and member stack"). These tests walk the edges: a grace
//! period in which every one of 32 senders moves, late records of the old epoch inside and
//! outside those 16, replays of everything, and a sender heard only in the previous epoch.

use group_core::counters::Event;
use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const GID: u32 = 0x1200_0012;

fn keys(epoch: u16) -> RecordKeys {
    native_keys(
        GID,
        Epoch(epoch),
        Suite::AES_128_CCM_8,
        &EpochSecret([epoch as u8; 32]),
    )
    .unwrap()
}

struct Sender {
    g: Group<1, 1>,
    store: MemorySequenceStore,
}

impl Sender {
    fn new(sid: u8) -> Self {
        let mut g = Group::new(GroupConfig::new(GID).with_sender_id(SenderId(sid)));
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

    fn seal(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = self
            .g
            .seal(Instant(0), &mut self.store, b"on", &mut buf)
            .unwrap();
        buf[..n].to_vec()
    }
}

fn open<const N: usize, const W: usize>(
    g: &mut Group<N, W>,
    now: u64,
    rec: &[u8],
) -> Result<(u8, u16, u64), OpenError> {
    let mut b = rec.to_vec();
    g.open(Instant(now), &mut b)
        .map(|d| (d.sender_id.0, d.epoch.0, d.seq))
}

/// All 32 senders of a `Group<32, 2>` move from epoch 1 to epoch 2 during the grace period.
/// For each, records 0..=19 of epoch 1 were sent; 2 and 10 are held by the network and arrive
/// after the sender's first epoch-2 record. Record 10 (9 below the highest, 19, unseen) is
/// delivered; record 2 (17 below) is too old. Every record delivered is refused afterwards, in
/// both epochs, by every sender; no state is evicted; when the grace period ends epoch 1 is no
/// longer held.
#[test]
fn grace_period_with_32_senders_keeps_each_ones_previous_epoch() {
    let mut rx: Group<32, 2> = Group::new(GroupConfig::new(GID).with_grace_ms(1_000));
    rx.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    let mut senders: Vec<Sender> = (1..=32).map(Sender::new).collect();
    let mut old: Vec<Vec<Vec<u8>>> = Vec::new();
    for s in senders.iter_mut() {
        let recs: Vec<Vec<u8>> = (0..20).map(|_| s.seal()).collect();
        for (seq, r) in recs.iter().enumerate() {
            if seq != 2 && seq != 10 {
                assert!(open(&mut rx, 0, r).is_ok());
            }
        }
        old.push(recs);
    }
    rx.install_and_activate(Epoch(2), &keys(2), Instant(100))
        .unwrap();
    let mut new = Vec::new();
    for (i, s) in senders.iter_mut().enumerate() {
        s.move_to(2);
        let r = s.seal();
        assert_eq!(open(&mut rx, 200, &r), Ok((i as u8 + 1, 2, 0)));
        new.push(r);
    }
    for (i, recs) in old.iter().enumerate() {
        let sid = i as u8 + 1;
        let info = rx.senders().find(|s| s.sender_id == SenderId(sid)).unwrap();
        assert_eq!(info.previous, Some((Epoch(1), Some(19))), "sender {sid}");
        assert_eq!(info.current, Some((Epoch(2), Some(0))), "sender {sid}");
        // The late records: one inside the 16 below the highest, one outside.
        assert_eq!(open(&mut rx, 300, &recs[10]), Ok((sid, 1, 10)));
        assert_eq!(open(&mut rx, 300, &recs[2]), Err(OpenError::TooOld));
    }
    for (i, recs) in old.iter().enumerate() {
        for (seq, r) in recs.iter().enumerate() {
            let got = open(&mut rx, 400, r);
            let want = if seq >= 4 {
                Err(OpenError::Replay)
            } else {
                Err(OpenError::TooOld)
            };
            assert_eq!(got, want, "sender {} seq {seq}", i + 1);
        }
        assert_eq!(open(&mut rx, 400, &new[i]), Err(OpenError::Replay));
    }
    assert_eq!(rx.counters().accepted, 32 * (18 + 1 + 1));
    let evicted = core::iter::from_fn(|| rx.poll_event())
        .filter(|e| matches!(e, Event::SenderEvicted { .. }))
        .count();
    assert_eq!(evicted, 0);
    // Grace over (activated at 100, 1 000 ms): epoch 1 is gone for everyone.
    assert_eq!(
        open(&mut rx, 1_100, &old[0][19]),
        Err(OpenError::UnknownEpoch(Epoch(1)))
    );
    // Epoch 2 goes on with each sender's whole window.
    for (i, s) in senders.iter_mut().enumerate() {
        let later: Vec<Vec<u8>> = (0..40).map(|_| s.seal()).collect();
        assert_eq!(open(&mut rx, 1_200, &later[39]), Ok((i as u8 + 1, 2, 40)));
        assert_eq!(open(&mut rx, 1_200, &later[0]), Ok((i as u8 + 1, 2, 1)));
        assert_eq!(open(&mut rx, 1_200, &later[0]), Err(OpenError::Replay));
    }
}

/// A sender heard only in the previous epoch (it had not moved when the receiver activated
/// epoch 2) keeps its whole window there until the grace period ends: reordering by 40
/// records is delivered, replays refused; its first record in epoch 2 opens a new window, and
/// then its epoch-1 records within 16 of its highest are still delivered once.
#[test]
fn a_sender_seen_only_in_the_previous_epoch_keeps_its_whole_window() {
    let mut rx: Group<4, 2> = Group::new(GroupConfig::new(GID).with_grace_ms(1_000));
    rx.install_and_activate(Epoch(1), &keys(1), Instant(0))
        .unwrap();
    rx.install_and_activate(Epoch(2), &keys(2), Instant(0))
        .unwrap();
    let mut s = Sender::new(7);
    let recs: Vec<Vec<u8>> = (0..50).map(|_| s.seal()).collect();
    assert_eq!(open(&mut rx, 10, &recs[0]), Ok((7, 1, 0)));
    assert_eq!(open(&mut rx, 10, &recs[45]), Ok((7, 1, 45)));
    assert_eq!(open(&mut rx, 10, &recs[5]), Ok((7, 1, 5)));
    assert_eq!(open(&mut rx, 10, &recs[5]), Err(OpenError::Replay));
    assert_eq!(open(&mut rx, 10, &recs[46]), Ok((7, 1, 46)));
    let info = rx.senders().next().unwrap();
    assert_eq!(info.current, Some((Epoch(1), Some(46))));
    assert_eq!(info.previous, None);
    // It moves: epoch 1 becomes its previous epoch, 16 numbers up to 46 remembered.
    s.move_to(2);
    assert_eq!(open(&mut rx, 20, &s.seal()), Ok((7, 2, 0)));
    assert_eq!(open(&mut rx, 20, &recs[40]), Ok((7, 1, 40)));
    assert_eq!(open(&mut rx, 20, &recs[40]), Err(OpenError::Replay));
    assert_eq!(open(&mut rx, 20, &recs[45]), Err(OpenError::Replay));
    assert_eq!(open(&mut rx, 20, &recs[49]), Ok((7, 1, 49)));
    assert_eq!(open(&mut rx, 20, &recs[33]), Err(OpenError::TooOld));
    assert_eq!(open(&mut rx, 20, &recs[34]), Ok((7, 1, 34)));
    assert_eq!(open(&mut rx, 20, &recs[34]), Err(OpenError::Replay));
    // Offered again, each epoch-1 record is delivered only if never delivered and within the
    // 16 up to the highest (35..=48 but 40, 45, 46); a second offer delivers nothing.
    let delivered: Vec<usize> = (0..50)
        .filter(|&seq| open(&mut rx, 30, &recs[seq]).is_ok())
        .collect();
    let want: Vec<usize> = (35..49).filter(|s| ![40, 45, 46].contains(s)).collect();
    assert_eq!(delivered, want);
    for (seq, r) in recs.iter().enumerate() {
        assert!(open(&mut rx, 30, r).is_err(), "seq {seq} delivered twice");
    }
    assert_eq!(
        open(&mut rx, 1_000, &recs[48]),
        Err(OpenError::UnknownEpoch(Epoch(1)))
    );
}
