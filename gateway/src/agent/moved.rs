//! An agent on a node that has not served it before (it moved, its node died or was
//! deployed): the chats the dispatcher says it holds come back from the durable log, each as
//! one `assigned` with `resumed` and the full history, and each customer's node learns where
//! the agent is now.

use super::AgentSession;
use crate::journal::JournalError;
use crate::protocol::ErrorCode;
use crate::routing::{CustomerEvent, NodeEvent};
use crate::server::AppState;
use crate::session::{rebuild, SessionLog, SessionState};

pub(super) async fn restore_chats(app: &AppState, agent: &AgentSession) {
    let id = agent.id();
    let sessions = match app.dispatcher.agent_chats(id).await {
        Ok((sessions, _)) => sessions,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the agent's chats");
            return;
        }
    };
    for session_id in sessions {
        let Ok(Some(loaded)) = app.journal.load(&session_id).await else {
            continue;
        };
        // Read only, to show the chat: the lease stays with the customer's node.
        let log = SessionLog {
            journal: app.journal.clone(),
            epoch: 0,
        };
        let limits = app.sessions.limits().clone();
        let Ok(rebuilt) = rebuild(&session_id, loaded.entries, limits, log, None) else {
            continue;
        };
        let session = rebuilt.session;
        let SessionState::WithAgent {
            agent: a, group, ..
        } = session.state()
        else {
            continue;
        };
        if a != id {
            continue;
        }
        let customer_node = if app.journal.is_shared() {
            app.journal
                .owner(&session_id)
                .await
                .unwrap_or_else(|| app.node_id.clone())
        } else {
            app.node_id.clone()
        };
        agent.add_chat(&session_id, &customer_node);
        for line in session.transcript() {
            if line.from == crate::session::Speaker::Customer {
                if let Some(msg) = &line.id {
                    agent.first_time(&session_id, msg);
                }
            }
        }
        let mut frame = crate::routing::assigned_frame(&session, &group, 0, true);
        // Messages the agent wrote that the customer's node did not deliver yet are theirs.
        if let crate::protocol::AgentServerFrame::Assigned { history, .. } = &mut frame {
            for m in &rebuilt.undelivered {
                history.push(crate::session::TranscriptEntry {
                    from: crate::session::Speaker::Agent,
                    text: crate::mask::mask_text(&m.text).into_owned(),
                    at_ms: crate::session::now_ms(),
                    id: Some(m.id.clone()),
                    rich: m.rich.clone(),
                });
            }
        }
        agent.outbox.emit(&frame.masked());
        let event = CustomerEvent::AgentMoved {
            agent: id.to_string(),
            agent_node: app.node_id.clone(),
        };
        app.bus
            .send(
                &customer_node,
                NodeEvent::ToCustomer {
                    session: session_id,
                    event,
                },
            )
            .await;
    }
}

/// A frame for an agent that is no longer on this node: sent on to the node the dispatcher
/// has it on (once; dropped if that is this node or nobody).
pub(super) async fn forward(
    app: AppState,
    agent: String,
    frame: crate::protocol::AgentServerFrame,
    customer_node: Option<String>,
) {
    let node = match app.dispatcher.agent_chats(&agent).await {
        Ok((_, node)) => node,
        Err(_) => None,
    };
    match node {
        Some(node) if node != app.node_id => {
            metrics::counter!("kefu_events_forwarded_total").increment(1);
            let event = NodeEvent::ToAgent {
                agent,
                frame,
                customer_node,
            };
            app.bus.send(&node, event).await;
        }
        _ => tracing::info!(agent, "frame for an agent not on this node dropped"),
    }
}

/// The agent's message could not be made durable: say so, nothing was sent.
pub(super) fn not_stored(agent: &AgentSession, session: &str, id: String, err: JournalError) {
    match err {
        JournalError::NoLog => {
            let message = format!("session {session} has ended; the message was not sent");
            agent.error(ErrorCode::NotYourChat, message, Some(id));
        }
        err => {
            tracing::error!(%err, "an agent message could not be stored");
            let message = "the message could not be stored; send it again";
            agent.error(ErrorCode::Internal, message, Some(id));
        }
    }
}
