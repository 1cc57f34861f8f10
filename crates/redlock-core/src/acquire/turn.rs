//! A queued call's wait for its turn in the in-process queue
//! ([`local`](crate::local)).

use futures_util::future::{self, Either};

use super::budget::Budget;
use crate::local::Ticket;
use crate::runtime::Runtime;

/// What a queued call does once its wait ends.
pub(super) enum Turn {
    /// Attempt now.
    Attempt,
    /// The call ahead got the lock: wait for its release as the head.
    AfterRelease,
    /// The deadline passed while queued.
    Deadline,
}

/// Waits until the call reaches the head of its queue. Every retry delay
/// that passes meanwhile counts as an attempt (the head is trying for
/// everyone); when only the last allowed attempt is left, the call makes
/// it itself.
pub(super) async fn wait(ticket: &Ticket, budget: &mut Budget<'_>, runtime: &dyn Runtime) -> Turn {
    loop {
        if ticket.is_head() {
            return if ticket.take_go() {
                Turn::Attempt
            } else {
                Turn::AfterRelease
            };
        }
        if !budget.may_wait_queued() {
            return Turn::Attempt;
        }
        let (delay, last_wait) = budget.next_wait();
        let turned = matches!(
            future::select(runtime.sleep(delay), ticket.turn()).await,
            Either::Right(_)
        );
        if turned {
            continue;
        }
        if last_wait {
            return Turn::Deadline;
        }
        budget.spend_queued_delay();
    }
}
