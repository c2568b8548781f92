//! The agents connected to this node (or within their grace period).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;

use crate::outbox::Outbox;
use crate::protocol::{AgentServerFrame, ErrorCode};
use crate::roster::AgentEntry;

/// Client message ids remembered per agent, to acknowledge re-sends without relaying twice.
const SEEN_IDS: usize = 1024;

pub struct AgentSession {
    pub entry: AgentEntry,
    pub outbox: Outbox,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Chats this agent serves: session id -> node of the customer's socket.
    chats: HashMap<String, String>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
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
        self.lock().chats.remove(session);
    }

    pub fn chats(&self) -> Vec<String> {
        self.lock().chats.keys().cloned().collect()
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

    pub fn error(&self, code: ErrorCode, message: impl Into<String>, id: Option<String>) {
        metrics::counter!("kefu_errors_total", "code" => code.as_str()).increment(1);
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
    pub fn get_or_create(&self, entry: &AgentEntry, replay_frames: usize) -> Arc<AgentSession> {
        self.map
            .entry(entry.id.clone())
            .or_insert_with(|| {
                Arc::new(AgentSession {
                    entry: entry.clone(),
                    outbox: Outbox::new(replay_frames),
                    state: Mutex::new(State::default()),
                })
            })
            .clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<AgentSession>> {
        self.map.get(id).map(|a| a.clone())
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
