//! Log lines for firmware (feature `defmt`): every dropped record with its reason, every event
//! the group hands out, and every epoch installed or made current.
//!
//! The lines are emitted only on bare metal (`target_os = "none"`), where a firmware links a
//! defmt global logger; on a host the feature gives `defmt::Format` for the types and these
//! functions compile to nothing, so host builds and tests with every feature need no logger.
//! Nothing logged is secret: reasons, epochs, sender IDs, sequence numbers and counts.

use crate::counters::Event;
use crate::group::errors::OpenError;
use crate::wire::Epoch;

/// A record was dropped (and counted in [`Counters`](crate::counters::Counters)).
#[inline(always)]
pub(crate) fn record_dropped(e: &OpenError) {
    #[cfg(all(feature = "defmt", target_os = "none"))]
    defmt::debug!("record dropped: {}", e);
    let _ = e;
}

/// The group queued an event for the application.
#[inline(always)]
pub(crate) fn event(e: &Event) {
    #[cfg(all(feature = "defmt", target_os = "none"))]
    defmt::info!("group event: {}", e);
    let _ = e;
}

/// An epoch's keys were installed (staged: receivable, not yet sent in).
#[inline(always)]
pub(crate) fn epoch_installed(epoch: Epoch) {
    #[cfg(all(feature = "defmt", target_os = "none"))]
    defmt::info!("epoch {} installed", epoch.0);
    let _ = epoch;
}

/// An epoch became current (this node sends in it).
#[inline(always)]
pub(crate) fn epoch_activated(epoch: Epoch) {
    #[cfg(all(feature = "defmt", target_os = "none"))]
    defmt::info!("epoch {} current", epoch.0);
    let _ = epoch;
}

#[cfg(all(
    test,
    feature = "defmt",
    feature = "keydist-member",
    feature = "keydist-server"
))]
mod tests {
    use crate::counters::{Counters, Event, RekeyReason};
    use crate::group::errors::{OpenError, SealError};
    use crate::keydist::{Error, MemberEvent, MemberState, ServerEvent};
    use crate::sequence::{SequenceError, StoreError};
    use crate::suite::{KeyError, Suite};
    use crate::wire::{Epoch, SenderId};

    fn is_format<T: defmt::Format>() {}

    /// The types a firmware logs: errors, events, counters and the identifiers in them. (A
    /// derive removed from one of them fails this test's build.)
    #[test]
    fn errors_events_and_counters_are_defmt_format() {
        is_format::<OpenError>();
        is_format::<SealError>();
        is_format::<KeyError>();
        is_format::<StoreError>();
        is_format::<SequenceError>();
        is_format::<Error>();
        is_format::<Event>();
        is_format::<RekeyReason>();
        is_format::<MemberEvent>();
        is_format::<MemberState>();
        is_format::<ServerEvent>(); // and the RekeyCause in it
        is_format::<Counters>();
        is_format::<Epoch>();
        is_format::<SenderId>();
        is_format::<Suite>();
    }
}
