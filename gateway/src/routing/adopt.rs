//! Taking over sessions rebuilt from the durable log: tell the dispatcher where the customer
//! is now, tell the agent (its console rebuilds the chat), deliver what the log holds but no
//! frame delivered yet, and, on one node with its log in the store, take back at start every
//! session that was live before a restart.

use std::sync::Arc;
use std::time::Duration;

use super::Relay;
use super::{on_assigned, tell_position, NodeEvent};
use crate::dispatch::{Enqueued, Ticket};
use crate::journal::Entry;
use crate::protocol::ServerFrame;
use crate::session::{
    rebuild, Milestone, PendingAgentMessage, Session, SessionLog, SessionState, Speaker,
};
use crate::telemetry::metric;

/// Sessions taken back at most after a restart.
const MAX_RESTORED: usize = 200_000;

impl Relay {
    /// After a session came here from the log.
    pub async fn adopt(
        &self,
        session: &Arc<Session>,
        undelivered: Vec<PendingAgentMessage>,
        cursor: Option<String>,
    ) {
        for m in undelivered {
            let said = Said {
                id: m.id,
                text: m.text,
                rich: m.rich,
            };
            deliver_agent_message(self, session, &m.agent, &m.name, said, false);
        }
        match session.state() {
            SessionState::Queued { group } => {
                let priority = session.complaint_level();
                self.enqueue(session, &group, priority).await;
            }
            SessionState::WithAgent { agent, group, .. } => {
                reattach_agent(self, session, agent, group).await;
            }
            _ => {}
        }
        if let Some(cursor) = cursor {
            tokio::spawn(catch_up(self.clone(), session.clone(), cursor));
        }
    }

    /// At start, one node with its log in the store: every session that was live before the
    /// restart comes back, detached (its customer has the grace period, counted from now, to
    /// resume), its queue place or its agent with it.
    pub async fn restore_logged(&self) {
        let ids = self.journal.logged_sessions(MAX_RESTORED).await;
        if ids.is_empty() {
            return;
        }
        let mut restored = 0usize;
        for id in ids {
            let Ok(Some(loaded)) = self.journal.load(&id).await else {
                continue;
            };
            let log = SessionLog {
                journal: self.journal.clone(),
                epoch: 1,
            };
            let limits = self.sessions.limits().clone();
            match rebuild(&id, loaded.entries, limits, log, None) {
                Ok(rebuilt) => {
                    let (session, adopted) = self.sessions.adopt(rebuilt.session);
                    if adopted {
                        self.adopt(&session, rebuilt.undelivered, None).await;
                        restored += 1;
                    }
                }
                // Ended before the restart: its record is stored; the log can go.
                Err(_) => self.journal.forget_later(&id),
            }
        }
        tracing::info!(restored, "sessions taken back from the conversation log");
    }

    /// Shared log: takes over the sessions of nodes that died (and, at start, those this node's
    /// id held before a restart), so they end here and their records reach the store even if
    /// their customers never come back.
    pub async fn take_orphans(&self, own_leftovers: bool) {
        let taken = self
            .journal
            .take_orphans(MAX_ORPHANS_PER_ROUND, own_leftovers)
            .await;
        if taken.is_empty() {
            return;
        }
        let mut adopted_count = 0usize;
        for (id, epoch) in taken {
            let Ok(Some(loaded)) = self.journal.load(&id).await else {
                continue;
            };
            let log = SessionLog {
                journal: self.journal.clone(),
                epoch,
            };
            let limits = self.sessions.limits().clone();
            match rebuild(&id, loaded.entries, limits, log, None) {
                Ok(rebuilt) => {
                    let (session, adopted) = self.sessions.adopt(rebuilt.session);
                    if adopted {
                        self.adopt(&session, rebuilt.undelivered, loaded.cursor)
                            .await;
                        adopted_count += 1;
                    }
                }
                Err(_) => self.journal.forget_later(&id),
            }
        }
        metrics::counter!(metric::SESSIONS_TAKEN_OVER_TOTAL).increment(adopted_count as u64);
        tracing::info!(
            adopted = adopted_count,
            "sessions taken over from nodes that are gone"
        );
    }
}

