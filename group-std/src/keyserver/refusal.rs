//! Refused device messages: who they claim to be from, and a rate-limited log of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use group_core::keydist::{Error, MessageKind};

/// Who a refused message says it is from, before any check: (device, group, kind). Nothing
/// here is authenticated: a refused message may claim anything.
pub(super) fn claimed_sender(bytes: &[u8]) -> Option<(u32, u32, MessageKind)> {
    use group_core::keydist::Message;
    let m = group_core::keydist::parse(bytes).ok()?.message;
    Some(match m {
        Message::JoinRequest(r) => (
            r.header.device_id.0,
            r.header.group_id,
            MessageKind::JoinRequest,
        ),
        Message::Ack(a) => (a.header.device_id.0, a.header.group_id, MessageKind::Ack),
        Message::Leave(l) => (l.header.device_id.0, l.header.group_id, MessageKind::Leave),
        Message::RekeyNeeded(r) => (
            r.header.device_id.0,
            r.header.group_id,
            MessageKind::RekeyNeeded,
        ),
        Message::KeyBundle(b) => (
            b.header.device_id.0,
            b.header.group_id,
            MessageKind::KeyBundle,
        ),
        Message::Removed(r) => (
            r.header.device_id.0,
            r.header.group_id,
            MessageKind::Removed,
        ),
        Message::JoinChallenge(c) => (c.device_id.0, c.group_id, MessageKind::JoinChallenge),
        Message::SenderKeys(p) => (
            p.header.device_id.0,
            p.header.group_id,
            MessageKind::SenderKeys,
        ),
    })
}

/// Logs one refusal at info: the device ID, group and kind the message claims, its source, the
/// reason, and how many like it were not logged since the last line.
pub(super) fn log_refusal(
    claimed: Option<(u32, u32, MessageKind)>,
    from: SocketAddr,
    e: &Error,
    reason: &str,
    suppressed: u64,
) {
    match claimed {
        Some((device, group, kind)) => tracing::info!(
            device,
            group,
            kind = ?kind,
            %from,
            reason,
            error = %e,
            suppressed,
            "device message refused"
        ),
        None => tracing::info!(
            %from,
            reason,
            error = %e,
            suppressed,
            "message refused (does not parse: not from a device of this version)"
        ),
    }
}

/// Refusals are logged at info, but at most once a minute per claimed device and reason (a
/// misconfigured device retries for ever; a flood must not fill the disk). Bounded: when full,
/// the table starts again.
#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    last: HashMap<(Option<u32>, String), (std::time::Instant, u64)>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(60);
    const MAX: usize = 256;

    /// Whether to log this refusal now; if so, how many were suppressed before it.
    pub(super) fn allow(
        &mut self,
        claimed: Option<(u32, u32, MessageKind)>,
        reason: &str,
    ) -> Option<u64> {
        let now = std::time::Instant::now();
        let key = (claimed.map(|c| c.0), reason.to_owned());
        if let Some((at, suppressed)) = self.last.get_mut(&key) {
            if now.duration_since(*at) < Self::EVERY {
                *suppressed = suppressed.saturating_add(1);
                return None;
            }
            let n = *suppressed;
            *at = now;
            *suppressed = 0;
            return Some(n);
        }
        if self.last.len() >= Self::MAX {
            self.last.clear();
        }
        self.last.insert(key, (now, 0));
        Some(0)
    }
}
