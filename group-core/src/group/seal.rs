//! Sending: this node's records, its sequence numbers and its rekey events.

#[cfg(feature = "record-signatures")]
use p256::ecdsa::SigningKey;

use super::{Group, SIGNATURE_LEN, SealError, count_usage};
use crate::counters::{Event, RekeyReason};
use crate::record::{self, RecordId};
use crate::sequence::{SequenceCounter, SequenceStore};
#[cfg(feature = "record-signatures")]
use crate::signature;
use crate::time::Instant;
use crate::wire::{self, ContentType, Epoch, MAX_PLAINTEXT_LEN};

impl<const SENDERS: usize, const WORDS: usize> Group<SENDERS, WORDS> {
    /// Sets this node's record-signing key (needed to send in a group that requires signatures).
    #[cfg(feature = "record-signatures")]
    #[cfg_attr(docsrs, doc(cfg(feature = "record-signatures")))]
    pub fn set_signing_key(&mut self, key: SigningKey) {
        self.signing_key = Some(key);
    }

    fn note_usage(&mut self, epoch: Epoch, now: Instant) {
        let limit = self.config.confidentiality_limit;
        let raise = self
            .epochs
            .get_mut(epoch, now)
            .is_some_and(|(_, keys)| count_usage(keys, limit));
        if raise {
            self.push_event(Event::RekeyNeeded {
                epoch,
                reason: RekeyReason::GroupUsage,
            });
        }
    }

    /// Seals `plaintext` as the next record of this node into `out`; returns its length.
    /// Reserves sequence numbers in `store` ahead of use (wire-format.md §7).
    pub fn seal<S: SequenceStore>(
        &mut self,
        now: Instant,
        store: &mut S,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.check_plaintext_len(plaintext.len())?;
        let offset = self.payload_offset()?;
        let end = offset.saturating_add(plaintext.len());
        out.get_mut(offset..end)
            .ok_or(SealError::BufferTooSmall)?
            .copy_from_slice(plaintext);
        self.seal_in_place(now, store, out, plaintext.len())
    }

    /// Refuses (and counts) a plaintext over 2^14 bytes.
    fn check_plaintext_len(&mut self, len: usize) -> Result<(), SealError> {
        if len > MAX_PLAINTEXT_LEN {
            self.counters.seal_record_overflow =
                self.counters.seal_record_overflow.saturating_add(1);
            return Err(SealError::RecordOverflow);
        }
        Ok(())
    }

    /// The largest plaintext [`seal`](Self::seal) takes in the current epoch: 2^14 bytes
    /// ([`MAX_PLAINTEXT_LEN`]), or less when the configured maximum fragment leaves less room
    /// after the suite's explicit nonce, tag and (in signed groups) signature.
    pub fn max_plaintext_len(&self) -> Result<usize, SealError> {
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        let overhead = record::record_len(current.cipher(), 0)
            .saturating_sub(wire::HEADER_LEN)
            .saturating_add(self.trailer_len());
        Ok(self
            .config
            .max_fragment_len
            .saturating_sub(overhead)
            .min(MAX_PLAINTEXT_LEN))
    }

    /// Where the plaintext goes in a buffer for [`seal_in_place`](Self::seal_in_place).
    pub fn payload_offset(&self) -> Result<usize, SealError> {
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        Ok(record::payload_offset(current.cipher()))
    }

    /// Record length for a plaintext of `len` bytes in the current epoch (with the signature,
    /// if the group requires one).
    pub fn record_len(&self, len: usize) -> Result<usize, SealError> {
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        Ok(record::record_len(current.cipher(), len).saturating_add(self.trailer_len()))
    }

    pub(super) fn trailer_len(&self) -> usize {
        if cfg!(feature = "record-signatures") && self.config.signatures_required {
            SIGNATURE_LEN
        } else {
            0
        }
    }

