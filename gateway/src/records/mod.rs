//! Conversation records: what is kept of a chat once it ends (or when the node stops with it
//! still open), the satisfaction survey and its complaint escalation, retention and the
//! supervisor reports (their admin HTTP side is [`crate::admin`]).
//!
//! A record is built from the session in one lock-free snapshot (transcript plus the
//! conversation facts) and handed to the store's bounded batch writer; encryption and the
//! database work happen there, off the connection tasks.

pub mod dates;
pub mod reports;
pub mod retention;
pub mod survey;

pub use crate::store::ConversationRecord;

use serde::Serialize;

use std::sync::Arc;

use crate::journal::Journal;
use crate::session::{
    now_ms, Milestone, Session, SessionState, Sessions, Speaker, TranscriptEntry,
};
use crate::store::Store;
use crate::telemetry::metric;

/// What saving a conversation's record needs, and nothing else: the store (none: records
/// are not kept), the log (a saved chat's log can go) and the two settings a record's
/// figures depend on.
#[derive(Clone)]
pub struct Recorder {
    store: Option<Arc<Store>>,
    journal: Journal,
    /// `handoff.complaint_group`: a hand-off there makes the chat a complaint.
    complaint_group: String,
    /// `routing.agent_greeting_s` in ms: the greeting SLA of a record.
    greeting_ms: u64,
}

impl Recorder {
    pub fn new(
        store: Option<Arc<Store>>,
        journal: Journal,
        settings: &crate::config::Settings,
    ) -> Self {
        Recorder {
            store,
            journal,
            complaint_group: settings.handoff.complaint_group.clone(),
            greeting_ms: settings.routing.agent_greeting_s * 1000,
        }
    }

    /// Snapshot of `session` as a record. `reason` is `None` while the chat is still open.
    pub fn snapshot(&self, session: &Session, reason: Option<&str>) -> ConversationRecord {
        from_session(&self.complaint_group, self.greeting_ms, session, reason)
    }

    /// Hands the record of `session` to the store (if there is one). Waits when the store's
    /// queue is full rather than dropping a conversation.
    pub async fn save(&self, session: &Session, reason: Option<&str>) {
        let Some(store) = &self.store else {
            if reason.is_some() {
                self.journal.forget_later(&session.id);
            }
            return;
        };
        let record = self.snapshot(session, reason);
        if reason.is_some() {
            observe_final(&record);
        }
        store.save(record).await;
        if reason.is_some() {
            // Queued after the record, so the flush before the deletion covers it.
            self.journal.forget_later(&session.id);
        }
    }

    /// On stop: the record of every live chat so far, then the writer's queue written out. A
    /// later final write of the same conversation replaces the open one.
    pub async fn flush_on_shutdown(&self, sessions: &Sessions) {
        let Some(store) = &self.store else {
            return;
        };
        let mut open = 0usize;
        for session in sessions.all() {
            if matches!(session.state(), SessionState::Closed { .. }) {
                continue;
            }
            store.save(self.snapshot(&session, None)).await;
            open += 1;
        }
        match store.flush().await {
            Ok(()) => tracing::info!(open, "conversation store flushed"),
            Err(err) => tracing::error!(error = %err, open, "conversation store flush failed"),
        }
    }
}

fn from_session(
    complaint_group: &str,
    greeting_ms: u64,
    session: &Session,
    reason: Option<&str>,
) -> ConversationRecord {
    let transcript = session.transcript();
    let (category, complaint_level, agents, survey, escalations) = session.peek_conversation(|c| {
        (
            c.bot.last_category.clone(),
            c.complaint_level,
            c.service.agents.clone(),
            c.survey.answer.clone(),
            c.survey.escalations,
        )
    });
    let facts = TranscriptFacts::of(&transcript, complaint_group);
    let greeting_sla_met = facts.assigned_ms.map(|assigned| {
        facts
            .greeted_ms
            .is_some_and(|g| g.saturating_sub(assigned) <= greeting_ms + 1000)
    });
    let (survey_score, survey_comment) = match survey {
        Some((score, comment)) => (Some(score), comment),
        None => (None, None),
    };
    ConversationRecord {
        id: session.id.to_string(),
        visitor: session.visitor.clone(),
        channel: wire_name(session.channel),
        lang: wire_name(session.lang),
        groups: facts.groups,
        agents,
        category,
        created_ms: session.created_ms,
        handoff_ms: facts.handoff_ms,
        assigned_ms: facts.assigned_ms,
        first_response_ms: facts.first_response_ms,
        closed_ms: reason.map(|_| now_ms()),
        end_reason: reason.unwrap_or("open").to_string(),
        survey_score,
        survey_comment,
        complaint_level,
        complaint_ms: facts.complaint_ms.or(if complaint_level > 0 {
            facts.handoff_ms
        } else {
            None
        }),
        escalated: escalations > 0,
        transfers: facts.transfers,
        greeting_sla_met,
        transcript,
    }
}

