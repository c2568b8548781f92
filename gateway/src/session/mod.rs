//! A customer session: its lifecycle state, its numbered outbound frames, and what was said.
//!
//! A session outlives its socket: its frames go through an [`Outbox`] (numbered, replayable,
//! bounded), so a customer who reconnects within the grace period resumes where they were.

mod conversation;
mod intake;
mod rebuild;
mod registry;
pub mod token;
mod transitions;

pub use rebuild::{rebuild, PendingAgentMessage, RebuildError, Rebuilt};

pub use conversation::{BotMemory, Conversation, PastFacts, Service, SurveyFacts};
pub use registry::{Fresh, Resolved, Sessions};

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::journal::{Done, Entry, Facts, Fence, Journal, JournalError};
use crate::limits::{FrameBudget, FrameVerdict, RateLimiter};
pub use crate::outbox::Attachment;
use crate::outbox::Outbox;
use crate::protocol::{Channel, ErrorCode, Lang, ServerFrame};
pub use crate::protocol::{Milestone, Speaker, TranscriptEntry};
use crate::telemetry::metric;

/// Where a session is in its life. The bot, routing and survey extend the middle states.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "s", rename_all = "snake_case")]
pub enum SessionState {
    /// Created; the greeting is being written.
    Greeting,
    /// The bot answers.
    Bot,
    /// Waiting for a human of `group`.
    Queued { group: String },
    /// Served by an agent, whose socket is on `agent_node`.
    WithAgent {
        agent: String,
        group: String,
        agent_node: String,
    },
    /// The chat ended; waiting for the satisfaction survey.
    Survey,
    /// Over; the session is about to be forgotten.
    Closed { reason: String },
}

/// How a customer message was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored now.
    New,
    /// Stored before (a re-send after a reconnect); not stored again.
    Duplicate,
    /// Over the session's rate; not stored.
    RateLimited,
    /// The transcript is at its cap (entries or bytes); not stored.
    TranscriptFull,
}

/// Entry ids the bot offered (answers and suggestions) remembered per session, newest last:
/// `feedback` and `pick` must name one of them.
const OFFERED_ENTRIES: usize = 64;

/// Per-session limits, copied from the settings at creation.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub replay_frames: usize,
    pub dedup_ids: usize,
    pub messages_per_second: f64,
    pub message_burst: u32,
    /// Budget of every inbound frame (see [`FrameBudget`]).
    pub frames_per_second: f64,
    pub frame_burst: u32,
    /// Caps of the transcript: lines, and bytes of their text.
    pub transcript_entries: usize,
    pub transcript_bytes: usize,
}

pub struct Session {
    pub id: Arc<str>,
    pub visitor: Option<String>,
    pub channel: Channel,
    pub lang: Lang,
    /// When the session started (ms since the epoch), for the stored record.
    pub created_ms: u64,
    /// The verified customer behind this chat, if the shop vouched for one (issue #17).
    identity: OnceLock<crate::identity::Identity>,
    /// Hash of the `resume_token` handed out in the greeting; the token itself is never kept.
    token_hash: [u8; 32],
    outbox: Outbox,
    /// The durable log and this node's fence on it (`None`: nothing is durable).
    log: Option<SessionLog>,
    inner: Mutex<Inner>,
}

/// A session's place in the durable log.
#[derive(Clone)]
pub struct SessionLog {
    pub journal: Journal,
    /// This node's lease epoch.
    pub epoch: u64,
}

struct Inner {
    state: SessionState,
    seen_ids: HashSet<String>,
    seen_order: VecDeque<String>,
    transcript: Vec<TranscriptEntry>,
    /// Bytes of text in `transcript` (capped by `limits.transcript_bytes`).
    transcript_bytes: usize,
    rate: RateLimiter,
    frames: FrameBudget,
    /// When a customer `typing` was last forwarded to the agent (at most one a second).
    typing_sent_at: Option<Instant>,
    limits: SessionLimits,
    conversation: Conversation,
}

/// Typing notices forwarded per chat and direction at most this often.
pub const TYPING_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a line costs against the transcript's byte cap: its text, and a card's or an
/// attachment's words (the bytes of a file are not in the transcript).
pub(crate) fn line_bytes(line: &TranscriptEntry) -> usize {
    let rich = &line.rich;
    line.text.len()
        + rich.card.as_ref().map_or(0, |c| c.summary().len())
        + rich
            .attachment
            .as_ref()
            .map_or(0, |a| a.id.len() + a.name.len())
}

