//! The invariant of a failover run, checked over the whole run: no epoch, no sender ID within
//! an epoch and no record counter (sequence number under one epoch and sender ID: the nonce)
//! was handed out twice, and no revoked device received a key after its revocation.
//!
//! It is fed what the members saw (bundles installed, records sealed and opened) and what the
//! key servers' state shows (epochs with the device that holds each sender ID), and fails with
//! every violation it found. Its own tests feed it each kind of violation.

use std::collections::BTreeMap;

/// One thing observed during the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A member installed a key bundle: `device` holds `epoch` of `group`, sending as `sid`.
    Bundle {
        device: u32,
        group: u32,
        epoch: u16,
        sid: Option<u8>,
    },
    /// The key server's state lists `device` in `epoch` of `group` with sender ID `sid`.
    ServerMember {
        device: u32,
        group: u32,
        epoch: u16,
        sid: Option<u8>,
    },
    /// A switch sealed a record (its nonce: epoch, sender ID, sequence number).
    Sealed {
        device: u32,
        epoch: u16,
        sid: u8,
        seq: u64,
        payload: Vec<u8>,
    },
    /// A member opened (authenticated) a record.
    Opened {
        device: u32,
        epoch: u16,
        sid: u8,
        seq: u64,
        payload: Vec<u8>,
    },
    /// A member holding `epoch` refused a record of that epoch as forged (its key differs from
    /// the sender's: the epoch was handed out twice with different secrets).
    AuthFailed { device: u32, epoch: u16 },
    /// The active key server's lease (PostgreSQL): its holder, fencing token, and the state's
    /// generation (raised by every commit).
    Lease {
        holder: String,
        token: u64,
        generation: u64,
    },
    /// `device` was revoked from `group` when the highest epoch issued was `last_epoch`.
    Revoked {
        device: u32,
        group: u32,
        last_epoch: u16,
    },
}

/// Everything seen, in order.
#[derive(Default, Debug)]
pub struct Ledger {
    seen: Vec<Seen>,
}

/// What a clean run showed.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    /// Distinct (group, epoch) seen.
    pub epochs: usize,
    /// Distinct (group, epoch, sender ID) assignments seen.
    pub sender_ids: usize,
    /// Distinct record nonces (epoch, sender ID, sequence number) sealed.
    pub nonces: usize,
    /// Records opened by members.
    pub opened: usize,
    /// Revocations checked.
    pub revocations: usize,
}

impl Ledger {
    /// Records one observation.
    pub fn push(&mut self, s: Seen) {
        self.seen.push(s);
    }

    /// Records several.
    pub fn extend(&mut self, s: impl IntoIterator<Item = Seen>) {
        self.seen.extend(s);
    }

