//! An agent's message to its customer: text, an attachment or a card; checked (lengths, the
//! `[leaks]` rules), written to the durable log before the `ack`, then relayed.

use super::{leak, not_yours, AgentSession};
use crate::app::AppState;
use crate::attachments::UseError;
use crate::journal::JournalError;
use crate::protocol::{AgentServerFrame, Card, ErrorCode, Rich};
use crate::routing::CustomerEvent;

/// An agent's message (text, an attachment, a card) for the customer of `session`: checked,
/// made durable, acknowledged, then relayed to the customer's node.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send_message(
    app: &AppState,
    agent: &AgentSession,
    session: String,
    msg_id: String,
    text: String,
    attachment: Option<String>,
    card: Option<Card>,
) {
    let id = agent.id();
    let Some(customer_node) = agent.customer_node(&session) else {
        return not_yours(agent, &session, Some(msg_id));
    };
    let attachment = match attachment {
        None => None,
        Some(a) => match app.attachments.info(&a, &session).await {
            Ok(info) => Some(info),
            Err(err) => {
                let code = match err {
                    UseError::Unknown => ErrorCode::BadField,
                    UseError::Disabled | UseError::Store => ErrorCode::Internal,
                };
                return agent.error(code, format!("`attachment`: {err}"), Some(msg_id));
            }
        },
    };
    let rich = Rich {
        attachment: attachment.map(Box::new),
        card: card.map(Box::new),
    };
    let max = app.settings.limits.max_text_chars;
    let chars = text.chars().count();
    let empty = text.trim().is_empty() && rich.is_empty();
    if chars > max || empty || msg_id.is_empty() || msg_id.len() > 64 {
        let message =
            format!("`id` must be 1-64 bytes and `text` 1-{max} characters (or an `attachment`)");
        let code = if chars > max {
            ErrorCode::TooLong
        } else {
            ErrorCode::BadField
        };
        return agent.error(code, message, Some(msg_id));
    }
    let card_words = rich.card.as_ref().map(|c| c.summary()).unwrap_or_default();
    let checked = app.settings.leaks.check(&text).or_else(|| {
        (!card_words.is_empty())
            .then(|| app.settings.leaks.check(&card_words))
            .flatten()
    });
    if let Some(rule) = checked {
        return leak::blocked(app, agent, id, &session, msg_id, rule);
    }
    let fresh = agent.remember_message(&msg_id);
    if fresh {
        let entry = crate::journal::Entry::AgentMessage {
            agent: id.to_string(),
            name: agent.entry.name.clone(),
            id: msg_id.clone(),
            text: text.clone(),
            at_ms: crate::session::now_ms(),
            rich: rich.clone(),
        };
        // The customer's node writes the delivery to the log itself (fenced by its lease)
        // before the customer sees it, so the message goes out at once; the copy written here
        // is what the ack stands on: if that node is gone, whichever node serves the customer
        // next delivers it from the log, once (by id).
        let event = CustomerEvent::AgentMessage {
            agent: id.to_string(),
            id: msg_id.clone(),
            text,
            rich,
        };
        app.relay
            .to_customer(&customer_node, session.clone(), event)
            .await;
        if let Err(err) = app.journal.append_input(&session, &entry).await {
            agent.forget_message(&msg_id);
            return not_stored(agent, &session, msg_id, err);
        }
    }
    agent.outbox.emit(&AgentServerFrame::Ack {
        id: msg_id,
        duplicate: !fresh,
    });
}

/// The agent's message could not be made durable: say so, nothing was sent.
fn not_stored(agent: &AgentSession, session: &str, id: String, err: JournalError) {
    match err {
        JournalError::NoLog => {
            let message = format!("session {session} has ended; the message was not sent");
            agent.error(ErrorCode::NotYourChat, message, Some(id));
        }
        err => {
            tracing::error!(%err, "an agent message could not be stored");
            let message = "the message could not be stored; send it again";
            agent.error(ErrorCode::Internal, message, Some(id));
        }
    }
}