    /// Seals in place: `buf[payload_offset()..][..plaintext_len]` holds the plaintext. A plaintext
    /// over 2^14 bytes is refused with [`SealError::RecordOverflow`] and counted
    /// ([`Counters::seal_record_overflow`](crate::counters::Counters::seal_record_overflow)); one
    /// that makes the record exceed the configured maximum fragment with
    /// [`SealError::PlaintextTooLarge`]. Neither uses a sequence number.
    pub fn seal_in_place<S: SequenceStore>(
        &mut self,
        now: Instant,
        store: &mut S,
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, SealError> {
        let sid = self.config.own_sender_id.ok_or(SealError::NotASender)?;
        let epoch = self.current_epoch().ok_or(SealError::NoCurrentEpoch)?;
        let trailer = self.trailer_len();
        #[cfg(feature = "record-signatures")]
        if trailer > 0 && self.signing_key.is_none() {
            return Err(SealError::NoSigningKey);
        }
        // Without the feature no epoch can be installed in a group that requires signatures
        // (`install_epoch`); refuse here too rather than send unsigned.
        #[cfg(not(feature = "record-signatures"))]
        if self.config.signatures_required {
            return Err(SealError::NoSigningKey);
        }
        self.check_plaintext_len(plaintext_len)?;
        {
            let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
            let total = record::record_len(current.cipher(), plaintext_len).saturating_add(trailer);
            if total.saturating_sub(wire::HEADER_LEN) > self.config.max_fragment_len {
                return Err(SealError::PlaintextTooLarge);
            }
            if buf.len() < total {
                return Err(SealError::BufferTooSmall);
            }
        }
        let counter = match &mut self.sending {
            Some(c) if c.epoch() == epoch && c.sender_id() == sid => c,
            slot => {
                *slot = None;
                let c =
                    SequenceCounter::start(store, epoch, sid, self.config.sequence_reserve_step)?;
                slot.insert(c)
            }
        };
        let seq = match counter.take(store) {
            Ok(s) => s,
            Err(e) => {
                let e = SealError::from(e);
                if e == SealError::SequenceExhausted && self.exhausted_event_for != Some(epoch) {
                    self.exhausted_event_for = Some(epoch);
                    self.push_event(Event::RekeyNeeded {
                        epoch,
                        reason: RekeyReason::SequenceExhausted,
                    });
                }
                return Err(e);
            }
        };
        if seq >= self.config.sender_rekey_budget && self.budget_event_for != Some(epoch) {
            self.budget_event_for = Some(epoch);
            self.push_event(Event::RekeyNeeded {
                epoch,
                reason: RekeyReason::SenderBudget,
            });
        }
        let current = self.epochs.current().ok_or(SealError::NoCurrentEpoch)?;
        let id = RecordId {
            epoch,
            sender_id: sid,
            seq,
        };
        #[cfg_attr(not(feature = "record-signatures"), allow(unused_mut))]
        let mut len = record::seal_in_place_with_trailer(
            current.cipher(),
            ContentType::APPLICATION_DATA,
            id,
            buf,
            plaintext_len,
            trailer,
        )?;
        #[cfg(feature = "record-signatures")]
        if let Some(key) = self.signing_key.as_ref().filter(|_| trailer > 0) {
            let (signed, rest) = buf
                .split_at_mut_checked(len)
                .ok_or(SealError::BufferTooSmall)?;
            let sig = signature::sign(key, &[signed]).map_err(|_| SealError::Crypto)?;
            rest.get_mut(..SIGNATURE_LEN)
                .ok_or(SealError::BufferTooSmall)?
                .copy_from_slice(&sig);
            len = len.saturating_add(SIGNATURE_LEN);
        }
        self.counters.sealed = self.counters.sealed.saturating_add(1);
        self.note_usage(epoch, now);
        Ok(len)
    }

    /// After this device lost its sequence state, the key server issued the current epoch (or
    /// a new sender ID) for it: start sending at 0 there. Call only in that situation.
    pub fn recover_sending<S: SequenceStore>(&mut self, store: &mut S) -> Result<(), SealError> {
        let sid = self.config.own_sender_id.ok_or(SealError::NotASender)?;
        let epoch = self.current_epoch().ok_or(SealError::NoCurrentEpoch)?;
        self.sending = Some(SequenceCounter::start_recovered(
            store,
            epoch,
            sid,
            self.config.sequence_reserve_step,
        )?);
        Ok(())
    }

    /// The next sequence number this node would send in its current epoch, if it is sending.
    pub fn next_send_seq(&self) -> Option<(Epoch, u64)> {
        self.sending.as_ref().map(|c| (c.epoch(), c.peek()))
    }

    /// This node's sending counter for its current epoch (next number, reservation mark), if
    /// it is sending; for monitoring.
    pub fn send_counter(&self) -> Option<&SequenceCounter> {
        self.sending.as_ref()
    }
}
