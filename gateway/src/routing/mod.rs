//! The glue between customer sessions, agents and the [`Dispatcher`]: hand-off to the queue,
//! assignments, relaying chat between the two sides (possibly on two nodes, through the
//! [`bus`]), the agent greeting timer, the first-response SLA, queue positions and requeues.
//!
//! Rule of thumb: whatever changes a customer session runs on the customer's node, whatever
//! changes an agent's view runs on the agent's node; the dispatcher's shared state decides.

mod adopt;
mod agent_side;
pub mod bus;
mod periodic;
mod positions;
mod prefer;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use bus::{Bus, CustomerEvent, NodeEvent};
use positions::tell_position;
pub use relay::{Parts, Relay};

use crate::dispatch::{Assignment, DispatchError, Enqueued, Ticket};
use crate::mask::mask_text;
use crate::protocol::{AgentServerFrame, CustomerInfo, ErrorCode, Lang, ServerFrame};
use crate::session::{Milestone, Session, SessionState, Speaker, TranscriptEntry};
use crate::telemetry::metric;

/// Tries of an enqueue or a release that failed on the way to Redis. Both scripts are
/// idempotent (a known session keeps its place; an ended one is not ended again), so a retry
/// after a timeout cannot queue a customer twice or free a slot twice.
const DISPATCH_ATTEMPTS: u32 = 3;