    /// Checks the invariant over everything recorded; every violation is listed.
    pub fn check(&self) -> Result<Summary, Vec<String>> {
        let mut bad = Vec::new();
        // (group, epoch, sid) -> device holding it.
        let mut sids: BTreeMap<(u32, u16, u8), u32> = BTreeMap::new();
        // (group, epoch, device) -> sid it holds there.
        let mut held: BTreeMap<(u32, u16, u32), Option<u8>> = BTreeMap::new();
        // (epoch, sid, seq) -> (sealing device, payload).
        let mut nonces: BTreeMap<(u16, u8, u64), (u32, &[u8])> = BTreeMap::new();
        let mut epochs = std::collections::BTreeSet::new();
        let mut opened = 0;
        let mut revoked: Vec<(u32, u32, u16)> = Vec::new();
        let mut leases: BTreeMap<u64, &str> = BTreeMap::new();
        let mut last_token = 0u64;
        let mut last_generation = 0u64;
        for s in &self.seen {
            match s {
                Seen::Bundle {
                    device,
                    group,
                    epoch,
                    sid,
                }
                | Seen::ServerMember {
                    device,
                    group,
                    epoch,
                    sid,
                } => {
                    epochs.insert((*group, *epoch));
                    match held.insert((*group, *epoch, *device), *sid) {
                        Some(prev) if prev != *sid => bad.push(format!(
                            "device {device} holds two sender IDs in group {group} epoch {epoch}: \
                             {prev:?} and {sid:?}"
                        )),
                        _ => {}
                    }
                    if let Some(sid) = sid
                        && let Some(other) = sids.insert((*group, *epoch, *sid), *device)
                        && other != *device
                    {
                        bad.push(format!(
                            "sender ID {sid} of group {group} epoch {epoch} handed out twice: \
                             to devices {other} and {device}"
                        ));
                    }
                }
                Seen::Sealed {
                    device,
                    epoch,
                    sid,
                    seq,
                    payload,
                } => {
                    if let Some((other, p)) =
                        nonces.insert((*epoch, *sid, *seq), (*device, payload.as_slice()))
                    {
                        bad.push(format!(
                            "nonce (epoch {epoch}, sender ID {sid}, seq {seq}) used twice: by \
                             device {other} ({} bytes) and device {device} ({} bytes){}",
                            p.len(),
                            payload.len(),
                            if p == payload.as_slice() {
                                ", same payload"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                Seen::Opened { .. } => opened += 1,
                Seen::Lease {
                    holder,
                    token,
                    generation,
                } => {
                    if *generation < last_generation {
                        bad.push(format!(
                            "state generation went back from {last_generation} to {generation} \
                             ({holder}): a commit was lost or the state restored"
                        ));
                    }
                    last_generation = last_generation.max(*generation);
                    if let Some(other) = leases.insert(*token, holder.as_str())
                        && other != holder.as_str()
                    {
                        bad.push(format!(
                            "fencing token {token} held by two key servers: {other} and {holder}"
                        ));
                    }
                    if *token < last_token {
                        bad.push(format!(
                            "fencing token went back from {last_token} to {token} ({holder})"
                        ));
                    }
                    last_token = last_token.max(*token);
                }
                Seen::AuthFailed { device, epoch } => bad.push(format!(
                    "device {device} holds epoch {epoch} but a record of that epoch failed to \
                     authenticate: two secrets for one epoch"
                )),
                Seen::Revoked {
                    device,
                    group,
                    last_epoch,
                } => revoked.push((*device, *group, *last_epoch)),
            }
        }
        // Every opened record must be one that was sealed, with that payload.
        for s in &self.seen {
            if let Seen::Opened {
                device,
                epoch,
                sid,
                seq,
                payload,
            } = s
            {
                match nonces.get(&(*epoch, *sid, *seq)) {
                    Some((_, p)) if *p == payload.as_slice() => {}
                    Some(_) => bad.push(format!(
                        "device {device} opened (epoch {epoch}, sender ID {sid}, seq {seq}) with \
                         a payload other than the one sealed under that nonce"
                    )),
                    None => bad.push(format!(
                        "device {device} opened (epoch {epoch}, sender ID {sid}, seq {seq}), \
                         which no switch sealed"
                    )),
                }
            }
        }
        for (device, group, last_epoch) in &revoked {
            for s in &self.seen {
                if let Seen::Bundle {
                    device: d,
                    group: g,
                    epoch,
                    ..
                } = s
                    && d == device
                    && g == group
                    && newer(*epoch, *last_epoch)
                {
                    bad.push(format!(
                        "revoked device {device} received epoch {epoch} of group {group}, issued \
                         after its revocation (last epoch before it: {last_epoch})"
                    ));
                }
            }
        }
        if bad.is_empty() {
            Ok(Summary {
                epochs: epochs.len(),
                sender_ids: sids.len(),
                nonces: nonces.len(),
                opened,
                revocations: revoked.len(),
            })
        } else {
            Err(bad)
        }
    }
}

/// `a` is a later epoch than `b` (16-bit epochs; a run never wraps half way round).
fn newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Ledger {
        let mut l = Ledger::default();
        l.extend([
            Seen::Bundle {
                device: 1,
                group: 1,
                epoch: 2,
                sid: Some(1),
            },
            Seen::Bundle {
                device: 2,
                group: 1,
                epoch: 2,
                sid: Some(2),
            },
            Seen::ServerMember {
                device: 1,
                group: 1,
                epoch: 2,
                sid: Some(1),
            },
            Seen::Bundle {
                device: 3,
                group: 1,
                epoch: 2,
                sid: None,
            },
            Seen::Sealed {
                device: 1,
                epoch: 2,
                sid: 1,
                seq: 0,
                payload: b"a".to_vec(),
            },
            Seen::Opened {
                device: 3,
                epoch: 2,
                sid: 1,
                seq: 0,
                payload: b"a".to_vec(),
            },
            Seen::Revoked {
                device: 3,
                group: 1,
                last_epoch: 2,
            },
        ]);
        l
    }

    #[test]
    fn a_clean_run_passes() {
        assert_eq!(
            clean().check(),
            Ok(Summary {
                epochs: 1,
                sender_ids: 2,
                nonces: 1,
                opened: 1,
                revocations: 1,
            })
        );
    }

    fn fails_with(extra: Seen, words: &str) {
        let mut l = clean();
        l.push(extra);
        let bad = l.check().expect_err("the checker must fail");
        assert!(bad.iter().any(|b| b.contains(words)), "{bad:?}");
    }

    #[test]
    fn a_sender_id_handed_out_twice_fails() {
        fails_with(
            Seen::Bundle {
                device: 4,
                group: 1,
                epoch: 2,
                sid: Some(1),
            },
            "sender ID 1 of group 1 epoch 2 handed out twice",
        );
        fails_with(
            Seen::ServerMember {
                device: 2,
                group: 1,
                epoch: 2,
                sid: Some(1),
            },
            "handed out twice",
        );
    }

    #[test]
    fn a_device_with_two_sender_ids_in_one_epoch_fails() {
        fails_with(
            Seen::Bundle {
                device: 1,
                group: 1,
                epoch: 2,
                sid: Some(7),
            },
            "holds two sender IDs",
        );
    }

    #[test]
    fn a_nonce_used_twice_fails() {
        fails_with(
            Seen::Sealed {
                device: 1,
                epoch: 2,
                sid: 1,
                seq: 0,
                payload: b"b".to_vec(),
            },
            "used twice",
        );
        // Even with the same payload: one nonce, one record.
        fails_with(
            Seen::Sealed {
                device: 1,
                epoch: 2,
                sid: 1,
                seq: 0,
                payload: b"a".to_vec(),
            },
            "same payload",
        );
    }

    #[test]
    fn an_epoch_handed_out_twice_fails() {
        fails_with(
            Seen::AuthFailed {
                device: 2,
                epoch: 2,
            },
            "two secrets",
        );
        fails_with(
            Seen::Opened {
                device: 2,
                epoch: 2,
                sid: 1,
                seq: 0,
                payload: b"other".to_vec(),
            },
            "other than the one sealed",
        );
    }

    #[test]
    fn a_fencing_token_held_twice_or_going_back_fails() {
        let lease = |holder: &str, token| Seen::Lease {
            holder: holder.into(),
            token,
            generation: token * 10,
        };
        let mut l = clean();
        l.extend([lease("ks0", 1), lease("ks0", 1), lease("ks1", 2)]);
        assert!(l.check().is_ok());
        l.push(lease("ks0", 1));
        let bad = l.check().expect_err("the checker must fail");
        assert!(
            bad.iter().any(|b| b.contains("went back from 2 to 1")),
            "{bad:?}"
        );
        let mut l = clean();
        l.extend([lease("ks0", 3), lease("ks1", 3)]);
        let bad = l.check().expect_err("the checker must fail");
        assert!(
            bad.iter().any(|b| b.contains("held by two key servers")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_state_generation_going_back_fails() {
        let mut l = clean();
        l.extend([
            Seen::Lease {
                holder: "ks0".into(),
                token: 1,
                generation: 40,
            },
            Seen::Lease {
                holder: "ks1".into(),
                token: 2,
                generation: 39,
            },
        ]);
        let bad = l.check().expect_err("the checker must fail");
        assert!(
            bad.iter().any(|b| b.contains("generation went back")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_key_to_a_revoked_device_fails() {
        fails_with(
            Seen::Bundle {
                device: 3,
                group: 1,
                epoch: 3,
                sid: None,
            },
            "revoked device 3 received epoch 3",
        );
        // The epoch it held before its revocation is not a violation.
        let mut l = clean();
        l.push(Seen::Bundle {
            device: 3,
            group: 1,
            epoch: 1,
            sid: None,
        });
        assert!(l.check().is_ok());
    }
}