/// Counts an error frame sent to a customer, by code.
pub fn count_error(code: ErrorCode) {
    metrics::counter!(metric::ERRORS_TOTAL, "code" => code.as_str()).increment(1);
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Inner {
    /// Whether one more line of `text` fits under the transcript caps.
    fn has_room(&self, text: &str) -> bool {
        self.transcript.len() < self.limits.transcript_entries
            && self.transcript_bytes + text.len() <= self.limits.transcript_bytes
    }

    fn push(&mut self, entry: TranscriptEntry) {
        self.transcript_bytes += line_bytes(&entry);
        self.transcript.push(entry);
    }
}

impl Session {
    /// A session whose events go to the durable `log` (none: nothing durable).
    #[allow(clippy::too_many_arguments)]
    pub fn with_log(
        id: Arc<str>,
        visitor: Option<String>,
        channel: Channel,
        lang: Lang,
        limits: SessionLimits,
        token_hash: [u8; 32],
        log: Option<SessionLog>,
        created_ms: u64,
    ) -> Self {
        let journaled = log.as_ref().is_some_and(|l| l.journal.is_durable());
        Self {
            id,
            visitor,
            channel,
            lang,
            created_ms,
            identity: OnceLock::new(),
            token_hash,
            outbox: Outbox::with_log(limits.replay_frames, journaled),
            log,
            inner: Mutex::new(Inner {
                state: SessionState::Greeting,
                seen_ids: HashSet::new(),
                seen_order: VecDeque::new(),
                transcript: Vec::new(),
                transcript_bytes: 0,
                rate: RateLimiter::new(limits.messages_per_second, limits.message_burst),
                frames: FrameBudget::new(limits.frames_per_second, limits.frame_burst),
                typing_sent_at: None,
                limits,
                conversation: Conversation::default(),
            }),
        }
    }

    /// Marks the chat as the verified customer's (once; a later call changes nothing) and
    /// logs it, so a rebuilt session knows its customer too.
    pub fn identify(&self, identity: crate::identity::Identity) {
        if self.identity.set(identity.clone()).is_ok() {
            if let Some(log) = &self.log {
                let entry = Entry::Identified { identity };
                log.journal
                    .append(&self.id, Fence::Owner(log.epoch), &entry, None);
            }
        }
    }

    /// The verified customer, if any (never a `visitor` id).
    pub fn identity(&self) -> Option<&crate::identity::Identity> {
        self.identity.get()
    }

    /// Whether `token` is this session's resume token (compared in constant time).
    pub fn token_matches(&self, token: &str) -> bool {
        crate::session::token::matches(&self.token_hash, token)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> SessionState {
        self.lock().state.clone()
    }

    /// Looks at the state without cloning it: the once-a-second scans visit every session of
    /// the node, and cloning each state (three strings with an agent) cost an allocation
    /// storm per tick at tens of thousands of sessions.
    pub fn peek_state<R>(&self, f: impl FnOnce(&SessionState) -> R) -> R {
        f(&self.lock().state)
    }

    /// The state and the service's bookkeeping under one lock (for the SLA scan).
    pub fn with_state_and_service<R>(&self, f: impl FnOnce(&SessionState, &mut Service) -> R) -> R {
        let mut inner = self.lock();
        let inner = &mut *inner;
        f(&inner.state, &mut inner.conversation.service)
    }

    /// Changes the state (and the facts that go with it) in one step, logged once; only the
    /// transitions in [`transitions`] call it.
    fn transition(&self, change: impl FnOnce(&mut SessionState, &mut Conversation)) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        change(&mut inner.state, &mut inner.conversation);
        self.log_state(inner);
    }

    /// Writes the state and the lasting facts of the conversation to the log (after a change
    /// made through one of the conversation's accessors that must survive the node).
    pub fn checkpoint(&self) {
        let inner = self.lock();
        self.log_state(&inner);
    }

    fn log_state(&self, inner: &Inner) {
        if let Some(log) = &self.log {
            let c = &inner.conversation;
            let facts = Facts {
                unanswered: c.bot.unanswered,
                last_category: c.bot.last_category.clone(),
                offered: c.bot.offered.iter().cloned().collect(),
                complaint_level: c.complaint_level,
                agents: c.service.agents.clone(),
                survey: c.survey.answer.clone(),
                escalations: c.survey.escalations,
                agent_replied: c.service.agent_replied,
            };
            let entry = Entry::State {
                state: inner.state.clone(),
                facts,
            };
            log.journal
                .append(&self.id, Fence::Owner(log.epoch), &entry, None);
        }
    }

    fn log_line(&self, line: &TranscriptEntry) {
        if let Some(log) = &self.log {
            let entry = Entry::Line { line: line.clone() };
            log.journal
                .append(&self.id, Fence::Owner(log.epoch), &entry, None);
        }
    }

    /// Tells the customer what was wrong (counted by code); `id` names the frame it answers.
    pub fn error(&self, code: ErrorCode, message: impl Into<String>, id: Option<String>) {
        count_error(code);
        self.emit(&ServerFrame::Error {
            code,
            message: message.into(),
            id,
        });
    }

    /// Numbers `frame`, logs it for replay and pushes it to the attached connection (once
    /// the durable log has it).
    pub fn emit(&self, frame: &ServerFrame) -> u64 {
        let Some(log) = &self.log else {
            return self.outbox.emit(frame);
        };
        self.outbox.emit_with(frame, |seq, text| {
            let entry = Entry::Frame {
                seq,
                text: text.to_string(),
                line: None,
            };
            let done = Done::Frame(self.outbox.clone(), seq);
            log.journal
                .append(&self.id, Fence::Owner(log.epoch), &entry, Some(done));
        })
    }

    /// Records a transcript line and emits the frame that delivers it, as one log entry:
    /// after a crash either both are there or neither (an agent's message the line marks
    /// delivered is then never left unsent, nor sent twice).
    pub fn emit_recorded(
        &self,
        frame: &ServerFrame,
        from: Speaker,
        text: &str,
        id: Option<String>,
    ) -> u64 {
        self.emit_recorded_rich(frame, from, text, id, crate::protocol::Rich::default())
    }

    /// As [`Self::emit_recorded`], the line with an attachment or a card.
    pub fn emit_recorded_rich(
        &self,
        frame: &ServerFrame,
        from: Speaker,
        text: &str,
        id: Option<String>,
        rich: crate::protocol::Rich,
    ) -> u64 {
        let mut inner = self.lock();
        let line = inner
            .has_room(text)
            .then(|| TranscriptEntry::said(from, text, now_ms(), id, rich));
        if line.is_none() {
            metrics::counter!(metric::TRANSCRIPT_FULL_TOTAL).increment(1);
        }
        let seq = match &self.log {
            None => self.outbox.emit(frame),
            Some(log) => self.outbox.emit_with(frame, |seq, wire| {
                let entry = Entry::Frame {
                    seq,
                    text: wire.to_string(),
                    line: line.clone(),
                };
                let done = Done::Frame(self.outbox.clone(), seq);
                log.journal
                    .append(&self.id, Fence::Owner(log.epoch), &entry, Some(done));
            }),
        };
        if let Some(line) = line {
            inner.push(line);
        }
        seq
    }

    /// Resolves once everything this session appended so far is durable; `Fenced` when
    /// another node owns the session now.
    pub async fn sync(&self) -> Result<(), JournalError> {
        if let Some(log) = &self.log {
            log.journal
                .barrier(&self.id, Fence::Owner(log.epoch))
                .await?;
        }
        if self.outbox.is_fenced() {
            return Err(JournalError::Fenced);
        }
        Ok(())
    }

    /// Another node owns this session (its log said so): it must be forgotten here.
    pub fn is_fenced(&self) -> bool {
        self.outbox.is_fenced()
    }

    /// The session's durable log, if any.
    pub fn log(&self) -> Option<&SessionLog> {
        self.log.as_ref()
    }

    /// The last frame a client can have seen.
    pub fn durable_seq(&self) -> u64 {
        self.outbox.durable_seq()
    }

    /// Sends `frame` to the live connection only, unnumbered (`seq` 0) and not kept for
    /// replay; dropped if the client is behind. For `typing`: worthless a second later, so it
    /// must neither crowd the replay log nor get a slow client kicked.
    pub fn emit_ephemeral(&self, frame: &ServerFrame) {
        self.outbox.emit_ephemeral(frame)
    }

    /// Counts one inbound frame against the session's frame budget.
    pub fn take_frame(&self) -> FrameVerdict {
        self.lock().frames.take(Instant::now())
    }

    /// Whether a customer `typing` may go to the agent now (one a second at most).
    pub fn typing_due(&self) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        let due = inner
            .typing_sent_at
            .is_none_or(|at| now.saturating_duration_since(at) >= TYPING_EVERY);
        if due {
            inner.typing_sent_at = Some(now);
        }
        due
    }

    /// Attaches connection `conn` (kicking any other); returns the frames after `last_seq`.
    pub fn attach(&self, conn: u64, last_seq: u64, queue: usize) -> Attachment {
        self.outbox.attach(conn, last_seq, queue)
    }

    /// Detaches `conn` if it is still the attached one; the grace period starts now.
    pub fn detach(&self, conn: u64) {
        self.outbox.detach(conn)
    }

    /// When the socket went away, if it is away.
    pub fn detached_since(&self) -> Option<Instant> {
        self.outbox.detached_since()
    }

    /// Highest `seq` handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.outbox.last_seq()
    }

    /// Stores a customer message once per client `id`, within the session's rate.
    pub fn accept_customer_message(&self, id: &str, text: &str) -> Accepted {
        self.accept_customer_rich(id, text, crate::protocol::Rich::default())
    }

    /// As [`Self::accept_customer_message`], with an attachment or a card.
    pub fn accept_customer_rich(
        &self,
        id: &str,
        text: &str,
        rich: crate::protocol::Rich,
    ) -> Accepted {
        let mut inner = self.lock();
        if inner.seen_ids.contains(id) {
            return Accepted::Duplicate;
        }
        if !inner.has_room(text) {
            metrics::counter!(metric::TRANSCRIPT_FULL_TOTAL).increment(1);
            return Accepted::TranscriptFull;
        }
        if !inner.rate.try_take(Instant::now()) {
            return Accepted::RateLimited;
        }
        inner.seen_ids.insert(id.to_string());
        inner.seen_order.push_back(id.to_string());
        if inner.seen_order.len() > inner.limits.dedup_ids {
            if let Some(old) = inner.seen_order.pop_front() {
                inner.seen_ids.remove(&old);
            }
        }
        let line = TranscriptEntry::said(
            Speaker::Customer,
            text,
            now_ms(),
            Some(id.to_string()),
            rich,
        );
        self.log_line(&line);
        inner.push(line);
        Accepted::New
    }

    /// Adds a line said by someone other than the customer (bot, agent, system). At the
    /// transcript's cap the line is not kept (what was sent still reaches the client).
    pub fn record(&self, from: Speaker, text: &str, id: Option<String>) {
        self.record_rich(from, text, id, crate::protocol::Rich::default())
    }

    /// As [`Self::record`], with an attachment or a card.
    pub fn record_rich(
        &self,
        from: Speaker,
        text: &str,
        id: Option<String>,
        rich: crate::protocol::Rich,
    ) {
        self.keep_line(TranscriptEntry::said(from, text, now_ms(), id, rich));
    }

    /// Records a milestone of the chat as its system line.
    pub fn mark(&self, milestone: Milestone) {
        self.keep_line(TranscriptEntry::marking(milestone, now_ms()));
    }

    /// Keeps `line` in the transcript and the durable log (if the transcript has room).
    fn keep_line(&self, line: TranscriptEntry) {
        // Under the lock: lines reach the log in the transcript's order.
        let mut inner = self.lock();
        if !inner.has_room(&line.text) {
            metrics::counter!(metric::TRANSCRIPT_FULL_TOTAL).increment(1);
            return;
        }
        self.log_line(&line);
        inner.push(line);
    }

    /// Remembers entry ids the bot just offered (an answer or suggestions).
    pub fn offer<'a>(&self, entry_ids: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        let offered = &mut inner.conversation.bot.offered;
        for id in entry_ids {
            if !offered.iter().any(|o| o == id) {
                offered.push_back(id.to_string());
                if offered.len() > OFFERED_ENTRIES {
                    offered.pop_front();
                }
            }
        }
    }

    /// Whether the bot offered `entry_id` in this session.
    pub fn was_offered(&self, entry_id: &str) -> bool {
        self.lock()
            .conversation
            .bot
            .offered
            .iter()
            .any(|o| o == entry_id)
    }

    /// Reads or updates what the bot remembers.
    /// Whether a line with this `id` said by `from` is in the transcript (an agent message
    /// delivered before a rebuild).
    pub fn has_line(&self, from: Speaker, id: &str) -> bool {
        self.lock()
            .transcript
            .iter()
            .any(|l| l.from == from && l.id.as_deref() == Some(id))
    }

    /// Everything said so far.
    pub fn transcript(&self) -> Vec<TranscriptEntry> {
        self.lock().transcript.clone()
    }
}

#[cfg(test)]
mod tests;
