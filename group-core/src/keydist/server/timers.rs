//! Time: staged epochs become current when their activation time comes, scheduled rotations
//! start, and the key server says when it next has work to do.

use rand_core::CryptoRng;

use super::super::error::Error;
use super::super::store::ServerStore;
use super::{KeyServer, RekeyCause, ServerEvent};
use crate::time::Instant;

impl<St: ServerStore, const D: usize, const G: usize, const B: usize> KeyServer<St, D, G, B> {
    /// Activates staged epochs whose time came and starts scheduled rotations.
    pub fn handle_timeout<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        for gi in 0..self.state.groups.len() {
            let Some(g) = self.state.groups.get(gi) else {
                continue;
            };
            let gid = g.spec.group_id;
            if g.staged.as_ref().is_some_and(|s| s.activate_at <= now.0) {
                let mut next = self.state.clone();
                let mut activated = 0;
                if let Some(g) = next.groups.get_mut(gi) {
                    let mut staged = g.staged.take();
                    if let Some(s) = staged.as_mut() {
                        activated = s.epoch;
                    }
                    g.current = staged;
                }
                self.commit(next)?;
                self.push_event(ServerEvent::EpochActivated {
                    group_id: gid,
                    epoch: activated,
                });
                continue;
            }
            let interval = g.spec.rotation_interval_ms;
            let has_members = self
                .state
                .devices
                .iter()
                .any(|d| d.memberships.iter().any(|m| m.group_id == gid));
            let due = interval > 0
                && g.staged.is_none()
                && has_members
                && g.current
                    .as_ref()
                    .is_some_and(|c| now.0 >= c.activate_at.saturating_add(interval));
            if due {
                self.rekey_group(gi, now, rng, RekeyCause::Scheduled)?;
            }
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) or [`poll_transmit`](Self::poll_transmit)
    /// next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<u64> = None;
        let mut at = |v: u64| t = Some(t.map_or(v, |c| c.min(v)));
        if !self.notices.is_empty() || !self.challenges_out.is_empty() {
            at(0);
        }
        for g in &self.state.groups {
            if let Some(s) = &g.staged {
                at(s.activate_at);
            } else if g.spec.rotation_interval_ms > 0
                && let Some(c) = &g.current
            {
                at(c.activate_at.saturating_add(g.spec.rotation_interval_ms));
            }
        }
        for d in &self.state.devices {
            for m in &d.memberships {
                let pending = self
                    .state
                    .groups
                    .iter()
                    .find(|g| g.spec.group_id == m.group_id)
                    .is_some_and(|g| g.is_pending(m));
                if pending {
                    at(m.retx.next_at());
                }
            }
        }
        t.map(Instant)
    }
}
