//! When nobody is there (issue #17): a hand-off to a group outside its `[hours]`, or to a
//! group with hours and no agent online, does not queue for a person who will not come. The
//! customer gets `offline` (the bot keeps answering) and may `leave_message`: a ticket, kept
//! encrypted in the store. Agents of the group get open tickets on `ready`, claim one
//! (`ticket_claim`: one conditional update, so of two racing agents one wins) and answer it
//! (`ticket_reply`); the reply reaches the customer's live chat on this node, else their
//! next identified chat (`message` with `offline: true`), and is kept in its transcript.

use std::sync::Arc;

use crate::agent::AgentSession;
use crate::app::AppState;
use crate::hours::Open;
use crate::protocol::{AgentServerFrame, ErrorCode, Rich, ServerFrame, TicketItem};
use crate::session::{now_ms, Session, Speaker};
use crate::store::{NewTicket, TicketRow};
use crate::telemetry::metric;

/// Open tickets sent to an agent on `ready`, oldest first.
const TICKETS_ON_READY: u32 = 50;

/// Why nobody can take a chat of `group` now, and when the group opens next.
pub fn offline(app: &AppState, group: &str) -> Option<(&'static str, Option<u64>)> {
    let hours = &app.settings.hours;
    match hours.open(group, now_ms()) {
        Open::Closed { next_open_ms } => Some(("outside_hours", next_open_ms)),
        // Only groups with hours are told "nobody there": elsewhere the queue waits as always.
        Open::Now if hours.groups.contains_key(group) && app.group_capacity(group) == 0 => {
            Some(("no_agent", None))
        }
        Open::Now => None,
    }
}

/// Tells the customer nobody of `group` is there; the session stays with the bot.
pub fn tell_offline(session: &Session, group: &str, reason: &str, next_open_ms: Option<u64>) {
    metrics::counter!(metric::OFFLINE_TOTAL, "reason" => reason.to_string()).increment(1);
    session.with_past(|c| c.offline_group = Some(group.to_string()));
    session.record(Speaker::System, &format!("offline {group}: {reason}"), None);
    session.emit(&ServerFrame::Offline {
        reason: reason.to_string(),
        next_open_ms,
    });
}

/// `leave_message`: stored as a ticket for the group the customer could not reach, then
/// acknowledged (the ack means it is stored).
pub async fn leave_message(
    app: &AppState,
    session: &Arc<Session>,
    id: String,
    text: String,
    contact: Option<String>,
    fallback_group: String,
) {
    let max = app.settings.limits.max_text_chars;
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > max {
        let message = format!("`text` must be 1-{max} characters");
        return session.error(ErrorCode::BadField, message, Some(id));
    }
    let Some(store) = app.store.clone() else {
        let message = "messages cannot be left here (no store); try again later";
        return session.error(ErrorCode::Internal, message, Some(id));
    };
    if !session.take_in(&id, &text, Rich::default()) {
        return;
    }
    let group = session
        .with_past(|c| c.offline_group.clone())
        .unwrap_or(fallback_group);
    let ticket = NewTicket {
        id: uuid::Uuid::new_v4().simple().to_string(),
        customer: session.identity().map(|i| i.customer.clone()),
        session: session.id.to_string(),
        group: group.clone(),
        text,
        contact: contact
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty()),
    };
    if let Err(err) = store.create_ticket(ticket).await {
        tracing::error!(error = %err, "cannot store a left message");
        let message = "the message could not be stored; send it again";
        return session.error(ErrorCode::Internal, message, Some(id));
    }
    metrics::counter!(metric::TICKETS_CREATED_TOTAL).increment(1);
    session.record(Speaker::System, &format!("message left for {group}"), None);
    session.emit(&ServerFrame::Ack {
        id,
        duplicate: false,
    });
}

fn item(t: TicketRow) -> TicketItem {
    TicketItem {
        identified: t.customer.is_some(),
        id: t.id,
        group: t.group,
        text: t.text,
        contact: t.contact,
        status: t.status,
        created_ms: t.created_ms,
    }
}

/// On `ready`: the open tickets of the agent's groups (masked), when there are any.
pub async fn on_ready(app: &AppState, agent: &AgentSession) {
    let Some(store) = app.store.clone() else {
        return;
    };
    let mut items = Vec::new();
    for group in &agent.entry.groups {
        match store
            .tickets(Some(group), Some("open"), TICKETS_ON_READY)
            .await
        {
            Ok(rows) => items.extend(rows.into_iter().map(item)),
            Err(err) => tracing::error!(error = %err, "cannot read open tickets"),
        }
    }
    if items.is_empty() {
        // Nothing waiting: no frame (an agent's numbered frames stay as they were before).
        return;
    }
    items.sort_by_key(|t| t.created_ms);
    items.truncate(TICKETS_ON_READY as usize);
    agent
        .outbox
        .emit(&AgentServerFrame::Tickets { items }.masked());
}

