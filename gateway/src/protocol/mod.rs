//! The wire protocol: JSON text frames tagged by `type` (see the README's "Protocol").
//!
//! Parsing is done in two steps (JSON value, then typed frame) so that a client learns exactly
//! what was wrong: not JSON, an unknown `type`, or a missing or mistyped field.

mod agent;
mod continuity;
mod rich;
mod transcript;

pub use agent::{parse_agent_frame, AgentFrame, AgentServerFrame, CustomerInfo};
pub use continuity::{
    EarlierConversation, EarlierLine, PastConversation, PreviousConversation, TicketItem,
};
pub(crate) use rich::text_or_number;
pub use rich::{AttachmentInfo, Card, OrderItem, Rich, ShopOrder};
pub use transcript::{Milestone, Speaker, TranscriptEntry};

use serde::{Deserialize, Serialize};

/// Where the customer writes from; picks the greeting script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    App,
    H5,
    MiniProgram,
}

impl std::str::FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "web" => Ok(Channel::Web),
            "app" => Ok(Channel::App),
            "h5" => Ok(Channel::H5),
            "mini_program" => Ok(Channel::MiniProgram),
            other => Err(format!(
                "unknown channel `{other}`, expected web, app, h5 or mini_program"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    Zh,
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zh" => Ok(Lang::Zh),
            "en" => Ok(Lang::En),
            other => Err(format!("unknown lang `{other}`, expected zh or en")),
        }
    }
}

/// Frames a customer sends (`Serialize` only for the redacted `Debug`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CustomerFrame {
    /// `text` may be empty when an `attachment` (an id from `POST /upload`) comes with it.
    Message {
        id: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachment: Option<String>,
    },
    /// A product card (the product the shop page says the customer is looking at).
    Card {
        id: String,
        card: Card,
    },
    Typing {},
    RequestHuman {},
    Feedback {
        entry_id: String,
        helpful: bool,
    },
    Pick {
        entry_id: String,
    },
    SurveyAnswer {
        score: u8,
        comment: Option<String>,
    },
    Close {},
    /// A message for a person while nobody is there (after `offline`); becomes a ticket.
    LeaveMessage {
        id: String,
        text: String,
        contact: Option<String>,
    },
}

const CUSTOMER_TYPES: &[&str] = &[
    "message",
    "card",
    "typing",
    "request_human",
    "feedback",
    "pick",
    "survey_answer",
    "close",
    "leave_message",
];

/// A suggestion offered when the bot is not sure enough to answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub entry_id: String,
    pub question: String,
}

/// Frames the server sends to a customer. The `seq` is added by the session when the frame
/// is emitted (see [`Envelope`]), so that the replay log and the wire agree.
#[derive(Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Greeting {
        session_id: String,
        /// The secret a resume must present with `session_id` (see `session::token`).
        resume_token: String,
        text: String,
    },
    Ack {
        id: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    BotAnswer {
        reply_to: Option<String>,
        entry_id: String,
        text: String,
        score: f32,
        confidence: f32,
        /// Follow-up questions of the entry, shown as buttons that send the question.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        quick_replies: Vec<String>,
    },
    Suggestions {
        reply_to: Option<String>,
        items: Vec<Suggestion>,
        /// What the bot says with them (set when it asks to rephrase).
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// `clarify`: the bot did not understand and offers the main topics (absent: these
        /// are the closest entries to the question).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Handoff {
        group: String,
        reason: String,
        /// Complaint level (1 ordinary, 2 serious, 3 very serious); absent when not a complaint.
        #[serde(skip_serializing_if = "Option::is_none")]
        level: Option<u8>,
    },
    Queued {
        position: usize,
        estimated_wait_s: u64,
        /// No agent of the group is ready right now (as of the last routing tick): the wait
        /// estimate is a guess, and the widget can say so instead of promising a time.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        no_agent_available: bool,
    },
    AgentJoined {
        name: String,
    },
    /// The agent left (disconnected past the grace period); the customer is back at the
    /// front of the queue.
    AgentLeft {
        reason: String,
    },
    Message {
        id: String,
        from: String,
        name: String,
        text: String,
        auto: bool,
        /// An attachment or a card, when the message carries one.
        #[serde(flatten)]
        rich: Rich,
        /// A reply to a message left while nobody was there (a ticket), delivered later.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        offline: bool,
    },
    /// An identified customer's earlier conversations (newest first), for the widget to show
    /// above the new one; personal data masked.
    Earlier {
        conversations: Vec<EarlierConversation>,
    },
    /// Nobody of the group can take the chat (outside its hours, or no agent online): the
    /// bot keeps answering and the customer may `leave_message`.
    Offline {
        /// `outside_hours` or `no_agent`.
        reason: String,
        /// When the group opens next (ms since the epoch); null when not known.
        next_open_ms: Option<u64>,
    },
    Typing {},
    Survey {},
    Closed {
        reason: String,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

crate::redacted_debug!(CustomerFrame, ServerFrame);

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            id: None,
        }
    }
}

