//! Frame parts of customer continuity (issue #17): a returning customer's earlier
//! conversations as an agent sees them, and left messages (tickets). Every text here comes
//! from a customer or agent and is masked by [`super::AgentServerFrame::masked`] before it
//! reaches an agent.

use serde::{Deserialize, Serialize};

use super::TranscriptEntry;

/// One earlier conversation of the customer, in brief (`customer.previous` of `assigned`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousConversation {
    pub session: String,
    pub channel: String,
    pub started_ms: u64,
    pub closed_ms: Option<u64>,
    /// The first thing the customer wrote, masked.
    pub first_customer_message: Option<String>,
    /// The last thing an agent wrote, masked.
    pub last_agent_message: Option<String>,
    pub survey_score: Option<u8>,
    pub complaint_level: u8,
    /// Names of the agents who served it, in order.
    pub agents: Vec<String>,
}

/// One earlier conversation in full (`history`), masked.
#[derive(Clone, Serialize, Deserialize)]
pub struct PastConversation {
    pub session: String,
    pub channel: String,
    pub started_ms: u64,
    pub closed_ms: Option<u64>,
    pub survey_score: Option<u8>,
    pub complaint_level: u8,
    pub agents: Vec<String>,
    pub transcript: Vec<TranscriptEntry>,
}

/// One earlier conversation as the customer sees it again (`earlier`): what they, the bot
/// and the agents said, masked.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierConversation {
    pub session: String,
    pub channel: String,
    pub started_ms: u64,
    pub lines: Vec<EarlierLine>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierLine {
    /// `customer`, `bot` or `agent`.
    pub from: super::Speaker,
    pub text: String,
    pub at_ms: u64,
}

/// A left message as agents see it (`tickets`), masked.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketItem {
    pub id: String,
    pub group: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub status: String,
    pub created_ms: u64,
    /// Whether the customer is an identified one (a reply reaches them on their next chat).
    pub identified: bool,
}

crate::redacted_debug!(
    PreviousConversation,
    PastConversation,
    TicketItem,
    EarlierConversation,
    EarlierLine
);

/// `text` with personal data masked (owned).
pub(crate) fn mask(text: String) -> String {
    match crate::mask::mask_text(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(m) => m,
    }
}

impl PreviousConversation {
    pub(super) fn masked(mut self) -> Self {
        self.first_customer_message = self.first_customer_message.map(mask);
        self.last_agent_message = self.last_agent_message.map(mask);
        self
    }
}

impl PastConversation {
    pub(super) fn masked(mut self) -> Self {
        for line in &mut self.transcript {
            line.text = mask(std::mem::take(&mut line.text));
        }
        self
    }
}

impl TicketItem {
    pub(super) fn masked(mut self) -> Self {
        self.text = mask(self.text);
        self.contact = self.contact.map(mask);
        self
    }
}
