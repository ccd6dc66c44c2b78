//! Key bundles at the member: a bundle is checked (freshness, consistency, policy), its secret
//! opened and its record keys derived, all before anything changes; then it is installed into
//! the [`Group`] with its senders, and acknowledged.

use heapless::Vec;

use super::super::error::Error;
use super::super::message::{
    BundlePolicy, CompressedKey, KeyMaterial, WireAdmission, WireNonceProfile,
};
use super::super::view::BundleView;
use super::super::vocabulary::Role;
#[cfg(feature = "record-signatures")]
use super::pending::PendingFields;
use super::{Member, MemberEvent, MemberState, SenderKey, add_listed, sender_key};
use crate::group::{Admission, GroupConfig};
use crate::record::NonceProfile;
use crate::replay::ReplayWindow;
#[cfg(feature = "wolfssl-schedule")]
use crate::schedule::wolfssl_keys;
use crate::schedule::{EpochSecret, native_keys};
use crate::sequence::SequenceStore;
use crate::suite::{RecordKeys, Suite};
use crate::time::Instant;
use crate::wire::{Epoch, MAX_FRAGMENT_LEN, SenderId};

/// 256-bit set of sender IDs.
#[derive(Clone, Copy, Default)]
pub(super) struct SidSet([u32; 8]);

impl SidSet {
    #[cfg(feature = "record-signatures")]
    pub(super) const EMPTY: Self = Self([0; 8]);
    pub(super) fn contains(&self, sid: u8) -> bool {
        let (w, b) = (usize::from(sid / 32), u32::from(sid % 32));
        self.0.get(w).is_some_and(|v| v & (1u32 << b) != 0)
    }
    pub(super) fn insert(&mut self, sid: u8) {
        let (w, b) = (usize::from(sid / 32), u32::from(sid % 32));
        if let Some(v) = self.0.get_mut(w) {
            *v |= 1u32 << b;
        }
    }
    pub(super) fn remove(&mut self, sid: u8) {
        let (w, b) = (usize::from(sid / 32), u32::from(sid % 32));
        if let Some(v) = self.0.get_mut(w) {
            *v &= !(1u32 << b);
        }
    }
}

/// A bundle that passed every check, before its secret is opened.
struct CheckedBundle {
    suite: Suite,
    epoch: Epoch,
    /// It answers the outstanding join request.
    answers_join: bool,
    /// It answers a join that reported a lost sequence store.
    recovering: bool,
    /// Entries whose key follows in `SenderKeys` parts (a signed group's split list).
    #[cfg_attr(not(feature = "record-signatures"), allow(dead_code))]
    missing: usize,
}

/// A bundle ready to install: checked, and its record keys derived.
struct BundlePlan {
    checked: CheckedBundle,
    keys: RecordKeys,
}

/// The record keys of an epoch from its key material.
#[inline(never)] // its own frame (stack, issue 12)
fn derive_keys(
    group_id: u32,
    epoch: Epoch,
    suite: Suite,
    material: &KeyMaterial,
) -> Result<RecordKeys, Error> {
    Ok(match material {
        KeyMaterial::Native { secret } => {
            native_keys(group_id, epoch, suite, &EpochSecret(*secret))?
        }
        #[cfg(feature = "wolfssl-schedule")]
        KeyMaterial::WolfSsl {
            pms,
            client_random,
            server_random,
        } => wolfssl_keys(suite, &pms.0, client_random, server_random)?.keys,
        // Without the TLS 1.2 PRF this build can't derive the epoch's keys: the bundle is
        // refused here, in the plan step, before anything is applied.
        #[cfg(not(feature = "wolfssl-schedule"))]
        KeyMaterial::WolfSsl { .. } => return Err(Error::PolicyUnsupported),
    })
}

impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> Member<S, SENDERS, WORDS> {
    fn group_config(&self, p: &BundlePolicy, sender_id: Option<u8>) -> GroupConfig {
        let mut c = GroupConfig::new(self.config.group_id);
        c.own_sender_id = sender_id.map(SenderId);
        c.admission = match p.admission {
            WireAdmission::TrustFirst => Admission::TrustFirst,
            WireAdmission::Strict => Admission::Strict,
        };
        c.nonce_profile = match p.nonce_profile {
            WireNonceProfile::Strict => NonceProfile::Strict,
            WireNonceProfile::Compatibility => NonceProfile::Compatibility,
        };
        c.grace_ms = u64::from(p.grace_ms);
        c.max_fragment_len = usize::from(p.max_fragment_len);
        c.sequence_reserve_step = self.config.sequence_reserve_step;
        c.sender_rekey_budget = self.config.sender_rekey_budget;
        c.signatures_required = p.signatures_required;
        c
    }

    fn check_policy(&self, p: &BundlePolicy) -> Result<(), Error> {
        if u64::from(p.replay_window) > ReplayWindow::<WORDS>::SIZE
            || usize::from(p.max_fragment_len) > MAX_FRAGMENT_LEN
            || p.max_fragment_len < 64
        {
            return Err(Error::PolicyUnsupported);
        }
        // Without the `record-signatures` feature a signed group is refused here, before
        // anything changes (never joined unsigned).
        if p.signatures_required
            && (!cfg!(feature = "record-signatures") || self.creds.device_key().is_none())
        {
            return Err(Error::PolicyUnsupported);
        }
        Ok(())
    }

    /// A key bundle from the key server (authenticated, addressed to this device, with a
    /// counter above the last one accepted). Refusals change nothing.
    #[inline(never)] // its own frame, not summed into the caller's (stack, issue 12)
    pub(super) fn on_bundle(&mut self, now: Instant, b: &BundleView<'_>) -> Result<(), Error> {
        let plan = self.plan_bundle(b)?;
        // Keys missing only with record signatures (refused by `check_policy` without them).
        #[cfg(feature = "record-signatures")]
        if plan.checked.missing > 0 {
            // The list continues in parts: hold the bundle, install nothing yet.
            let c = &plan.checked;
            let fields = PendingFields {
                counter: b.header.counter,
                epoch: b.epoch,
                echo: b.echo,
                sender_id: b.sender_id,
                policy: b.policy,
                activate_in_ms: b.activate_in_ms,
                lifetime_ms: b.lifetime_ms,
                received_at: now.0,
                answers_join: c.answers_join,
                recovering: c.recovering,
            };
            let r = self.pending.start(fields, plan.keys, b);
            if r.is_err() {
                self.pending.clear();
            }
            return r;
        }
        // A complete bundle supersedes one being completed.
        self.pending.clear();
        self.apply_bundle(now, b, plan)
    }

    /// Checks a bundle: freshness, consistency and policy. Changes nothing.
    #[inline(never)] // its own frame, not summed into the caller's (stack, issue 12)
    fn validate_bundle(&self, b: &BundleView<'_>) -> Result<CheckedBundle, Error> {
        // Freshness: a join response must echo the outstanding request's nonce.
        match self.state {
            MemberState::Joining => {
                let want = self.join.and_then(|j| j.nonce);
                if want.is_none() || b.echo != want {
                    return Err(Error::NonceMismatch);
                }
            }
            MemberState::Joined => {
                let outstanding = self.join.and_then(|j| j.nonce);
                if b.echo.is_some() && b.echo != self.last_join_nonce && b.echo != outstanding {
                    return Err(Error::NonceMismatch);
                }
            }
            _ => return Err(Error::NotJoined),
        }
        // Consistency and policy, all before anything changes.
        let suite = Suite(b.suite);
        if !suite.is_enabled() {
            return Err(Error::UnsupportedSuite(b.suite));
        }
        if (self.config.role == Role::Sender) != b.sender_id.is_some() {
            return Err(Error::InconsistentBundle);
        }
        self.check_policy(&b.policy)?;
        // More listed senders than this member's table holds: fine under trust-first
        // admission without record signatures (the table keeps what fits, the others are
        // admitted by their first authenticated record, evicting the least recently active);
        // under strict admission or with record signatures the table is the list of who may
        // send (with their keys), so the bundle can't be installed.
        if b.senders.len() > SENDERS
            && (b.policy.signatures_required || b.policy.admission == WireAdmission::Strict)
        {
            return Err(Error::CapacityExceeded);
        }
        // Every listed key is checked here, one entry at a time (decoded from the datagram,
        // no list on the stack), and parsed again where it is installed. In a group with
        // record signatures an entry without its key has it in a `SenderKeys` part.
        let mut missing = 0usize;
        for s in b.senders.iter() {
            match (&s.public_key, b.policy.signatures_required) {
                (Some(k), true) => drop(sender_key(&k.0)?),
                (None, false) => {}
                (None, true) => missing = missing.saturating_add(1),
                (Some(_), false) => return Err(Error::InconsistentBundle),
            }
        }
        let answers_join = self
            .join
            .is_some_and(|j| j.nonce.is_some() && j.nonce == b.echo);
        let recovering = answers_join && self.join.is_some_and(|j| j.lost);
        let epoch = Epoch(b.epoch);
        if epoch.0 == 0 {
            // Never held (as `Group::install_epoch` would say; refused before anything changes).
            return Err(Error::Key(crate::suite::KeyError::EpochZero));
        }
        if recovering && self.recovery_floor.is_some_and(|f| epoch <= f) {
            // Not a fresh epoch: restarting at 0 there could reuse a nonce.
            return Err(Error::InconsistentBundle);
        }
        Ok(CheckedBundle {
            suite,
            epoch,
            answers_join,
            recovering,
            missing,
        })
    }

    /// Checks a bundle, opens its secret and derives its record keys. Changes nothing.
    #[inline(never)] // its own frame, not summed into the caller's (stack, issue 12)
    fn plan_bundle(&self, b: &BundleView<'_>) -> Result<BundlePlan, Error> {
        let checked = self.validate_bundle(b)?;
        // The secret is opened in its own frame (the deepest call of a join: ECDH in signed
        // mode), so nothing of this frame but the checked bundle sits above it.
        let material = self.open_material(b)?;
        let keys = derive_keys(
            self.config.group_id,
            checked.epoch,
            checked.suite,
            &material,
        )?;
        drop(material);
        Ok(BundlePlan { checked, keys })
    }

    #[inline(never)] // its own frame (stack, issue 12)
    fn open_material(&self, b: &BundleView<'_>) -> Result<KeyMaterial, Error> {
        self.creds.credential().open_secret(b)
    }

    /// Installs a planned bundle: into the present group if its configuration still fits, else
    /// a new one; then the senders, the bookkeeping, the acknowledgement and the activation.
    #[inline(never)] // its own frame, not summed into the caller's (stack, issue 12)
    fn apply_bundle(
        &mut self,
        now: Instant,
        b: &BundleView<'_>,
        plan: BundlePlan,
    ) -> Result<(), Error> {
        let BundlePlan {
            checked:
                CheckedBundle {
                    epoch,
                    answers_join,
                    recovering,
                    ..
                },
            keys,
        } = plan;
        let config = self.group_config(&b.policy, b.sender_id);
        self.install_group(config, epoch, &keys)?;
        drop(keys);
        let own = b.sender_id;
        self.set_own_signing_key(own, b.policy.signatures_required);
        let listed = b.senders.iter().map(|s| (s.sender_id, s.public_key));
        install_senders(
            &mut self.group,
            &mut self.removed,
            &mut self.deferred,
            own,
            b.stale,
            listed,
        );
        self.finish_bundle(Accepted {
            counter: b.header.counter,
            last_counter: b.header.counter,
            epoch,
            answers_join,
            recovering,
            own,
            lifetime_ms: b.lifetime_ms,
            activate_in_ms: b.activate_in_ms,
            received_at: now.0,
            now,
        });
        Ok(())
    }

    /// Installs the bundle held in `pending` now that every listed key arrived: as
    /// [`apply_bundle`](Self::apply_bundle), from the held fields.
    #[cfg(feature = "record-signatures")]
    #[inline(never)] // its own frame (stack, issue 12)
    pub(super) fn apply_pending(&mut self, now: Instant) -> Result<(), Error> {
        let (Some(f), Some(keys)) = (self.pending.fields, self.pending.keys.take()) else {
            self.pending.clear();
            return Err(Error::Stale);
        };
        // The join it answered must still be the outstanding one (a join started over since
        // has a fresh nonce: this bundle no longer answers it).
        if f.answers_join && self.join.and_then(|j| j.nonce) != f.echo {
            self.pending.clear();
            return Err(Error::NonceMismatch);
        }
        let last_counter = self.pending.last_counter;
        let config = self.group_config(&f.policy, f.sender_id);
        let epoch = Epoch(f.epoch);
        let installed = self.install_group(config, epoch, &keys);
        drop(keys);
        if let Err(e) = installed {
            self.pending.clear();
            return Err(e);
        }
        self.set_own_signing_key(f.sender_id, f.policy.signatures_required);
        install_senders(
            &mut self.group,
            &mut self.removed,
            &mut self.deferred,
            f.sender_id,
            &self.pending.stale,
            self.pending.entries(),
        );
        self.pending.clear();
        self.finish_bundle(Accepted {
            counter: f.counter,
            last_counter,
            epoch,
            answers_join: f.answers_join,
            recovering: f.recovering,
            own: f.sender_id,
            lifetime_ms: f.lifetime_ms,
            activate_in_ms: f.activate_in_ms,
            received_at: f.received_at,
            now,
        });
        Ok(())
    }

    /// Installs the epoch into the present group if its configuration still fits, else into
    /// a new one.
    fn install_group(
        &mut self,
        config: GroupConfig,
        epoch: Epoch,
        keys: &RecordKeys,
    ) -> Result<(), Error> {
        if self.keyed && *self.group.config() == config {
            self.group.install_epoch(epoch, keys)?;
        } else {
            // First bundle, or the sender ID or policy changed: a new record layer, reset in
            // place (a `Group` by value would cost its size on this stack twice over). The
            // installation into the emptied group can't fail: the epoch is not 0 (checked),
            // the group holds no epoch to be newer than, and the keys were derived for the
            // suite; should it fail all the same, the member is left without keys, not with
            // a half-built group.
            self.group.reset(config);
            self.removed = SidSet::default();
            self.deferred.clear();
            if let Err(e) = self.group.install_epoch(epoch, keys) {
                self.keyed = false;
                return Err(e.into());
            }
            self.keyed = true;
        }
        Ok(())
    }

    /// In a signed group, this device's key becomes its record-signing key.
    fn set_own_signing_key(&mut self, own: Option<u8>, signatures_required: bool) {
        #[cfg(feature = "record-signatures")]
        if let (Some(_), Some(device_key)) = (own, self.creds.device_key())
            && signatures_required
        {
            self.group.set_signing_key(device_key.clone());
        }
        #[cfg(not(feature = "record-signatures"))]
        let _ = (own, signatures_required);
    }

    /// Bookkeeping of an installed bundle: counters, the join, reports, the acknowledgement,
    /// the event and the activation.
    fn finish_bundle(&mut self, a: Accepted) {
        self.last_counter = a.last_counter;
        if a.answers_join {
            self.last_join_nonce = self.join.and_then(|j| j.nonce);
            self.join = None;
            if a.recovering {
                self.recover_at = Some(a.epoch);
            }
        }
        if self.report.is_some_and(|r| a.epoch > r.epoch) {
            self.report = None;
        }
        self.state = MemberState::Joined;
        self.lifetime_ms = a.lifetime_ms;
        self.ack = Some((a.counter, a.epoch.0));
        self.push_event(MemberEvent::BundleInstalled {
            epoch: a.epoch,
            sender_id: a.own.map(SenderId),
            activate_in_ms: a.activate_in_ms,
        });
        let at = a.received_at.saturating_add(u64::from(a.activate_in_ms));
        self.activation = Some((a.epoch, at));
        self.handle_timeout(a.now);
    }
}