pub use crate::outbox::Envelope;

/// `text` with personal data masked.
pub fn mask_owned(text: String) -> String {
    continuity::mask(text)
}

/// Stable error codes; clients may switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    BadField,
    BinaryNotSupported,
    TooLong,
    RateLimited,
    SessionExpired,
    SessionUnknown,
    NotInState,
    ShuttingDown,
    Unauthorized,
    NotYourChat,
    AgentUnavailable,
    TranscriptFull,
    UnknownGroup,
    /// An agent message broke a `[leaks]` rule and was not delivered.
    BlockedContent,
    /// The agent or operator is enrolled for two-step sign-in and gave no code.
    OtpRequired,
    /// A wrong, expired or already used code.
    BadOtp,
    /// The `identity` token did not verify (signature, expiry, form); the chat is anonymous.
    BadIdentity,
    /// Another agent claimed the ticket first (or it is not open).
    TicketTaken,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadField => "bad_field",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::TooLong => "too_long",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::SessionUnknown => "session_unknown",
            ErrorCode::NotInState => "not_in_state",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotYourChat => "not_your_chat",
            ErrorCode::AgentUnavailable => "agent_unavailable",
            ErrorCode::TranscriptFull => "transcript_full",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::BlockedContent => "blocked_content",
            ErrorCode::OtpRequired => "otp_required",
            ErrorCode::BadOtp => "bad_otp",
            ErrorCode::BadIdentity => "bad_identity",
            ErrorCode::TicketTaken => "ticket_taken",
            ErrorCode::Internal => "internal",
        }
    }
}

/// Why a client frame was refused; becomes an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

/// Parses a client text frame. Generic over the frame enum so the agent socket shares it.
pub fn parse_frame<T: serde::de::DeserializeOwned>(
    text: &str,
    known_types: &[&str],
) -> Result<T, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FrameError {
        code: ErrorCode::BadJson,
        message: format!("frame is not valid JSON: {e}"),
    })?;
    let kind = match value.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(_) => return Err(bad_field("`type` must be a string")),
        None if value.is_object() => return Err(bad_field("missing field `type`")),
        None => return Err(bad_field("a frame must be a JSON object")),
    };
    if !known_types.contains(&kind.as_str()) {
        return Err(FrameError {
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown frame type `{}`, expected one of: {}",
                clip(&kind, 64),
                known_types.join(", ")
            ),
        });
    }
    serde_json::from_value(value).map_err(|e| {
        bad_field(format!(
            "bad `{kind}` frame: {}",
            clip_middle(&e.to_string())
        ))
    })
}

pub fn parse_customer_frame(text: &str) -> Result<CustomerFrame, FrameError> {
    let frame: CustomerFrame = parse_frame(text, CUSTOMER_TYPES)?;
    match &frame {
        CustomerFrame::Message {
            id,
            text: body,
            attachment,
        } => {
            cap("id", id, MAX_ID_BYTES)?;
            cap(
                "attachment",
                attachment.as_deref().unwrap_or(""),
                MAX_ID_BYTES,
            )?;
            if body.is_empty() && attachment.is_none() {
                text_required(text)?;
            }
        }
        CustomerFrame::Card { id, card } => {
            cap("id", id, MAX_ID_BYTES)?;
            card.validate()?;
        }
        CustomerFrame::LeaveMessage { id, contact, .. } => {
            cap("id", id, MAX_ID_BYTES)?;
            cap("contact", contact.as_deref().unwrap_or(""), 256)?;
        }
        CustomerFrame::Feedback { entry_id, .. } | CustomerFrame::Pick { entry_id } => {
            cap("entry_id", entry_id, MAX_ID_BYTES)?
        }
        _ => {}
    }
    Ok(frame)
}

