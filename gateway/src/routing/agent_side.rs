//! What an agent's commands do to routing (ready, away, close, transfer, typing, its message
//! on the way to the customer's node), and frames on their way to an agent: delivered here,
//! or sent on to the node the agent moved to. The agent socket only parses frames and turns
//! the errors returned here into error frames; it never drives the dispatcher or the bus.
//!
//! An agent on a node that has not served it before (it moved, its node died or was
//! deployed) gets the chats the dispatcher says it holds back from the durable log, each as
//! one `assigned` with `resumed` and the full history, and each customer's node learns where
//! the agent is now.

use super::{assigned_frame, CustomerEvent, NodeEvent, Relay};
use crate::agents::AgentSession;
use crate::dispatch::{AgentSpec, DispatchError, Enqueued, TransferTarget};
use crate::protocol::AgentServerFrame;
use crate::session::{rebuild, SessionLog, SessionState};
use crate::telemetry::metric;

impl Relay {
    /// The agent signed in on this node: the dispatcher learns it is here.
    pub async fn agent_online(&self, spec: &AgentSpec) -> Result<(), DispatchError> {
        self.dispatcher.agent_online(spec, &self.node_id).await
    }

    /// The agent's last socket here closed: its chats wait for the grace period; the
    /// dispatcher's reap requeues them after.
    pub async fn agent_disconnected(&self, agent: &str) {
        if let Err(err) = self.dispatcher.agent_disconnected(agent).await {
            tracing::error!(error = %err, "cannot mark the agent disconnected");
        }
    }

    /// `ready`: the agent takes chats (up to `capacity`); whoever it gets is told.
    pub async fn agent_ready(
        &self,
        agent: &str,
        capacity: Option<u32>,
    ) -> Result<(), DispatchError> {
        let assignments = self.dispatcher.agent_ready(agent, capacity).await?;
        self.announce(assignments).await;
        Ok(())
    }

    /// `away`: no new chats for the agent.
    pub async fn agent_away(&self, agent: &str) -> Result<(), DispatchError> {
        self.dispatcher.agent_away(agent).await
    }

    /// `close`: the agent ends the chat `session` (whose customer is on `customer_node`);
    /// the slot goes to the next customer.
    pub async fn close_chat(
        &self,
        agent: &AgentSession,
        session: String,
        customer_node: &str,
    ) -> Result<(), DispatchError> {
        // Retried (as an enqueue is) when Redis fails: a close sent while Redis restarts
        // would otherwise come back as `internal` with the chat still open, and a console that
        // took the close for done would miss the customer's next words.
        let release = || self.dispatcher.release(agent.id(), &session);
        let assignments = super::retry_on_redis("release", release).await?;
        agent.forget_chat(&session);
        let event = CustomerEvent::ChatClosed {
            agent: agent.id().to_string(),
        };
        let to_customer = NodeEvent::ToCustomer {
            session: session.clone(),
            event,
        };
        self.bus.send(customer_node, to_customer).await;
        agent.outbox.emit(&AgentServerFrame::ChatEnded {
            session,
            reason: "closed".into(),
        });
        self.announce(assignments).await;
        Ok(())
    }

    /// `transfer`: the chat goes to another group's queue or straight to another agent.
    pub async fn transfer(
        &self,
        agent: &AgentSession,
        session: String,
        customer_node: &str,
        target: TransferTarget,
    ) -> Result<(), DispatchError> {
        let transferred = self.dispatcher.transfer(&session, target).await?;
        agent.forget_chat(&session);
        agent.outbox.emit(&AgentServerFrame::ChatEnded {
            session: session.clone(),
            reason: "transferred".into(),
        });
        match transferred.session {
            Enqueued::Assigned(assignment) => {
                let node = assignment.customer_node.clone();
                self.bus
                    .send(&node, NodeEvent::Assigned { assignment })
                    .await;
            }
            Enqueued::Queued { group, position } => {
                let event = CustomerEvent::Transferred {
                    agent: agent.id().to_string(),
                    group,
                    position,
                };
                self.bus
                    .send(customer_node, NodeEvent::ToCustomer { session, event })
                    .await;
            }
        }
        self.announce(transferred.assignments).await;
        Ok(())
    }