/// The protocol spelling of an enum (`mini_program`, `zh`).
fn wire_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// What the system lines of a transcript say about the chat's course.
struct TranscriptFacts {
    groups: Vec<String>,
    handoff_ms: Option<u64>,
    assigned_ms: Option<u64>,
    greeted_ms: Option<u64>,
    first_response_ms: Option<u64>,
    complaint_ms: Option<u64>,
    transfers: u32,
}

impl TranscriptFacts {
    fn of(transcript: &[TranscriptEntry], complaint_group: &str) -> Self {
        let mut facts = TranscriptFacts {
            groups: Vec::new(),
            handoff_ms: None,
            assigned_ms: None,
            greeted_ms: None,
            first_response_ms: None,
            complaint_ms: None,
            transfers: 0,
        };
        for entry in transcript {
            match entry.from {
                Speaker::System => {
                    let Some(milestone) = &entry.milestone else {
                        continue;
                    };
                    match milestone {
                        Milestone::HandedOff { .. } => {
                            facts.handoff_ms.get_or_insert(entry.at_ms);
                        }
                        Milestone::Transferred { .. } => facts.transfers += 1,
                        Milestone::Assigned { .. } => {
                            facts.assigned_ms.get_or_insert(entry.at_ms);
                        }
                        Milestone::AgentLeft { .. } | Milestone::ClosedByAgent => {}
                    }
                    if let Some(group) = milestone.group() {
                        if group == complaint_group {
                            facts.complaint_ms.get_or_insert(entry.at_ms);
                        }
                        if facts.groups.last().map(String::as_str) != Some(group) {
                            facts.groups.push(group.to_string());
                        }
                    }
                }
                Speaker::Agent => {
                    if facts.assigned_ms.is_some() {
                        facts.greeted_ms.get_or_insert(entry.at_ms);
                    }
                    // The automatic greeting carries no client id; a message the agent wrote does.
                    if entry.id.is_some() {
                        facts.first_response_ms.get_or_insert(entry.at_ms);
                    }
                }
                _ => {}
            }
        }
        facts
    }
}

/// Supervisor metrics of a chat that ended (counted once, on its final record).
fn observe_final(r: &ConversationRecord) {
    metrics::counter!(metric::CONVERSATIONS_CLOSED_TOTAL, "reason" => r.end_reason.clone())
        .increment(1);
    if let (Some(from), Some(to)) = (r.handoff_ms, r.first_response_ms) {
        metrics::histogram!(metric::FIRST_RESPONSE_SECONDS)
            .record(to.saturating_sub(from) as f64 / 1000.0);
    }
    if let Some(closed) = r.closed_ms {
        metrics::histogram!(metric::TIME_TO_RESOLVE_SECONDS)
            .record(closed.saturating_sub(r.created_ms) as f64 / 1000.0);
    }
    let fcr = if reports::first_contact_resolved(r) {
        "yes"
    } else {
        "no"
    };
    metrics::counter!(metric::FIRST_CONTACT_RESOLUTION_TOTAL, "resolved" => fcr).increment(1);
    if let Some(met) = r.greeting_sla_met {
        let label = if met { "yes" } else { "no" };
        metrics::counter!(metric::GREETING_SLA_TOTAL, "met" => label).increment(1);
    }
}
