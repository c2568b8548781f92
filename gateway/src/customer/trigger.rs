//! Why a session was handed to a human.

/// Why a session was handed to a human (a metric label and the `handoff` frame's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    CustomerRequest,
    Complaint,
    BotNotConfident,
    UnansweredInARow,
    NotHelpful,
    /// A survey answer of 4-5 reopened the chat as a complaint.
    Survey,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::CustomerRequest => "customer_request",
            Trigger::Complaint => "complaint",
            Trigger::BotNotConfident => "bot_not_confident",
            Trigger::UnansweredInARow => "unanswered_in_a_row",
            Trigger::NotHelpful => "not_helpful",
            Trigger::Survey => "survey_escalation",
        }
    }
}
