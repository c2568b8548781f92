//! Frames of the agent socket (`GET /ws/agent`).

use serde::{Deserialize, Serialize};

use super::TranscriptEntry;
use super::{cap, parse_frame, Card, ErrorCode, FrameError, Rich, MAX_ID_BYTES};

/// Frames an agent sends (`Serialize` only for the redacted `Debug`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentFrame {
    /// Take chats, optionally at a lower capacity than the roster's.
    Ready {
        capacity: Option<u32>,
    },
    /// No new chats; current ones stay.
    Away {},
    /// `text` may be empty when an `attachment` (an id from `POST /upload`) comes with it.
    Message {
        session: String,
        id: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachment: Option<String>,
    },
    /// An order card (or a product card) for the customer.
    Card {
        session: String,
        id: String,
        card: Card,
    },
    Typing {
        session: String,
    },
    /// To a group or a named agent (exactly one of them).
    Transfer {
        session: String,
        group: Option<String>,
        agent: Option<String>,
    },
    Close {
        session: String,
    },
    /// The earlier conversations of the chat's customer, in full (`page` 0 the newest).
    HistoryRequest {
        session: String,
        page: Option<u32>,
    },
    /// Take a left message to answer it (of two agents at once, one gets it).
    TicketClaim {
        ticket: String,
    },
    /// Answer a claimed ticket; the customer gets it live or on their next chat.
    TicketReply {
        ticket: String,
        text: String,
    },
    /// The chat's customer's recent orders from the shop (`integrations.orders_url`).
    OrdersRequest {
        session: String,
    },
}

const AGENT_TYPES: &[&str] = &[
    "ready",
    "away",
    "message",
    "card",
    "typing",
    "transfer",
    "close",
    "history_request",
    "ticket_claim",
    "ticket_reply",
    "orders_request",
];

pub fn parse_agent_frame(text: &str) -> Result<AgentFrame, FrameError> {
    let frame: AgentFrame = parse_frame(text, AGENT_TYPES)?;
    match &frame {
        AgentFrame::Message {
            session,
            id,
            text: body,
            attachment,
        } => {
            cap("session", session, MAX_ID_BYTES)?;
            cap("id", id, MAX_ID_BYTES)?;
            cap(
                "attachment",
                attachment.as_deref().unwrap_or(""),
                MAX_ID_BYTES,
            )?;
            if body.is_empty() && attachment.is_none() {
                super::text_required(text)?;
            }
        }
        AgentFrame::Card { session, id, card } => {
            cap("session", session, MAX_ID_BYTES)?;
            cap("id", id, MAX_ID_BYTES)?;
            card.validate()?;
        }
        AgentFrame::Typing { session }
        | AgentFrame::Close { session }
        | AgentFrame::HistoryRequest { session, .. }
        | AgentFrame::OrdersRequest { session } => cap("session", session, MAX_ID_BYTES)?,
        AgentFrame::TicketClaim { ticket } | AgentFrame::TicketReply { ticket, .. } => {
            cap("ticket", ticket, MAX_ID_BYTES)?
        }
        AgentFrame::Transfer {
            session,
            group,
            agent,
        } => {
            cap("session", session, MAX_ID_BYTES)?;
            cap("group", group.as_deref().unwrap_or(""), MAX_ID_BYTES)?;
            cap("agent", agent.as_deref().unwrap_or(""), MAX_ID_BYTES)?;
        }
        AgentFrame::Ready { .. } | AgentFrame::Away {} => {}
    }
    if let AgentFrame::Transfer { group, agent, .. } = &frame {
        if group.is_some() == agent.is_some() {
            return Err(FrameError {
                code: ErrorCode::BadField,
                message: "a transfer names exactly one of `group` or `agent`".into(),
            });
        }
    }
    Ok(frame)
}