/// What [`Member::finish_bundle`] records of an installed bundle.
struct Accepted {
    /// The bundle's counter (acknowledged).
    counter: u64,
    /// The highest counter accepted with it (its parts').
    last_counter: u64,
    epoch: Epoch,
    answers_join: bool,
    recovering: bool,
    own: Option<u8>,
    lifetime_ms: u32,
    activate_in_ms: u32,
    received_at: u64,
    now: Instant,
}

/// Senders of an installed bundle: the stale and the unlisted are dropped, the listed added
/// (`listed` is walked once per known sender and once to add; no copy of it on the stack).
#[inline(never)] // its own frame (stack, issue 12)
fn install_senders<const SENDERS: usize, const WORDS: usize>(
    group: &mut crate::group::Group<SENDERS, WORDS>,
    removed: &mut SidSet,
    deferred: &mut Vec<(SenderId, Option<SenderKey>), SENDERS>,
    own: Option<u8>,
    stale: &[u8],
    listed: impl Iterator<Item = (u8, Option<CompressedKey>)> + Clone,
) {
    let mut known: Vec<SenderId, SENDERS> = Vec::new();
    for s in group.senders() {
        let _ = known.push(s.sender_id);
    }
    for sid in stale.iter().map(|s| SenderId(*s)).chain(known) {
        if Some(sid.0) != own && !listed.clone().any(|(l, _)| l == sid.0) {
            group.remove_sender(sid);
            removed.insert(sid.0);
        }
    }
    deferred.clear();
    for (id, public_key) in listed {
        let sid = SenderId(id);
        if Some(sid.0) == own {
            continue;
        }
        // Parsed and checked before: can't fail here (skipped if it did).
        let key = match public_key.map(|k| sender_key(&k.0)).transpose() {
            Ok(key) => key,
            Err(_) => continue,
        };
        if removed.contains(sid.0) {
            // Re-listed after removal: only once the epochs it used before are gone.
            let _ = deferred.push((sid, key));
            continue;
        }
        // Fails only with a full table, under trust-first admission without signatures
        // (checked): that sender is admitted by its first record instead.
        let _ = add_listed(group, sid, key);
    }
}