/// A `message` without an attachment must have its `text` (empty or not: the flow says
/// what an empty one is); its absence is reported as before attachments existed.
pub(crate) fn text_required(raw: &str) -> Result<(), FrameError> {
    let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    if value.get("text").is_none() {
        return Err(bad_field("bad `message` frame: missing field `text`"));
    }
    Ok(())
}

/// Longest id a client may send (message ids, session ids, entry ids, groups, agent ids):
/// anything longer is not one of ours, and must not be stored, echoed or looked up.
pub const MAX_ID_BYTES: usize = 128;

/// Refuses a string field longer than `max` bytes with `too_long`, naming the field.
pub(crate) fn cap(field: &str, value: &str, max: usize) -> Result<(), FrameError> {
    if value.len() > max {
        return Err(FrameError {
            code: ErrorCode::TooLong,
            message: format!("`{field}` is {} bytes, the limit is {max}", value.len()),
        });
    }
    Ok(())
}

/// At most `max` characters of client input, for echoing it in an error message.
pub(crate) fn clip(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

/// A serde error message with its middle cut out when it is long. serde quotes the offending
/// input (`invalid type: string "…"`, ``unknown field `…` ``) and ends with what it expected,
/// so the start and the end are what a client needs, and the gateway must not reflect a large
/// value or field name back.
fn clip_middle(message: &str) -> String {
    const HEAD: usize = 80;
    const TAIL: usize = 64;
    let chars = message.chars().count();
    if chars <= HEAD + TAIL + 1 {
        return message.to_string();
    }
    let at = |n: usize| {
        message
            .char_indices()
            .nth(n)
            .map_or(message.len(), |(at, _)| at)
    };
    format!("{}…{}", &message[..at(HEAD)], &message[at(chars - TAIL)..])
}

fn bad_field(message: impl Into<String>) -> FrameError {
    FrameError {
        code: ErrorCode::BadField,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_frames() {
        assert_eq!(
            parse_customer_frame(r#"{"type":"message","id":"a","text":"你好"}"#).unwrap(),
            CustomerFrame::Message {
                id: "a".into(),
                text: "你好".into(),
                attachment: None,
            }
        );
        assert_eq!(
            parse_customer_frame(r#"{"type":"request_human"}"#).unwrap(),
            CustomerFrame::RequestHuman {}
        );
        assert_eq!(
            parse_customer_frame(r#"{"type":"survey_answer","score":2}"#).unwrap(),
            CustomerFrame::SurveyAnswer {
                score: 2,
                comment: None
            }
        );
    }

    #[test]
    fn classifies_bad_frames() {
        let code = |t: &str| parse_customer_frame(t).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"message","id":"a"}"#), ErrorCode::BadField);
        assert_eq!(
            code(r#"{"type":"message","id":1,"text":"x"}"#),
            ErrorCode::BadField
        );
        assert_eq!(code(r#"{"id":"a"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"[1,2]"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadField);
        let err = parse_customer_frame(r#"{"type":"message","id":"a"}"#).unwrap_err();
        assert!(err.message.contains("text"), "{}", err.message);
    }

    #[test]
    fn bad_field_errors_do_not_echo_large_input() {
        // Found by the `customer_frame` fuzz target: serde quotes a mistyped value or an
        // unknown field name whole, so a 16 KiB frame came back as a 16 KiB error.
        let long = "长".repeat(5000);
        for frame in [
            format!(r#"{{"type":"survey_answer","score":"{long}"}}"#),
            format!(r#"{{"type":"message","id":"a","text":"x","{long}":1}}"#),
        ] {
            let err = parse_customer_frame(&frame).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadField);
            assert!(err.message.chars().count() <= 200, "{}", err.message);
            assert!(err.message.starts_with("bad `"), "{}", err.message);
        }
        let err = parse_customer_frame(&format!(r#"{{"type":"survey_answer","score":"{long}"}}"#))
            .unwrap_err();
        assert!(err.message.ends_with("expected u8"), "{}", err.message);
    }

    #[test]
    fn envelope_carries_seq_and_type() {
        let frame = ServerFrame::Ack {
            id: "c1".into(),
            duplicate: false,
        };
        let json: serde_json::Value = serde_json::from_str(
            &Envelope {
                seq: 7,
                frame: &frame,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(json, serde_json::json!({"type":"ack","id":"c1","seq":7}));
    }
}