    /// Something the agent did, for its customer's node (a message, typing).
    pub async fn to_customer(&self, customer_node: &str, session: String, event: CustomerEvent) {
        self.bus
            .send(customer_node, NodeEvent::ToCustomer { session, event })
            .await;
    }

    /// The agent's replay had a gap: each of its customers' nodes sends its chat again.
    pub async fn resync_chats(&self, agent: &AgentSession) {
        for (session, customer_node) in agent.chat_nodes() {
            let event = CustomerEvent::Resync {
                agent: agent.id().to_string(),
                agent_node: self.node_id.clone(),
            };
            self.to_customer(&customer_node, session, event).await;
        }
    }

    /// On the agent's node: a frame for `agent`, delivered to it here; if it moved to another
    /// node in the meantime, the dispatcher knows which (shared log only).
    pub fn to_agent_here(
        &self,
        agent: &str,
        frame: AgentServerFrame,
        customer_node: Option<String>,
    ) {
        let Some(frame) = self.agents.deliver(agent, frame, customer_node.clone()) else {
            return;
        };
        if self.journal.is_shared() {
            let relay = self.clone();
            let agent = agent.to_string();
            tokio::spawn(async move {
                relay
                    .forward_to_agent_node(agent, frame, customer_node)
                    .await
            });
        } else {
            tracing::warn!(agent, "frame for an agent not on this node");
        }
    }

    /// A frame for an agent that is no longer on this node: sent on to the node the
    /// dispatcher has it on (once; dropped if that is this node or nobody).
    async fn forward_to_agent_node(
        &self,
        agent: String,
        frame: AgentServerFrame,
        customer_node: Option<String>,
    ) {
        let node = match self.dispatcher.agent_chats(&agent).await {
            Ok((_, node)) => node,
            Err(_) => None,
        };
        match node {
            Some(node) if node != self.node_id => {
                metrics::counter!(metric::EVENTS_FORWARDED_TOTAL).increment(1);
                let event = NodeEvent::ToAgent {
                    agent,
                    frame,
                    customer_node,
                };
                self.bus.send(&node, event).await;
            }
            _ => tracing::info!(agent, "frame for an agent not on this node dropped"),
        }
    }

    /// The chats the dispatcher says `agent` holds, rebuilt from the log (read only: the
    /// lease stays with the customer's node) and given to it, `resumed`.
    pub async fn restore_chats(&self, agent: &AgentSession) {
        let id = agent.id();
        let sessions = match self.dispatcher.agent_chats(id).await {
            Ok((sessions, _)) => sessions,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the agent's chats");
                return;
            }
        };
        for session_id in sessions {
            let Ok(Some(loaded)) = self.journal.load(&session_id).await else {
                continue;
            };
            let log = SessionLog {
                journal: self.journal.clone(),
                epoch: 0,
            };
            let limits = self.sessions.limits().clone();
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
            let customer_node = if self.journal.is_shared() {
                self.journal
                    .owner(&session_id)
                    .await
                    .unwrap_or_else(|| self.node_id.clone())
            } else {
                self.node_id.clone()
            };
            agent.add_chat(&session_id, &customer_node);
            for line in session.transcript() {
                if line.from == crate::session::Speaker::Customer {
                    if let Some(msg) = &line.id {
                        agent.first_time(&session_id, msg);
                    }
                }
            }
            let mut frame = assigned_frame(&session, &group, 0, true);
            // Messages the agent wrote that the customer's node did not deliver yet are theirs.
            if let AgentServerFrame::Assigned { history, .. } = &mut frame {
                for m in &rebuilt.undelivered {
                    history.push(crate::session::TranscriptEntry::said(
                        crate::session::Speaker::Agent,
                        &crate::mask::mask_text(&m.text),
                        crate::session::now_ms(),
                        Some(m.id.clone()),
                        m.rich.clone(),
                    ));
                }
            }
            agent.outbox.emit(&frame.masked());
            let event = CustomerEvent::AgentMoved {
                agent: id.to_string(),
                agent_node: self.node_id.clone(),
            };
            self.to_customer(&customer_node, session_id, event).await;
        }
    }
}
