//! Returning customers to their last agent (issue #17). A customer whose last conversation
//! (within `routing.last_agent_days`) was served by an agent who is ready now is offered to
//! that agent first ([`Dispatcher::offer`](crate::dispatch::Dispatcher::offer): one atomic
//! step on either backend, never over capacity). If the agent is ready but full, the
//! customer waits up to `routing.prefer_last_agent_s` for a slot (told `queued`), asked again
//! every second, off the customer's connection task; then the hand-off goes to the queue as
//! for anyone.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::NodeEvent;
use super::Relay;
use crate::dispatch::{Enqueued, Offered, Ticket};
use crate::protocol::ServerFrame;
use crate::session::{Session, SessionState};
use crate::telemetry::metric;

/// How often a waiting customer's last agent is asked again.
const RETRY: Duration = Duration::from_secs(1);

/// What became of the offer.
pub(super) enum Preferred {
    /// The chat is settled (assigned, known to the dispatcher, or waiting for the agent in a
    /// task of its own): nothing more to do here.
    Handled,
    /// Enqueue as usual.
    Fallback,
}

/// Offers `ticket` to the customer's last agent, if they have one worth waiting for.
pub(super) async fn offer(relay: &Relay, session: &Arc<Session>, ticket: &Ticket) -> Preferred {
    let Some(agent) = relay.past.last_agent(session).await else {
        return Preferred::Fallback;
    };
    match relay.dispatcher.offer(ticket.clone(), &agent).await {
        Ok(Offered::Assigned(assignment)) => {
            count("assigned");
            announce(relay, assignment).await;
            Preferred::Handled
        }
        Ok(Offered::Known(Enqueued::Assigned(assignment))) => {
            announce(relay, assignment).await;
            Preferred::Handled
        }
        Ok(Offered::Known(Enqueued::Queued { group, position })) => {
            super::tell_position(relay, session, &group, position);
            Preferred::Handled
        }
        Ok(Offered::Busy) if relay.routing.prefer_last_agent_s > 0 => {
            let wait = Duration::from_secs(relay.routing.prefer_last_agent_s);
            session.emit(&ServerFrame::Queued {
                position: 1,
                estimated_wait_s: wait.as_secs(),
                no_agent_available: false,
            });
            let (relay, session, ticket) = (relay.clone(), session.clone(), ticket.clone());
            tokio::spawn(async move { wait_for(relay, session, ticket, agent, wait).await });
            Preferred::Handled
        }
        Ok(Offered::Busy | Offered::Unavailable) => {
            count("fallback");
            Preferred::Fallback
        }
        Err(err) => {
            tracing::warn!(error = %err, "offer to the last agent failed; enqueueing");
            count("fallback");
            Preferred::Fallback
        }
    }
}

/// Asks the busy last agent again every second until a slot frees, the wait is over, or the
/// customer stopped waiting; then enqueues as usual.
async fn wait_for(
    relay: Relay,
    session: Arc<Session>,
    ticket: Ticket,
    agent: String,
    wait: Duration,
) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        tokio::time::sleep(RETRY).await;
        let waiting = session
            .peek_state(|s| matches!(s, SessionState::Queued { group } if *group == ticket.group));
        if !waiting || session.is_fenced() {
            return;
        }
        match relay.dispatcher.offer(ticket.clone(), &agent).await {
            Ok(Offered::Assigned(assignment)) => {
                count("assigned_after_wait");
                return announce(&relay, assignment).await;
            }
            Ok(Offered::Known(_)) => return,
            Ok(Offered::Busy) => continue,
            Ok(Offered::Unavailable) | Err(_) => break,
        }
    }
    count("fallback");
    let still = session
        .peek_state(|s| matches!(s, SessionState::Queued { group } if *group == ticket.group));
    if still && !session.is_fenced() {
        super::enqueue_now(&relay, &session, ticket).await;
    }
}

async fn announce(relay: &Relay, assignment: crate::dispatch::Assignment) {
    let node = assignment.customer_node.clone();
    relay
        .bus
        .send(&node, NodeEvent::Assigned { assignment })
        .await;
}

fn count(outcome: &'static str) {
    metrics::counter!(metric::LAST_AGENT_TOTAL, "outcome" => outcome).increment(1);
}
