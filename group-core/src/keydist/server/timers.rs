//! Time: staged epochs become current when their activation time comes, scheduled rotations
//! start, and the key server says when it next has work to do.

use rand_core::CryptoRng;

use super::super::error::Error;
use super::super::store::ServerStore;
use super::tables::ServerTables;
use super::txn::Txn;
use super::{KeyServer, RekeyCause, ServerEvent};
use crate::time::Instant;

impl<St: ServerStore, const G: usize, T: ServerTables, const B: usize> KeyServer<St, G, T, B> {
    /// Activates staged epochs whose time came and starts scheduled rotations.
    pub fn handle_timeout<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        // Each round settles one group's timer (an activation, or a rotation that stages an
        // epoch activating later); bounded in case a clock makes a timer come again at once.
        let bound = self
            .tables
            .group_count()
            .saturating_mul(2)
            .saturating_add(1);
        for _ in 0..bound {
            let Some(gid) = self.tables.due_group(now.0) else {
                break;
            };
            let Some(g) = self.tables.group(gid) else {
                break;
            };
            if g.staged.as_ref().is_some_and(|s| s.activate_at <= now.0) {
                let mut txn = Txn::new();
                let g = txn.group_mut(&self.tables, gid)?;
                let staged = g.staged.take();
                let activated = staged.as_ref().map_or(0, |s| s.epoch);
                g.current = staged;
                self.commit(txn)?;
                self.push_event(ServerEvent::EpochActivated {
                    group_id: gid,
                    epoch: activated,
                });
            } else {
                self.rekey_group(gid, now, rng, RekeyCause::Scheduled)?;
            }
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) or [`poll_transmit`](Self::poll_transmit)
    /// next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let queued = (!self.notices.is_empty() || !self.challenges_out.is_empty()).then_some(0);
        [
            queued,
            self.tables.next_group_time(),
            self.tables.next_member_time(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(Instant)
    }
}