/// Runs the dispatcher call `call` (named `what` in the log), again after a pause when Redis
/// failed, up to [`DISPATCH_ATTEMPTS`] times; any other answer is returned at once. Only for
/// idempotent calls.
async fn retry_on_redis<T, F, Fut>(what: &'static str, mut call: F) -> Result<T, DispatchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DispatchError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(DispatchError::Redis(err)) if attempt < DISPATCH_ATTEMPTS => {
                metrics::counter!(metric::DISPATCH_RETRIES_TOTAL).increment(1);
                tracing::warn!(error = %err, attempt, call = what, "dispatcher call failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Relay {
    /// Puts a session that asked for a human into its group's queue (or straight to an agent).
    /// If the dispatcher cannot be reached even after retries, the customer is told so and stays
    /// with the bot, free to ask again, rather than waiting in a queue that does not hold them.
    pub async fn enqueue(&self, session: &Arc<Session>, group: &str, priority: u8) {
        let ticket = Ticket {
            session: session.id.to_string(),
            group: group.to_string(),
            priority,
            node: self.node_id.clone(),
            enqueued_at_ms: crate::session::now_ms(),
        };
        if let prefer::Preferred::Handled = prefer::offer(self, session, &ticket).await {
            return;
        }
        enqueue_now(self, session, ticket).await;
    }

    /// Handles one event on this node's event task.
    pub async fn handle(&self, event: NodeEvent) {
        match event {
            NodeEvent::Assigned { assignment } => on_assigned(self, assignment).await,
            NodeEvent::Requeued { ticket, reason } => on_requeued(self, ticket, &reason).await,
            NodeEvent::ToCustomer {
                session,
                event: CustomerEvent::Resync { agent, agent_node },
            } => resync(self, &session, &agent, &agent_node).await,
            NodeEvent::ToCustomer { session, event } => {
                on_customer_event(self, &session, event).await
            }
            NodeEvent::ToAgent {
                agent,
                frame,
                customer_node,
            } => self.to_agent_here(&agent, frame, customer_node),
        }
    }

    /// A customer message or typing while with an agent: forward it to the agent of `state`, the
    /// state the frame was accepted in. An agent closing the chat at that moment still gets a
    /// message the customer was acknowledged for while the chat was theirs.
    pub async fn forward_to_agent(
        &self,
        session: &Session,
        state: SessionState,
        frame: AgentServerFrame,
    ) {
        let SessionState::WithAgent {
            agent, agent_node, ..
        } = state
        else {
            return;
        };
        if matches!(frame, AgentServerFrame::Message { .. }) {
            session.with_service(|c| {
                c.awaiting_since.get_or_insert_with(Instant::now);
            });
            // After the wait is set: the SLA check drops an entry it finds not waiting.
            self.awaiting.insert(session.id.clone());
        }
        let event = NodeEvent::ToAgent {
            agent,
            frame,
            customer_node: None,
        };
        self.bus.send(&agent_node, event).await;
    }

    /// Ends the chat for `reason`, on every path that ends one (the customer closed it, the
    /// survey was answered, the session expired): closed, its queue place or its agent given
    /// back, its final record saved. `farewell`: the customer, who is there, is told `closed`.
    pub async fn end_chat(&self, session: &Session, reason: &str, farewell: bool) {
        let before = session.close(reason);
        if before.holds_a_place() {
            self.cancel(&session.id, Some(before)).await;
        }
        if farewell {
            session.emit(&ServerFrame::Closed {
                reason: reason.to_string(),
            });
        }
        self.recorder.save(session, Some(reason)).await;
    }

    /// The customer is gone (closed, or expired): leave the queue or free the agent.
    pub async fn cancel(&self, session_id: &str, state: Option<SessionState>) {
        if let Some(SessionState::WithAgent {
            agent, agent_node, ..
        }) = state
        {
            let frame = AgentServerFrame::CustomerLeft {
                session: session_id.to_string(),
            };
            let event = NodeEvent::ToAgent {
                agent,
                frame,
                customer_node: None,
            };
            self.bus.send_confirmed(&agent_node, event).await;
        }
        match self.dispatcher.cancel(session_id).await {
            Ok(assignments) => self.announce(assignments).await,
            Err(err) => tracing::error!(error = %err, "cannot cancel a chat"),
        }
    }

    /// Sends each assignment to its customer's node.
    pub async fn announce(&self, assignments: Vec<Assignment>) {
        for assignment in assignments {
            let node = assignment.customer_node.clone();
            self.bus
                .send(&node, NodeEvent::Assigned { assignment })
                .await;
        }
    }
}

/// [`enqueue`] without the last-agent preference, with retries.
async fn enqueue_now(relay: &Relay, session: &Arc<Session>, ticket: Ticket) {
    let result = retry_on_redis("enqueue", || relay.dispatcher.enqueue(ticket.clone())).await;
    match result {
        Ok(Enqueued::Assigned(assignment)) => {
            let node = assignment.customer_node.clone();
            relay
                .bus
                .send(&node, NodeEvent::Assigned { assignment })
                .await;
        }
        Ok(Enqueued::Queued { group, position }) => {
            tell_position(relay, session, &group, position);
        }
        Err(err) => {
            metrics::counter!(metric::DISPATCH_ERRORS_TOTAL).increment(1);
            tracing::error!(error = %err, "cannot enqueue for a human");
            if matches!(session.state(), SessionState::Queued { .. }) {
                session.back_to_bot();
            }
            session.error(ErrorCode::Internal,
                "the queue for a person cannot be reached right now; send request_human again in a moment",
                None,
            );
        }
    }
}

/// On the customer's node: the session has an agent now.
async fn on_assigned(relay: &Relay, a: Assignment) {
    let Some(session) = relay.sessions.get_live(&a.session) else {
        // Resumed on another node meanwhile: that node serves it.
        let id = a.session.clone();
        if adopt::forward_to_owner(relay, &id, NodeEvent::Assigned { assignment: a }).await {
            return;
        }
        // The customer left meanwhile: free the slot (and fill it with the next customer).
        return relay.cancel(&id, None).await;
    };
    let name = relay.agent_name(&a.agent);
    metrics::histogram!(metric::QUEUE_WAIT_SECONDS).record(a.waited_ms as f64 / 1000.0);
    session.assigned(&a.agent, &a.group, &a.agent_node);
    session.mark(Milestone::Assigned {
        name: name.clone(),
        group: a.group.clone(),
    });
    session.emit(&ServerFrame::AgentJoined { name: name.clone() });
    relay.past.previous(&session).await;
    let frame = assigned_frame(&session, &a.group, a.waited_ms, false);
    let event = NodeEvent::ToAgent {
        agent: a.agent.clone(),
        frame,
        customer_node: Some(relay.node_id.clone()),
    };
    relay.bus.send(&a.agent_node, event).await;
    start_greeting_timer(relay.clone(), session, a.agent, name);
}

/// What an agent is told of a chat it serves: the customer (masked) and the full history.
pub(crate) fn assigned_frame(
    session: &Session,
    group: &str,
    waited_ms: u64,
    resumed: bool,
) -> AgentServerFrame {
    let mut customer = CustomerInfo {
        visitor: session
            .visitor
            .as_deref()
            .map(|v| mask_text(v).into_owned()),
        channel: session.channel,
        lang: session.lang,
        complaint_level: session.complaint_level(),
        returning: false,
        identified: false,
        previous: Vec::new(),
        name: None,
        tier: None,
        phone: None,
    };
    crate::continuity::customer_fields(session, &mut customer);
    AgentServerFrame::Assigned {
        session: session.id.to_string(),
        group: group.to_string(),
        customer,
        history: masked_history(session.transcript()),
        waited_ms,
        resumed,
    }
}

/// On the customer's node: the agent lost frames of this chat; send it the chat again.
async fn resync(relay: &Relay, session_id: &str, agent: &str, agent_node: &str) {
    let Some(session) = relay.sessions.get_live(session_id) else {
        let event = NodeEvent::ToCustomer {
            session: session_id.to_string(),
            event: CustomerEvent::Resync {
                agent: agent.to_string(),
                agent_node: agent_node.to_string(),
            },
        };
        if adopt::forward_to_owner(relay, session_id, event).await {
            return;
        }
        // Gone meanwhile: tell the agent so its console does not keep a dead chat.
        let frame = AgentServerFrame::CustomerLeft {
            session: session_id.to_string(),
        };
        let event = NodeEvent::ToAgent {
            agent: agent.to_string(),
            frame,
            customer_node: None,
        };
        return relay.bus.send(agent_node, event).await;
    };
    let SessionState::WithAgent {
        agent: a, group, ..
    } = session.state()
    else {
        return;
    };
    if a != agent {
        return;
    }
    session.agent_moved(&a, agent_node);
    let event = NodeEvent::ToAgent {
        agent: a,
        frame: assigned_frame(&session, &group, 0, true),
        customer_node: Some(relay.node_id.clone()),
    };
    relay.bus.send(agent_node, event).await;
}

/// Everything said so far, as an agent may see it.
fn masked_history(transcript: Vec<TranscriptEntry>) -> Vec<TranscriptEntry> {
    transcript
        .into_iter()
        .map(|mut e| {
            e.text = mask_text(&e.text).into_owned();
            e
        })
        .collect()
}

/// If the agent has not written within the greeting time, greet in their name.
fn start_greeting_timer(relay: Relay, session: Arc<Session>, agent: String, name: String) {
    let after = Duration::from_secs(relay.routing.agent_greeting_s);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let still_theirs =
            matches!(session.state(), SessionState::WithAgent { agent: ref a, .. } if *a == agent);
        let due = still_theirs
            && session.with_service(|c| !std::mem::replace(&mut c.agent_replied, true));
        if !due {
            return;
        }
        let template = match session.lang {
            Lang::Zh => &relay.routing.agent_greeting_zh,
            Lang::En => &relay.routing.agent_greeting_en,
        };
        let text = template.replace("{name}", &name);
        metrics::counter!(metric::AGENT_AUTO_GREETINGS_TOTAL).increment(1);
        session.record(Speaker::Agent, &text, None);
        session.emit(&ServerFrame::Message {
            id: format!("auto-{}", session.last_seq() + 1),
            from: "agent".into(),
            name,
            text: text.clone(),
            auto: true,
            rich: Default::default(),
            offline: false,
        });
        // A node paused past a takeover must not greet in the agent's name twice.
        if session.sync().await.is_err() {
            return;
        }
        if let SessionState::WithAgent { agent_node, .. } = session.state() {
            let frame = AgentServerFrame::AutoGreeting {
                session: session.id.to_string(),
                text,
            };
            let event = NodeEvent::ToAgent {
                agent,
                frame,
                customer_node: None,
            };
            relay.bus.send(&agent_node, event).await;
        }
    });
}