/// The chat had an agent: the dispatcher learns the customer's node (an enqueue of a known
/// session only records it) and the agent gets the chat again, `resumed`, from here.
async fn reattach_agent(relay: &Relay, session: &Arc<Session>, agent: String, group: String) {
    let ticket = Ticket {
        session: session.id.to_string(),
        group: group.clone(),
        priority: session.complaint_level(),
        node: relay.node_id.clone(),
        enqueued_at_ms: crate::session::now_ms(),
    };
    match relay.dispatcher.enqueue(ticket).await {
        Ok(Enqueued::Assigned(a)) if a.agent == agent => {
            session.reattached(&a.agent, &a.group, &a.agent_node);
            let frame = super::assigned_frame(session, &a.group, 0, true);
            let event = NodeEvent::ToAgent {
                agent: a.agent.clone(),
                frame,
                customer_node: Some(relay.node_id.clone()),
            };
            relay.bus.send(&a.agent_node, event).await;
            // The agent has not written yet: its greeting timer died with the old node.
            if !session.with_service(|c| c.agent_replied) {
                session.with_service(|c| c.assigned_at = Some(tokio::time::Instant::now()));
                let name = relay.agent_name(&a.agent);
                super::start_greeting_timer(relay.clone(), session.clone(), a.agent, name);
            }
        }
        // The dispatcher forgot the chat (one node restarted with memory routing): it was
        // queued again, or went to whoever is free.
        Ok(Enqueued::Assigned(a)) => on_assigned(relay, a).await,
        Ok(Enqueued::Queued { group, position }) => {
            session.requeued(&group);
            session.mark(Milestone::AgentLeft {
                reason: "node_restarted".into(),
            });
            session.emit(&ServerFrame::AgentLeft {
                reason: "node_restarted".into(),
            });
            tell_position(relay, session, &group, position);
        }
        Err(err) => tracing::error!(error = %err, "cannot re-register a resumed chat"),
    }
}

/// Delivers an agent's message (acknowledged to the agent, so durable in the log) once.
/// What an agent said: its message id, text, and attachment or card.
pub(super) struct Said {
    pub id: String,
    pub text: String,
    pub rich: crate::protocol::Rich,
}

pub(super) fn deliver_agent_message(
    relay: &Relay,
    session: &Session,
    agent: &str,
    name: &str,
    said: Said,
    first_reply: bool,
) {
    let Said { id, text, rich } = said;
    if session.has_line(Speaker::Agent, &id) {
        return;
    }
    let (flipped, first) = session.with_service(|c| {
        c.awaiting_since = None;
        c.sla_warned = false;
        let first = !c.agent_replied;
        c.agent_replied = true;
        (first, first.then_some(c.assigned_at).flatten())
    });
    if flipped {
        session.checkpoint(); // a rebuild must not greet for an agent who wrote
    }
    if let Some(assigned_at) = first.filter(|_| first_reply) {
        metrics::histogram!(metric::AGENT_FIRST_REPLY_SECONDS)
            .record(assigned_at.elapsed().as_secs_f64());
    }
    let name = if name.is_empty() {
        relay.agent_name(agent)
    } else {
        name.to_string()
    };
    let frame = ServerFrame::Message {
        id: id.clone(),
        from: "agent".into(),
        name,
        text: text.clone(),
        auto: false,
        rich: rich.clone(),
        offline: false,
    };
    session.emit_recorded_rich(&frame, Speaker::Agent, &text, Some(id), rich);
}

/// An agent whose node still sent to the old owner in the moment of the takeover wrote its
/// message to the log all the same: read what came after the rebuild, twice, and deliver it.
async fn catch_up(relay: Relay, session: Arc<Session>, mut cursor: String) {
    for wait in [Duration::from_secs(1), Duration::from_secs(3)] {
        tokio::time::sleep(wait).await;
        if session.is_fenced() {
            return;
        }
        let Ok(loaded) = relay.journal.load_after(&session.id, &cursor).await else {
            continue;
        };
        for entry in loaded.entries {
            if let Entry::AgentMessage {
                agent,
                name,
                id,
                text,
                rich,
                ..
            } = entry
            {
                let said = Said { id, text, rich };
                deliver_agent_message(&relay, &session, &agent, &name, said, false);
            }
        }
        if let Some(next) = loaded.cursor {
            cursor = next;
        }
    }
}

/// Sessions taken over from dead nodes per round at most (a round every few seconds).
const MAX_ORPHANS_PER_ROUND: usize = 500;

/// Sends `event` for a session this node does not hold to the node that holds its lease
/// now; whether it went somewhere.
pub(super) async fn forward_to_owner(relay: &Relay, session: &str, event: NodeEvent) -> bool {
    if !relay.journal.is_shared() {
        return false;
    }
    match relay.journal.owner(session).await {
        Some(owner) if owner != relay.node_id => {
            metrics::counter!(metric::EVENTS_FORWARDED_TOTAL).increment(1);
            relay.bus.send(&owner, event).await;
            true
        }
        _ => false,
    }
}
