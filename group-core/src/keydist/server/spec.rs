//! The group spec: a group as the key server runs it (suite, key schedule, the policy sent to
//! members, rekeying and activation), with its defaults from [`crate::policy`].

use serde::{Deserialize, Serialize};

use super::super::message::{BundlePolicy, WireAdmission, WireNonceProfile};
use crate::policy::{
    DEFAULT_ACTIVATION_DELAY_MS, DEFAULT_GRACE_MS, DEFAULT_REKEY_ON_JOIN, DEFAULT_REPLAY_WINDOW,
};
use crate::suite::Suite;
use crate::wire::MAX_FRAGMENT_LEN;

/// Which key schedule a group's members use (wire-format.md §9).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum KeySchedule {
    /// HKDF-SHA256 from a 32-byte epoch secret.
    Native,
    /// wolfSSL-compatible TLS 1.2 PRF from a 64-byte pre-master secret and two randoms.
    WolfSsl,
}

mod suite_serde {
    use super::Suite;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: &Suite, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u16(s.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Suite, D::Error> {
        u16::deserialize(d).map(Suite)
    }
}

/// A group as the key server runs it. Build with [`GroupSpec::new`] and adjust fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupSpec {
    /// Group ID (bound into the native key schedule).
    pub group_id: u32,
    /// Cipher suite.
    #[serde(with = "suite_serde")]
    pub suite: Suite,
    /// Key schedule.
    pub schedule: KeySchedule,
    /// Record-layer policy sent to members.
    pub policy: BundlePolicy,
    /// A joiner gets an epoch nobody has sent in yet (backward secrecy). Default on.
    pub rekey_on_join: bool,
    /// Delay between creating an epoch and making it the one to send in (ms): members get it
    /// staged first, so the switch needs no tight synchronisation.
    pub activation_delay_ms: u32,
    /// Rotate the epoch this often (ms; 0: only on membership changes and reports).
    pub rotation_interval_ms: u64,
    /// Key lifetime members are told (ms after activation; 0: none).
    pub lifetime_ms: u32,
}

impl GroupSpec {
    /// Defaults: native schedule, 64-record window, trust-first admission, strict nonces, no
    /// signatures, 60 s grace, full record size, rekey on join, 2 s activation delay, no
    /// scheduled rotation, no lifetime.
    pub const fn new(group_id: u32, suite: Suite) -> Self {
        Self {
            group_id,
            suite,
            schedule: KeySchedule::Native,
            policy: BundlePolicy {
                replay_window: DEFAULT_REPLAY_WINDOW,
                admission: WireAdmission::TrustFirst,
                nonce_profile: WireNonceProfile::Strict,
                signatures_required: false,
                grace_ms: DEFAULT_GRACE_MS,
                max_fragment_len: MAX_FRAGMENT_LEN as u16,
            },
            rekey_on_join: DEFAULT_REKEY_ON_JOIN,
            activation_delay_ms: DEFAULT_ACTIVATION_DELAY_MS,
            rotation_interval_ms: 0,
            lifetime_ms: 0,
        }
    }

    /// Requires signed records (wire-format.md §8).
    pub const fn with_signatures(mut self) -> Self {
        self.policy.signatures_required = true;
        self
    }

    /// Strict admission: members accept only the senders the bundles list.
    pub const fn with_strict_admission(mut self) -> Self {
        self.policy.admission = WireAdmission::Strict;
        self
    }

    /// Sets the grace period (ms).
    pub const fn with_grace_ms(mut self, ms: u32) -> Self {
        self.policy.grace_ms = ms;
        self
    }

    /// Sets the activation delay (ms).
    pub const fn with_activation_delay_ms(mut self, ms: u32) -> Self {
        self.activation_delay_ms = ms;
        self
    }

    /// Sets the scheduled rotation interval (ms; 0: none).
    pub const fn with_rotation_interval_ms(mut self, ms: u64) -> Self {
        self.rotation_interval_ms = ms;
        self
    }

    /// Sets whether joins get a fresh epoch.
    pub const fn with_rekey_on_join(mut self, on: bool) -> Self {
        self.rekey_on_join = on;
        self
    }

    /// Sets the key schedule.
    pub const fn with_schedule(mut self, s: KeySchedule) -> Self {
        self.schedule = s;
        self
    }
}
