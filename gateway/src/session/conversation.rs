//! What a session remembers besides its state and transcript, split by the module that owns
//! each part: the bot's memory (customer flow, knowledge base), the service (routing: queue
//! positions, the agent's first-reply clock), the survey (records) and the customer's past
//! (continuity, tickets). Each owner changes only its part, through its own accessor on
//! [`Session`]; the complaint level is the one fact several owners share, so it has methods.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::Session;

/// The whole of it, as a record or a rebuild reads it.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub bot: BotMemory,
    pub service: Service,
    pub survey: SurveyFacts,
    pub past: PastFacts,
    /// Highest complaint level heard (0: none): raised by the bot and by a 4-5 survey,
    /// read by routing as the queue priority.
    pub complaint_level: u8,
}

/// What the bot remembers to decide when to hand off, and where (customer flow, kb).
#[derive(Debug, Clone, Default)]
pub struct BotMemory {
    /// Questions in a row the bot could not answer.
    pub unanswered: u32,
    /// Knowledge-base category of the last question's best match (picks the skill group).
    pub last_category: Option<String>,
    /// Entry ids offered in the last suggestions.
    pub suggested: Vec<String>,
    /// Entry ids the bot offered in this session (bounded, oldest forgotten first).
    pub offered: VecDeque<String>,
}

/// The human service of the chat (routing).
#[derive(Debug, Clone, Default)]
pub struct Service {
    /// Queue position last told to the customer, and when.
    pub last_position: Option<usize>,
    pub position_told_at: Option<Instant>,
    /// When the current agent was assigned.
    pub assigned_at: Option<Instant>,
    /// Whether the current agent has written (or the auto greeting went out for them).
    pub agent_replied: bool,
    /// The oldest customer message the agent has not answered yet.
    pub awaiting_since: Option<Instant>,
    /// Whether `sla_warning` went out for the current wait.
    pub sla_warned: bool,
    /// Agent ids that served this conversation, in order (for the stored record).
    pub agents: Vec<String>,
}

/// The satisfaction survey (records).
#[derive(Debug, Clone, Default)]
pub struct SurveyFacts {
    /// The last answer: score 1-5 and comment.
    pub answer: Option<(u8, Option<String>)>,
    /// Times an answer of 4-5 reopened the chat as a complaint.
    pub escalations: u32,
}

/// The customer's earlier conversations and left messages (continuity, tickets).
#[derive(Debug, Clone, Default)]
pub struct PastFacts {
    /// The identified customer's earlier conversations, read once for the agent.
    pub previous: Option<Arc<Vec<crate::protocol::PreviousConversation>>>,
    /// The group that was offline when the customer asked for it (their left message goes
    /// there).
    pub offline_group: Option<String>,
    /// The agent id of the customer's last earlier conversation and when it ended.
    pub last_agent: Option<(String, u64)>,
}

impl Session {
    /// The bot's memory, for the customer flow and the knowledge base.
    pub fn with_bot<R>(&self, f: impl FnOnce(&mut BotMemory) -> R) -> R {
        f(&mut self.lock().conversation.bot)
    }

    /// The service's bookkeeping, for routing.
    pub fn with_service<R>(&self, f: impl FnOnce(&mut Service) -> R) -> R {
        f(&mut self.lock().conversation.service)
    }

    /// The survey's answer and the complaint level it may raise, for records.
    pub fn with_survey<R>(&self, f: impl FnOnce(&mut SurveyFacts, &mut u8) -> R) -> R {
        let mut inner = self.lock();
        let c = &mut inner.conversation;
        f(&mut c.survey, &mut c.complaint_level)
    }

    /// The customer's past, for continuity and tickets.
    pub fn with_past<R>(&self, f: impl FnOnce(&mut PastFacts) -> R) -> R {
        f(&mut self.lock().conversation.past)
    }

    /// Reads the whole conversation (a record, a report).
    pub fn peek_conversation<R>(&self, f: impl FnOnce(&Conversation) -> R) -> R {
        f(&self.lock().conversation)
    }

    pub fn complaint_level(&self) -> u8 {
        self.lock().conversation.complaint_level
    }

    /// Raises the complaint level to `level` (it never goes down).
    pub fn raise_complaint(&self, level: u8) {
        let mut inner = self.lock();
        let c = &mut inner.conversation;
        c.complaint_level = c.complaint_level.max(level);
    }
}