/// What an agent is told about the customer, personal data masked.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerInfo {
    pub visitor: Option<String>,
    pub channel: super::Channel,
    pub lang: super::Lang,
    /// Complaint level (0: not a complaint).
    pub complaint_level: u8,
    /// An identified customer with earlier conversations (issue #17).
    #[serde(default)]
    pub returning: bool,
    /// The shop vouched for this customer (an identity token): their orders can be asked
    /// for (`orders_request`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identified: bool,
    /// Their last conversations, newest first (at most 5), masked.
    #[serde(default)]
    pub previous: Vec<super::PreviousConversation>,
    /// What the shop vouched for (identified customers only), masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Frames the server sends to an agent (also carried between nodes, hence `Deserialize`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentServerFrame {
    /// First frame after connecting: who the gateway thinks you are.
    Welcome {
        agent: String,
        name: String,
        groups: Vec<String>,
        capacity: u32,
    },
    /// A customer is yours, with everything said so far (personal data masked).
    Assigned {
        session: String,
        group: String,
        customer: CustomerInfo,
        history: Vec<TranscriptEntry>,
        waited_ms: u64,
        /// Sent again after a reconnect whose replay could not cover `last_seq`: the chat
        /// is not new, this is its full state (replaces what the console had).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    Message {
        session: String,
        id: String,
        text: String,
        /// An attachment or a card, when the message carries one.
        #[serde(flatten, default)]
        rich: Rich,
    },
    Typing {
        session: String,
    },
    CustomerLeft {
        session: String,
    },
    /// A customer message has waited for your answer longer than the first-response SLA.
    SlaWarning {
        session: String,
        waiting_s: u64,
    },
    /// You had not written within the greeting time, so a standard greeting went out for you.
    AutoGreeting {
        session: String,
        text: String,
    },
    /// The chat ended (you closed it, or it was transferred away from you).
    ChatEnded {
        session: String,
        reason: String,
    },
    Ack {
        id: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// The answer to `history_request`: a page of the customer's earlier conversations.
    History {
        session: String,
        page: u32,
        conversations: Vec<super::PastConversation>,
        /// Whether an older page exists.
        more: bool,
    },
    /// Open left messages of your groups (sent on `ready`).
    Tickets {
        items: Vec<super::TicketItem>,
    },
    /// The answer to `orders_request`: the customer's recent orders, newest first, each an
    /// order card the console can send as it is. `available: false` with a `reason`
    /// (`not_identified`, `not_configured`, `timeout`, `unavailable`) when there are none to show.
    Orders {
        session: String,
        available: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        orders: Vec<super::ShopOrder>,
    },
    /// You claimed this ticket; answer it with `ticket_reply`.
    TicketClaimed {
        ticket: String,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

crate::redacted_debug!(AgentFrame, CustomerInfo, AgentServerFrame);

impl AgentServerFrame {
    /// The frame with personal data masked in whatever text it carries from the customer.
    /// Applied where frames reach an agent's outbox, so no path (history, message, customer
    /// info, a frame relayed from another node) can get unmasked text to an agent.
    pub fn masked(self) -> Self {
        use crate::mask::mask_text;
        let mask = |t: String| match mask_text(&t) {
            std::borrow::Cow::Borrowed(_) => t,
            std::borrow::Cow::Owned(m) => m,
        };
        match self {
            AgentServerFrame::Assigned {
                session,
                group,
                mut customer,
                history,
                waited_ms,
                resumed,
            } => {
                customer.visitor = customer.visitor.map(mask);
                customer.phone = customer.phone.map(mask);
                customer.name = customer.name.map(|n| crate::identity::mask_name(&n));
                customer.previous = customer
                    .previous
                    .into_iter()
                    .map(super::PreviousConversation::masked)
                    .collect();
                let history = history
                    .into_iter()
                    .map(|mut e| {
                        e.text = mask(e.text);
                        e.rich = e.rich.masked();
                        e
                    })
                    .collect();
                AgentServerFrame::Assigned {
                    session,
                    group,
                    customer,
                    history,
                    waited_ms,
                    resumed,
                }
            }
            AgentServerFrame::Message {
                session,
                id,
                text,
                rich,
            } => AgentServerFrame::Message {
                session,
                id,
                text: mask(text),
                rich: rich.masked(),
            },
            AgentServerFrame::History {
                session,
                page,
                conversations,
                more,
            } => AgentServerFrame::History {
                session,
                page,
                conversations: conversations
                    .into_iter()
                    .map(super::PastConversation::masked)
                    .collect(),
                more,
            },
            AgentServerFrame::Tickets { items } => AgentServerFrame::Tickets {
                items: items.into_iter().map(super::TicketItem::masked).collect(),
            },
            AgentServerFrame::Orders {
                session,
                available,
                reason,
                orders,
            } => AgentServerFrame::Orders {
                session,
                available,
                reason,
                orders: orders.into_iter().map(super::ShopOrder::masked).collect(),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agent_frames_and_checks_transfers() {
        assert_eq!(
            parse_agent_frame(r#"{"type":"ready"}"#).unwrap(),
            AgentFrame::Ready { capacity: None }
        );
        assert_eq!(
            parse_agent_frame(r#"{"type":"transfer","session":"s","group":"after_sale"}"#).unwrap(),
            AgentFrame::Transfer {
                session: "s".into(),
                group: Some("after_sale".into()),
                agent: None
            }
        );
        let both = r#"{"type":"transfer","session":"s","group":"g","agent":"a"}"#;
        assert_eq!(
            parse_agent_frame(both).unwrap_err().code,
            ErrorCode::BadField
        );
        assert_eq!(
            parse_agent_frame(r#"{"type":"assign"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
    }
}
