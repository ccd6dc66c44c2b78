//! Receiving: one record in, a delivery or a counted drop out (wire-format.md §4).

#[cfg(feature = "record-signatures")]
use p256::ecdsa::VerifyingKey;

#[cfg(feature = "record-signatures")]
use super::SIGNATURE_LEN;
#[cfg(feature = "record-signatures")]
use super::senders::Plan;
use super::{Group, OpenError, count_usage, default_integrity_limit};
use crate::counters::{Event, RekeyReason};
use crate::record;
#[cfg(feature = "record-signatures")]
use crate::signature;
use crate::time::Instant;
use crate::wire::{self, ContentType, Epoch, RecordHeader, SenderId};

/// A record delivered to the application.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// Epoch of the record.
    pub epoch: Epoch,
    /// Authenticated (group-authenticated) sender ID.
    pub sender_id: SenderId,
    /// Sequence number.
    pub seq: u64,
    /// Content type (always application data).
    pub content_type: ContentType,
    /// The decrypted payload, in the caller's buffer.
    pub plaintext: &'a mut [u8],
}

impl<const SENDERS: usize, const WORDS: usize> Group<SENDERS, WORDS> {
    /// Opens exactly one record in place (use [`open_datagram`](Self::open_datagram) for a
    /// datagram, which may hold several). On success the plaintext is delivered; on failure the
    /// record is counted by reason, the would-be plaintext is wiped and no state changes.
    pub fn open<'a>(
        &mut self,
        now: Instant,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.open_framed(now, RecordHeader::parse(record), record)
    }

    /// [`open`](Self::open) of a record whose header was already parsed from it (`header` is
    /// what [`RecordHeader::parse`] returned for `record`), so that walking a datagram parses
    /// each header once.
    pub(crate) fn open_framed<'a>(
        &mut self,
        now: Instant,
        header: Result<RecordHeader, wire::Error>,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.handle_timeout(now);
        let opened = header
            .map_err(OpenError::from)
            .and_then(|header| self.open_inner(now, header, record));
        match opened {
            Ok((header, plaintext)) => {
                self.counters.accepted = self.counters.accepted.saturating_add(1);
                Ok(Delivery {
                    epoch: header.epoch,
                    sender_id: header.sender_id,
                    seq: header.seq,
                    content_type: header.content_type,
                    plaintext,
                })
            }
            Err(e) => {
                self.counters.count_drop(&e);
                crate::log::record_dropped(&e);
                Err(e)
            }
        }
    }

    fn open_inner<'a>(
        &mut self,
        now: Instant,
        header: RecordHeader,
        record: &'a mut [u8],
    ) -> Result<(RecordHeader, &'a mut [u8]), OpenError> {
        if usize::from(header.length) > self.config.max_fragment_len {
            return Err(OpenError::Malformed(wire::Error::LengthTooLarge));
        }
        if record.len() != header.record_len() {
            return Err(OpenError::Malformed(wire::Error::TrailingBytes));
        }
        if header.content_type != ContentType::APPLICATION_DATA {
            return Err(OpenError::UnsupportedContentType(header.content_type));
        }
        let (epoch, sid, seq) = (header.epoch, header.sender_id, header.seq);
        let profile = self.config.nonce_profile;
        let own = self.config.own_sender_id == Some(sid);
        let trailer = self.trailer_len();
        let parsed = {
            let Some((_, keys)) = self.epochs.get_mut(epoch, now) else {
                return Err(OpenError::UnknownEpoch(epoch));
            };
            record::parse_fragment(keys.cipher(), header, record, profile, trailer)?
        };
        let plan = if own {
            None
        } else {
            Some(self.plan(sid, epoch, seq, now)?)
        };
        #[cfg(feature = "record-signatures")]
        if self.config.signatures_required {
            let key = match plan {
                None => self.signing_key.as_ref().map(|k| *k.verifying_key()),
                Some(Plan::Current(i) | Plan::Previous(i) | Plan::NewEpoch(i)) => {
                    self.senders.get(i).and_then(|s| s.key)
                }
                Some(Plan::Create { .. }) => None,
            };
            let key = key.ok_or(OpenError::UnknownSender(sid))?;
            verify_signature(&key, record)?;
        }
        let integrity_limit = self.config.integrity_limit;
        let confidentiality_limit = self.config.confidentiality_limit;
        let Some((_, keys)) = self.epochs.get_mut(epoch, now) else {
            return Err(OpenError::UnknownEpoch(epoch));
        };
        let plaintext = match record::decrypt(keys.cipher(), &parsed, record) {
            Ok(p) => p,
            Err(e) => {
                keys.auth_failures = keys.auth_failures.saturating_add(1);
                let limit = integrity_limit
                    .unwrap_or_else(|| default_integrity_limit(keys.cipher().suite()));
                if crate::epochs::reached(keys.auth_failures, limit) && !keys.integrity_event_raised
                {
                    keys.integrity_event_raised = true;
                    let failures = keys.auth_failures();
                    self.push_event(Event::IntegrityLimitReached { epoch, failures });
                }
                return Err(e);
            }
        };
        let usage_event = plan.is_some() && count_usage(keys, confidentiality_limit);
        let Some(plan) = plan else {
            // Authentic record under our own sid: our own record looped back, or another
            // member holds our sid. A number we have not sent yet can only be the latter.
            plaintext.fill(0);
            let ours = self
                .sending
                .as_ref()
                .is_some_and(|c| c.epoch() == epoch && seq < c.peek());
            if !ours {
                self.push_event(Event::PossibleSenderIdClash { epoch, seq });
            }
            return Err(OpenError::OwnSenderId);
        };
        if usage_event {
            self.push_event(Event::RekeyNeeded {
                epoch,
                reason: RekeyReason::GroupUsage,
            });
        }
        self.commit(plan, sid, epoch, seq);
        Ok((header, plaintext))
    }
}

/// Verifies the signature trailer of `record` (the last 64 bytes) over everything before it.
/// High-S signatures are refused, so a signature can't be re-encoded into a second valid one.
#[cfg(feature = "record-signatures")]
fn verify_signature(key: &VerifyingKey, record: &[u8]) -> Result<(), OpenError> {
    let split = record
        .len()
        .checked_sub(SIGNATURE_LEN)
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    let (signed, sig) = record
        .split_at_checked(split)
        .ok_or(OpenError::Malformed(wire::Error::FragmentTooShort))?;
    signature::verify(key, &[signed], sig).map_err(|_| OpenError::AuthenticationFailed)
}
