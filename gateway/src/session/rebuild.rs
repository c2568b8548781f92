//! A session rebuilt from its durable log: on another node after a crash or a deploy, or on
//! the same node after a restart. The state is the fold of the log; the replay is its
//! frames; agent messages the log holds but no frame delivered yet are handed back, so the
//! caller delivers them exactly once.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::{
    token, BotMemory, Conversation, Inner, Service, Session, SessionLimits, SessionLog,
    SessionState, Speaker, SurveyFacts, TranscriptEntry,
};
use crate::journal::{Entry, Facts};
use crate::limits::{FrameBudget, RateLimiter};
use crate::outbox::Outbox;

/// Why a log could not become a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildError {
    /// No opening entry, or the token is not the session's.
    Unknown,
    /// The session had ended.
    Closed,
}

/// An agent message in the log that no frame delivered yet.
#[derive(Debug, Clone)]
pub struct PendingAgentMessage {
    pub agent: String,
    pub name: String,
    pub id: String,
    pub text: String,
    pub rich: crate::protocol::Rich,
}

pub struct Rebuilt {
    pub session: Arc<Session>,
    pub undelivered: Vec<PendingAgentMessage>,
}

/// Folds `entries` into a session. `token` (when given) must be the session's resume token.
pub fn rebuild(
    id: &str,
    entries: Vec<Entry>,
    limits: SessionLimits,
    log: SessionLog,
    token: Option<&str>,
) -> Result<Rebuilt, RebuildError> {
    let mut open = None;
    let mut identity = None;
    let mut state = SessionState::Bot;
    let mut facts = Facts::default();
    let mut transcript: Vec<TranscriptEntry> = Vec::new();
    let mut frames: VecDeque<(u64, String)> = VecDeque::new();
    let mut last_seq = 0;
    let mut inputs = Vec::new();
    for entry in entries {
        match entry {
            Entry::Open {
                visitor,
                channel,
                lang,
                created_ms,
                token,
            } if open.is_none() => open = Some((visitor, channel, lang, created_ms, token)),
            Entry::Open { .. } => {}
            Entry::Identified { identity: i } if identity.is_none() => identity = Some(i),
            Entry::Identified { .. } => {}
            Entry::Frame { seq, text, line } if seq > last_seq => {
                last_seq = seq;
                frames.push_back((seq, text));
                if frames.len() > limits.replay_frames.max(1) {
                    frames.pop_front();
                }
                if let Some(line) = line {
                    push_line(&mut transcript, line);
                }
            }
            Entry::Frame { .. } => {} // a retried append written twice
            Entry::Line { line } => push_line(&mut transcript, line),
            Entry::State { state: s, facts: f } => {
                state = s;
                facts = f;
            }
            Entry::AgentMessage {
                agent,
                name,
                id,
                text,
                rich,
                ..
            } => inputs.push(PendingAgentMessage {
                agent,
                name,
                id,
                text,
                rich,
            }),
        }
    }
    let (visitor, channel, lang, created_ms, token_hex) = open.ok_or(RebuildError::Unknown)?;
    let token_hash = token::hash_from_hex(&token_hex).ok_or(RebuildError::Unknown)?;
    if let Some(t) = token {
        if !token::matches(&token_hash, t) {
            return Err(RebuildError::Unknown);
        }
    }
    if matches!(state, SessionState::Closed { .. }) {
        return Err(RebuildError::Closed);
    }
    if matches!(state, SessionState::Greeting) {
        state = SessionState::Bot;
    }
    let delivered: HashSet<&str> = transcript
        .iter()
        .filter(|l| l.from == Speaker::Agent)
        .filter_map(|l| l.id.as_deref())
        .collect();
    let mut seen_undelivered = HashSet::new();
    let undelivered: Vec<PendingAgentMessage> = inputs
        .into_iter()
        .filter(|m| !delivered.contains(m.id.as_str()) && seen_undelivered.insert(m.id.clone()))
        .collect();
    let mut seen_order = VecDeque::new();
    let mut seen_ids = HashSet::new();
    for line in transcript.iter().filter(|l| l.from == Speaker::Customer) {
        if let Some(id) = &line.id {
            if seen_ids.insert(id.clone()) {
                seen_order.push_back(id.clone());
            }
        }
    }
    while seen_order.len() > limits.dedup_ids {
        if let Some(old) = seen_order.pop_front() {
            seen_ids.remove(&old);
        }
    }
    let outbox = Outbox::with_log(limits.replay_frames, log.journal.is_durable());
    outbox.restore(frames.into_iter().collect(), last_seq);
    let conversation = Conversation {
        bot: BotMemory {
            unanswered: facts.unanswered,
            last_category: facts.last_category,
            offered: facts.offered.into_iter().collect(),
            ..BotMemory::default()
        },
        service: Service {
            agents: facts.agents,
            agent_replied: facts.agent_replied || !matches!(state, SessionState::WithAgent { .. }),
            ..Service::default()
        },
        survey: SurveyFacts {
            answer: facts.survey,
            escalations: facts.escalations,
        },
        complaint_level: facts.complaint_level,
        ..Conversation::default()
    };
    let transcript_bytes = transcript.iter().map(super::line_bytes).sum();
    let session = Session {
        id: id.into(),
        visitor,
        channel,
        lang,
        created_ms,
        identity: identity.map(std::sync::OnceLock::from).unwrap_or_default(),
        token_hash,
        outbox,
        log: Some(log),
        inner: Mutex::new(Inner {
            state,
            seen_ids,
            seen_order,
            transcript,
            transcript_bytes,
            rate: RateLimiter::new(limits.messages_per_second, limits.message_burst),
            frames: FrameBudget::new(limits.frames_per_second, limits.frame_burst),
            typing_sent_at: None,
            limits,
            conversation,
        }),
    };
    Ok(Rebuilt {
        session: Arc::new(session),
        undelivered,
    })
}

/// Adds a transcript line unless it repeats the last one (a retried append written twice).
fn push_line(transcript: &mut Vec<TranscriptEntry>, line: TranscriptEntry) {
    let repeat = transcript.last().is_some_and(|l| {
        l.from == line.from && l.at_ms == line.at_ms && l.id == line.id && l.text == line.text
    });
    if !repeat {
        transcript.push(line);
    }
}