/// `ticket_claim`: the agent takes an open ticket of one of its groups.
pub async fn claim(app: &AppState, agent: &AgentSession, ticket: String) {
    let Some(store) = app.store.clone() else {
        return agent.error(ErrorCode::Internal, "tickets need the store", None);
    };
    let row = match store.ticket(&ticket).await {
        Ok(Some(row)) if agent.entry.groups.contains(&row.group) => row,
        Ok(_) => {
            let message = format!("no ticket {ticket} in your groups");
            return agent.error(ErrorCode::BadField, message, Some(ticket));
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot read a ticket");
            return agent.error(ErrorCode::Internal, "tickets unavailable", Some(ticket));
        }
    };
    match store.claim_ticket(&row.id, agent.id()).await {
        Ok(true) => {
            metrics::counter!(metric::TICKETS_CLAIMED_TOTAL).increment(1);
            agent
                .outbox
                .emit(&AgentServerFrame::TicketClaimed { ticket });
        }
        Ok(false) => {
            let message = "this ticket was claimed by someone else (or is not open)";
            agent.error(ErrorCode::TicketTaken, message, Some(ticket));
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot claim a ticket");
            agent.error(ErrorCode::Internal, "tickets unavailable", Some(ticket));
        }
    }
}

/// `ticket_reply`: answers a ticket the agent claimed; acknowledged once stored, then
/// delivered to the customer if they are here now.
pub async fn reply(app: &AppState, agent: &AgentSession, ticket: String, text: String) {
    let max = app.settings.limits.max_text_chars;
    if text.trim().is_empty() || text.chars().count() > max {
        let message = format!("`text` must be 1-{max} characters");
        return agent.error(ErrorCode::BadField, message, Some(ticket));
    }
    if let Some(rule) = app.settings.leaks.check(&text) {
        let message = format!("the reply breaks the `{rule}` rule and was not sent");
        return agent.error(ErrorCode::BlockedContent, message, Some(ticket));
    }
    let Some(store) = app.store.clone() else {
        return agent.error(ErrorCode::Internal, "tickets need the store", None);
    };
    match store.answer_ticket(&ticket, agent.id(), &text).await {
        Ok(true) => {}
        Ok(false) => {
            let message = "claim the ticket first (ticket_claim); it is not yours to answer";
            return agent.error(ErrorCode::NotInState, message, Some(ticket));
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot store a ticket reply");
            return agent.error(ErrorCode::Internal, "tickets unavailable", Some(ticket));
        }
    }
    metrics::counter!(metric::TICKETS_ANSWERED_TOTAL).increment(1);
    agent.outbox.emit(&AgentServerFrame::Ack {
        id: ticket.clone(),
        duplicate: false,
    });
    let Ok(Some(row)) = store.ticket(&ticket).await else {
        return;
    };
    if row.late {
        metrics::counter!(metric::TICKETS_LATE_TOTAL).increment(1);
    }
    // Live on this node: the chat it was left in, or any chat of the same customer.
    let live = app.sessions.all().into_iter().find(|s| {
        s.detached_since().is_none()
            && (*s.id == *row.session
                || row
                    .customer
                    .as_ref()
                    .is_some_and(|c| s.identity().is_some_and(|i| &i.customer == c)))
    });
    if let Some(session) = live {
        deliver(app, &session, row).await;
    }
}

/// Replies waiting for `customer`, delivered into `session` (each once, across nodes).
pub async fn deliver_waiting(app: &AppState, session: &Arc<Session>, customer: &str) {
    let Some(store) = app.store.clone() else {
        return;
    };
    match store.replies_for(customer).await {
        Ok(rows) => {
            for row in rows {
                deliver(app, session, row).await;
            }
        }
        Err(err) => tracing::error!(error = %err, "cannot read waiting ticket replies"),
    }
}

async fn deliver(app: &AppState, session: &Session, row: TicketRow) {
    let Some(store) = app.store.clone() else {
        return;
    };
    let Some(text) = row.reply else {
        return;
    };
    match store.mark_delivered(&row.id).await {
        Ok(true) => {}
        Ok(false) => return, // another chat of theirs got it first
        Err(err) => {
            tracing::error!(error = %err, "cannot mark a ticket reply delivered");
            return;
        }
    }
    let id = format!("ticket-{}", row.id);
    let name = row
        .agent
        .as_deref()
        .map(|a| app.agent_name(a))
        .unwrap_or_default();
    let frame = ServerFrame::Message {
        id: id.clone(),
        from: "agent".into(),
        name,
        text: text.clone(),
        auto: false,
        rich: Default::default(),
        offline: true,
    };
    // Kept in the chat's transcript (their history) in the same log entry as the frame.
    session.emit_recorded(&frame, Speaker::Agent, &text, Some(id));
    metrics::counter!(metric::TICKETS_DELIVERED_TOTAL).increment(1);
}
