//! What the deletion or disabling of a target does to its deliveries: which of them it cancels
//! at once, and what a cancelled one looks like. Storage cancels a target's deliveries in bulk
//! statements; those are built from [`CANCELLED_WITH_TARGET`] and [`DeliveryState::is_held_at`]
//! here, and write the columns of [`Delivery::cancel_with_target`]'s result, so the rule is
//! stated once. No I/O.

use time::OffsetDateTime;

use crate::{CancelReason, Delivery, DeliveryState, DeliveryStateKind};

/// The kinds of state that a target's going away cancels: every unfinished one. An in-flight
/// delivery is cancelled only once no live lease holds it ([`DeliveryState::is_held_at`]).
pub const CANCELLED_WITH_TARGET: [DeliveryStateKind; 3] = [
    DeliveryStateKind::Pending,
    DeliveryStateKind::InFlight,
    DeliveryStateKind::RetryScheduled,
];

impl DeliveryState {
    /// Whether a lease live at `now` holds the delivery: it is in flight and its lease has not
    /// run out. Storage tells it by the state's kind and its due time, which for an in-flight
    /// delivery is the end of its lease ([`DeliveryState::claimable_at`]).
    pub fn is_held_at(&self, now: OffsetDateTime) -> bool {
        matches!(*self, DeliveryState::InFlight { leased_until, .. } if leased_until > now)
    }
}

impl Delivery {
    /// What the deletion or disabling of its target (`reason`) makes of this delivery at
    /// `now`: cancelled, when it has not finished and no live lease holds it; `None` when it
    /// stays as it is. A final delivery never changes; one in flight is left to its holder,
    /// whose outcome or release comes next, and what that leaves unfinished is cancelled by the
    /// next settling of the target or claim that meets it.
    pub fn cancel_with_target(&self, reason: CancelReason, now: OffsetDateTime) -> Option<Self> {
        let state = self.state();
        if !CANCELLED_WITH_TARGET.contains(&state.kind()) || state.is_held_at(now) {
            return None;
        }
        self.cancel(reason, now).ok()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::{DeliveryId, EventId, WebhookId};

    const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);
    const EARLIER: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);
    const LATER: OffsetDateTime = datetime!(2026-12-01 11:00 UTC);

    fn delivery(state: DeliveryState) -> Delivery {
        Delivery::restore(
            DeliveryId::from_uuid(Uuid::from_u128(1)),
            EventId::from_uuid(Uuid::from_u128(2)),
            WebhookId::from_uuid(Uuid::from_u128(3)),
            EARLIER,
            1,
            1,
            state,
        )
    }

    #[test]
    fn a_target_going_away_cancels_what_is_unfinished_and_not_held() {
        let cancelled = Some(DeliveryState::Cancelled {
            at: NOW,
            reason: CancelReason::TargetDeleted,
        });
        let check = |state: DeliveryState, expected: Option<DeliveryState>| {
            let after = delivery(state).cancel_with_target(CancelReason::TargetDeleted, NOW);
            assert_eq!(after.map(|d| d.state()), expected, "{state:?}");
        };
        // Rows: (state before, state after; None: unchanged).
        check(DeliveryState::Pending { due: LATER }, cancelled);
        check(DeliveryState::Pending { due: EARLIER }, cancelled);
        check(DeliveryState::RetryScheduled { at: LATER }, cancelled);
        // A lease that ran out holds nothing: its holder is gone.
        let expired = DeliveryState::InFlight {
            attempt: 2,
            leased_until: EARLIER,
        };
        check(expired, cancelled);
        let ends_now = DeliveryState::InFlight {
            attempt: 2,
            leased_until: NOW,
        };
        check(ends_now, cancelled);
        let live = DeliveryState::InFlight {
            attempt: 2,
            leased_until: LATER,
        };
        check(live, None);
        check(DeliveryState::Delivered { at: EARLIER }, None);
        check(DeliveryState::Exhausted { at: EARLIER }, None);
        check(
            DeliveryState::Cancelled {
                at: EARLIER,
                reason: CancelReason::TargetGone,
            },
            None,
        );
    }

    #[test]
    fn the_cancellable_kinds_are_exactly_the_unfinished_ones() {
        for kind in DeliveryStateKind::ALL {
            let final_kind = matches!(
                kind,
                DeliveryStateKind::Delivered
                    | DeliveryStateKind::Exhausted
                    | DeliveryStateKind::Cancelled
            );
            assert_eq!(
                CANCELLED_WITH_TARGET.contains(&kind),
                !final_kind,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_cancelled_delivery_keeps_its_counts() {
        let before = delivery(DeliveryState::RetryScheduled { at: LATER });
        let after = before
            .cancel_with_target(CancelReason::TargetDisabled, NOW)
            .unwrap();
        assert_eq!(
            (after.id(), after.attempts(), after.attempts_made()),
            (before.id(), 1, 1)
        );
        assert!(after.state().is_final());
        assert_eq!(after.state().claimable_at(), None);
    }
}
