//! The stored shape of one conversation: written by records, read by reports, history and
//! the admin API. It lives with the store, the lowest layer that holds it.

use serde::{Deserialize, Serialize};

use crate::protocol::TranscriptEntry;

/// One conversation as stored. Personal data (visitor id, transcript text, survey comment) is
/// encrypted by the store; the other fields are facts for search and reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub id: String,
    pub visitor: Option<String>,
    pub channel: String,
    pub lang: String,
    /// Skill groups the chat was queued to, in order.
    pub groups: Vec<String>,
    /// Agent ids that served it, in order.
    pub agents: Vec<String>,
    /// Knowledge-base category of the last question (the complaint category).
    pub category: Option<String>,
    pub created_ms: u64,
    /// First hand-off to a human.
    pub handoff_ms: Option<u64>,
    /// First assignment to an agent.
    pub assigned_ms: Option<u64>,
    /// First message an agent wrote themselves (not the automatic greeting).
    pub first_response_ms: Option<u64>,
    /// When the chat ended; `None` for a chat still open when the node stopped.
    pub closed_ms: Option<u64>,
    /// Why it ended (`survey_done`, `customer_closed`, `expired`, …) or `open`.
    pub end_reason: String,
    pub survey_score: Option<u8>,
    pub survey_comment: Option<String>,
    pub complaint_level: u8,
    /// When it first became a complaint.
    pub complaint_ms: Option<u64>,
    /// Whether a survey answer of 4-5 reopened it as a complaint.
    pub escalated: bool,
    pub transfers: u32,
    /// Whether the customer was greeted by the agent (in person or automatically) within
    /// `routing.agent_greeting_s` of the assignment; `None` without an agent.
    pub greeting_sla_met: Option<bool>,
    pub transcript: Vec<TranscriptEntry>,
}