/// On the customer's node: the agent is gone; the session is back at the front of the queue.
async fn on_requeued(relay: &Relay, ticket: Ticket, reason: &str) {
    let Some(session) = relay.sessions.get_live(&ticket.session) else {
        let id = ticket.session.clone();
        let event = NodeEvent::Requeued {
            ticket,
            reason: reason.to_string(),
        };
        adopt::forward_to_owner(relay, &id, event).await;
        return;
    };
    session.requeued(&ticket.group);
    session.mark(Milestone::AgentLeft {
        reason: reason.to_string(),
    });
    session.emit(&ServerFrame::AgentLeft {
        reason: reason.to_string(),
    });
    // The exact position follows with the next positions tick; the front of the queue is
    // where requeued chats go.
    tell_position(relay, &session, &ticket.group, 1);
}

/// On the customer's node: something the agent did.
async fn on_customer_event(relay: &Relay, session_id: &str, event: CustomerEvent) {
    let Some(session) = relay.sessions.get_live(session_id) else {
        let kind = event.kind();
        let forward = NodeEvent::ToCustomer {
            session: session_id.to_string(),
            event,
        };
        if adopt::forward_to_owner(relay, session_id, forward).await {
            return;
        }
        tracing::info!(
            kind,
            session = session_id,
            "agent event dropped: the customer session has ended"
        );
        return;
    };
    let agent_now = match session.state() {
        SessionState::WithAgent { agent, .. } => Some(agent),
        _ => None,
    };
    match event {
        CustomerEvent::AgentMessage {
            agent,
            id,
            text,
            rich,
        } if agent_now.as_deref() == Some(&agent) => {
            let said = adopt::Said { id, text, rich };
            adopt::deliver_agent_message(relay, &session, &agent, "", said, true);
        }
        CustomerEvent::AgentMoved { agent, agent_node } if agent_now.as_deref() == Some(&agent) => {
            session.agent_moved(&agent, &agent_node);
        }
        CustomerEvent::AgentTyping { agent } if agent_now.as_deref() == Some(&agent) => {
            session.emit_ephemeral(&ServerFrame::Typing {});
        }
        CustomerEvent::ChatClosed { agent } if agent_now.as_deref() == Some(&agent) => {
            session.mark(Milestone::ClosedByAgent);
            session.agent_closed();
            session.emit(&ServerFrame::Closed {
                reason: "agent_closed".into(),
            });
            session.emit(&ServerFrame::Survey {});
            if session.identity().is_some() {
                // An identified customer may come back before answering (or ever closing):
                // the record so far lets their next chat see this one and its agent (the final
                // record replaces it).
                relay.recorder.save(&session, None).await;
            }
        }
        CustomerEvent::Transferred {
            agent,
            group,
            position,
        } if agent_now.as_deref() == Some(&agent) => {
            session.mark(Milestone::Transferred {
                group: group.clone(),
            });
            session.transferred(&group);
            session.emit(&ServerFrame::Handoff {
                group: group.clone(),
                reason: "transfer".into(),
                level: None,
            });
            tell_position(relay, &session, &group, position);
        }
        stale => tracing::info!(
            kind = stale.kind(),
            agent = stale.agent(),
            session = session_id,
            state = ?session.state(),
            "agent event dropped: the session is no longer with that agent"
        ),
    }
}
