//! The agents connected to this node (or within their grace period): their outboxes, the
//! chats each serves, and delivery of the relay's frames to them. Owned by neither socket
//! module: the agent socket reads frames into it, the relay delivers frames out of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use tokio::time::Instant;

use crate::config::Settings;
use crate::limits::{FrameBudget, FrameVerdict};
use crate::session::TYPING_EVERY;
use crate::telemetry::metric;

use crate::outbox::Outbox;
use crate::protocol::{AgentServerFrame, ErrorCode};
use crate::roster::AgentEntry;

/// Client message ids remembered per agent, to acknowledge re-sends without relaying twice.
const SEEN_IDS: usize = 1024;
/// Customer message ids remembered per agent, to give each to it once.
const GIVEN_IDS: usize = 4096;

pub struct AgentSession {
    pub entry: AgentEntry,
    pub outbox: Outbox,
    state: Mutex<State>,
}

struct State {
    /// Chats this agent serves: session id -> node of the customer's socket.
    chats: HashMap<String, String>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    frames: FrameBudget,
    /// When `typing` was last relayed per chat (at most one a second); chats' keys only.
    typing_sent_at: HashMap<String, Instant>,
    /// Customer messages this agent was given (live or in a history), newest last: after a
    /// takeover the same message can come both in a rebuilt history and live; once is enough.
    given: HashSet<(String, String)>,
    given_order: VecDeque<(String, String)>,
}

impl AgentSession {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn id(&self) -> &str {
        &self.entry.id
    }

    pub fn customer_node(&self, session: &str) -> Option<String> {
        self.lock().chats.get(session).cloned()
    }

    pub fn add_chat(&self, session: &str, node: &str) {
        self.lock()
            .chats
            .insert(session.to_string(), node.to_string());
    }

    pub fn forget_chat(&self, session: &str) {
        let mut state = self.lock();
        state.chats.remove(session);
        state.typing_sent_at.remove(session);
    }

    /// Counts one inbound frame against the agent's frame budget.
    pub fn take_frame(&self) -> FrameVerdict {
        self.lock().frames.take(Instant::now())
    }

    /// Whether a `typing` for one of the agent's chats may be relayed now.
    pub fn typing_due(&self, session: &str) -> bool {
        let mut state = self.lock();
        if !state.chats.contains_key(session) {
            return false;
        }
        let now = Instant::now();
        let due = state
            .typing_sent_at
            .get(session)
            .is_none_or(|at| now.saturating_duration_since(*at) >= TYPING_EVERY);
        if due {
            state.typing_sent_at.insert(session.to_string(), now);
        }
        due
    }

    /// The chats with the node of each customer.
    pub fn chat_nodes(&self) -> Vec<(String, String)> {
        let state = self.lock();
        state
            .chats
            .iter()
            .map(|(s, n)| (s.clone(), n.clone()))
            .collect()
    }

    /// Whether `id` is new (and remembers it).
    pub fn remember_message(&self, id: &str) -> bool {
        let mut state = self.lock();
        if !state.seen.insert(id.to_string()) {
            return false;
        }
        state.seen_order.push_back(id.to_string());
        if state.seen_order.len() > SEEN_IDS {
            if let Some(old) = state.seen_order.pop_front() {
                state.seen.remove(&old);
            }
        }
        true
    }

    /// Whether customer message `id` of `session` is new to this agent (and remembers it).
    pub fn first_time(&self, session: &str, id: &str) -> bool {
        let mut state = self.lock();
        let key = (session.to_string(), id.to_string());
        if !state.given.insert(key.clone()) {
            return false;
        }
        state.given_order.push_back(key);
        if state.given_order.len() > GIVEN_IDS {
            if let Some(old) = state.given_order.pop_front() {
                state.given.remove(&old);
            }
        }
        true
    }

    /// Forgets a message id whose message could not be stored, so a re-send is taken.
    pub fn forget_message(&self, id: &str) {
        let mut state = self.lock();
        if state.seen.remove(id) {
            state.seen_order.retain(|s| s != id);
        }
    }

    pub fn error(&self, code: ErrorCode, message: impl Into<String>, id: Option<String>) {
        metrics::counter!(metric::ERRORS_TOTAL, "code" => code.as_str()).increment(1);
        self.outbox.emit(&AgentServerFrame::Error {
            code,
            message: message.into(),
            id,
        });
    }
}

#[derive(Default)]
pub struct Agents {
    map: DashMap<String, Arc<AgentSession>>,
}

impl Agents {
    /// The agent's session on this node, created on first sign-in.
    /// The agent's session on this node; `true` when it was created now (the agent's first
    /// connection here, or after its grace period).
    pub fn get_or_create(
        &self,
        entry: &AgentEntry,
        settings: &Settings,
    ) -> (Arc<AgentSession>, bool) {
        let mut created = false;
        let session = self
            .map
            .entry(entry.id.clone())
            .or_insert_with(|| {
                created = true;
                let limits = &settings.limits;
                Arc::new(AgentSession {
                    entry: entry.clone(),
                    outbox: Outbox::new(settings.session.replay_frames),
                    state: Mutex::new(State {
                        chats: HashMap::new(),
                        seen: HashSet::new(),
                        seen_order: VecDeque::new(),
                        frames: FrameBudget::new(limits.frames_per_second, limits.frame_burst),
                        typing_sent_at: HashMap::new(),
                        given: HashSet::new(),
                        given_order: VecDeque::new(),
                    }),
                })
            })
            .clone();
        (session, created)
    }

    /// Forgets the agent's session here if no connection holds it (see `agent::serve`).
    pub fn forget_detached(&self, id: &str) {
        self.map
            .remove_if(id, |_, a| a.outbox.detached_since().is_some());
    }

    pub fn get(&self, id: &str) -> Option<Arc<AgentSession>> {
        self.map.get(id).map(|a| a.clone())
    }

    /// Delivers a frame of the relay to `agent`'s outbox here: an `assigned` adds the chat
    /// (with its customer's node) and marks its customer messages given; a customer message
    /// the agent was given already is dropped; `customer_left` forgets the chat. The frame
    /// comes back (`Some`) when the agent is not on this node (it moved: the relay sends it on).
    pub fn deliver(
        &self,
        agent: &str,
        frame: AgentServerFrame,
        customer_node: Option<String>,
    ) -> Option<AgentServerFrame> {
        let Some(session) = self.get(agent) else {
            return Some(frame);
        };
        match &frame {
            AgentServerFrame::Assigned {
                session: id,
                history,
                ..
            } => {
                if let Some(node) = customer_node {
                    session.add_chat(id, &node);
                }
                for line in history
                    .iter()
                    .filter(|l| l.from == crate::session::Speaker::Customer)
                {
                    if let Some(msg) = &line.id {
                        session.first_time(id, msg);
                    }
                }
            }
            AgentServerFrame::Message {
                session: chat, id, ..
            } if !session.first_time(chat, id) => {
                return None;
            }
            AgentServerFrame::CustomerLeft { session: id } => session.forget_chat(id),
            AgentServerFrame::Typing { .. } => {
                session.outbox.emit_ephemeral(&frame);
                return None;
            }
            _ => {}
        }
        session.outbox.emit(&frame.masked());
        None
    }

    /// Forgets agents whose socket has been gone longer than `grace` (their chats were
    /// requeued by the dispatcher by then).
    pub fn reap(&self, grace: std::time::Duration) {
        self.map.retain(|_, a| {
            a.outbox
                .detached_since()
                .is_none_or(|since| since.elapsed() < grace)
        });
    }
}
