//! The session's life as transitions: every change of [`SessionState`] is one of these
//! methods, each setting the facts of the conversation that belong to it in the same step
//! (under the same lock, logged once). Nothing outside this module sets a state: a chat
//! cannot be "with an agent" without the assignment's bookkeeping, or queued without its
//! position forgotten.

use tokio::time::Instant;

use super::{Session, SessionState};

impl Session {
    /// The greeting went out: the bot answers from now on.
    pub fn greeted(&self) {
        self.transition(|state, _| *state = SessionState::Bot);
    }

    /// Back with the bot: the queue could not take the chat (unreachable, or the group is
    /// offline and the customer may leave a message instead).
    pub fn back_to_bot(&self) {
        self.transition(|state, _| *state = SessionState::Bot);
    }

    /// Handed off to `group`'s queue (or about to be offered to an agent).
    pub fn hand_off(&self, group: &str) {
        self.transition(|state, _| {
            *state = SessionState::Queued {
                group: group.to_string(),
            };
        });
    }

    /// Assigned to `agent` (of `group`, whose socket is on `agent_node`): the first-reply
    /// clock starts, and the agent joins the conversation's list.
    pub fn assigned(&self, agent: &str, group: &str, agent_node: &str) {
        self.transition(|state, c| {
            c.service.last_position = None;
            c.service.assigned_at = Some(Instant::now());
            c.service.agent_replied = false;
            c.service.sla_warned = false;
            c.service.awaiting_since = None;
            c.service.agents.push(agent.to_string());
            *state = SessionState::WithAgent {
                agent: agent.to_string(),
                group: group.to_string(),
                agent_node: agent_node.to_string(),
            };
        });
    }

    /// The same agent serves the chat, from another node now (it moved, or the chat came back
    /// to it after a takeover). Ignored unless the chat is with `agent`.
    pub fn agent_moved(&self, agent: &str, agent_node: &str) {
        self.transition(|state, _| {
            if let SessionState::WithAgent {
                agent: a,
                agent_node: node,
                ..
            } = state
            {
                if a == agent {
                    *node = agent_node.to_string();
                }
            }
        });
    }

    /// The chat's agent was re-registered after a takeover: with `agent` as it was.
    pub fn reattached(&self, agent: &str, group: &str, agent_node: &str) {
        self.transition(|state, _| {
            *state = SessionState::WithAgent {
                agent: agent.to_string(),
                group: group.to_string(),
                agent_node: agent_node.to_string(),
            };
        });
    }

    /// The agent is gone (or the node restarted): back at the front of `group`'s queue.
    pub fn requeued(&self, group: &str) {
        self.queued_for(group);
    }

    /// The agent transferred the chat to `group`'s queue.
    pub fn transferred(&self, group: &str) {
        self.queued_for(group);
    }

    /// The agent closed the chat: the customer is asked for the survey.
    pub fn agent_closed(&self) {
        self.transition(|state, _| *state = SessionState::Survey);
    }

    /// Over, for `reason`; returns the state it was in (a queue place or an agent to free).
    pub fn close(&self, reason: &str) -> SessionState {
        let mut before = SessionState::Greeting;
        self.transition(|state, _| {
            before = std::mem::replace(
                state,
                SessionState::Closed {
                    reason: reason.to_string(),
                },
            );
        });
        before
    }

    fn queued_for(&self, group: &str) {
        self.transition(|state, c| {
            c.service.last_position = None;
            *state = SessionState::Queued {
                group: group.to_string(),
            };
        });
    }
}

impl SessionState {
    /// Whether the session holds a place with the dispatcher (a queue place or an agent's
    /// slot), which ending it must give back.
    pub fn holds_a_place(&self) -> bool {
        matches!(
            self,
            SessionState::Queued { .. } | SessionState::WithAgent { .. }
        )
    }
}
