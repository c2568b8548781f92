//! What a conversation log holds: one [`Entry`] per event, in the order they happened.
//!
//! The session's state is a fold of these (see `session::rebuild`); the customer's replay is
//! its `Frame` entries; the stored record is derived from the rebuilt session.

use serde::{Deserialize, Serialize};

use crate::protocol::{Channel, Lang};
use crate::session::{SessionState, TranscriptEntry};

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Entry {
    /// The session began: who, where, and the hash of its resume token (hex).
    Open {
        visitor: Option<String>,
        channel: Channel,
        lang: Lang,
        created_ms: u64,
        token: String,
    },
    /// The shop vouched for the customer (a verified identity token); at most one per log.
    Identified { identity: crate::identity::Identity },
    /// A numbered frame the customer was (or is about to be) sent, as written on the wire,
    /// with the transcript line it delivers, if any: one entry, so that a crash can never
    /// keep the line (which marks an agent's message delivered) without the frame.
    Frame {
        seq: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<TranscriptEntry>,
    },
    /// A transcript line (customer, bot, agent or system).
    Line { line: TranscriptEntry },
    /// The session's state and the conversation facts that outlive a node.
    State { state: SessionState, facts: Facts },
    /// An agent's message, written by the agent's node before the agent's `ack`: the customer's
    /// node (whichever it is by then) delivers it once, matched by `id`.
    AgentMessage {
        agent: String,
        name: String,
        id: String,
        text: String,
        at_ms: u64,
        /// An attachment (its facts, looked up on the agent's node) or a card.
        #[serde(flatten, default)]
        rich: crate::protocol::Rich,
    },
}

crate::redacted_debug!(Entry);

/// The parts of the conversation a rebuilt session needs (the rest is timers and caches).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    #[serde(default)]
    pub unanswered: u32,
    #[serde(default)]
    pub last_category: Option<String>,
    #[serde(default)]
    pub offered: Vec<String>,
    #[serde(default)]
    pub complaint_level: u8,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub survey: Option<(u8, Option<String>)>,
    #[serde(default)]
    pub escalations: u32,
    #[serde(default)]
    pub agent_replied: bool,
}

impl Entry {
    pub fn to_json(&self) -> String {
        // Plain structs and strings: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Option<Entry> {
        serde_json::from_str(text).ok()
    }
}
