//! Customer continuity (issue #17): an identified customer is one customer across sessions
//! and channels. This module ties a verified [`Identity`] to a session, reads the customer's
//! earlier conversations for the agent (`customer.previous` on `assigned`, `history` on
//! request, each read audited), and delivers ticket replies waiting for them.
//!
//! Everything here is keyed by the customer hash; the shop's id is never kept.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::AgentSession;
use crate::app::AppState;
use crate::identity::Identity;
use crate::protocol::{
    AgentServerFrame, ErrorCode, PastConversation, PreviousConversation, ServerFrame,
};
use crate::records::ConversationRecord;
use crate::roster::RosterStore;
use crate::session::{Session, Speaker};
use crate::store::{AuditEntry, Store};
use crate::telemetry::metric;

/// Earlier conversations shown on `assigned`, and per `history` page.
pub const PREVIOUS: u32 = 5;

/// How long an assignment waits for the store's answer before it goes out without history:
/// a slow store must not hold up a customer who waited for a person.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Marks `session` as `identity`'s, links it in the store (so any node can tell whose chat
/// it is) and delivers ticket replies waiting for the customer.
pub async fn identify(app: &AppState, session: &Arc<Session>, identity: Identity) {
    session.identify(identity.clone());
    metrics::counter!(metric::IDENTIFIED_SESSIONS_TOTAL).increment(1);
    let Some(store) = app.store.clone() else {
        return;
    };
    if let Err(err) = store
        .link_customer(&session.id, &identity, session.created_ms)
        .await
    {
        tracing::error!(error = %err, "cannot link a chat to its customer");
    }
    show_earlier(app, session, &identity.customer).await;
    crate::tickets::deliver_waiting(app, session, &identity.customer).await;
}

/// Earlier conversations the widget shows above a returning customer's new one.
const EARLIER: u32 = 3;
/// Lines of each, the last ones.
const EARLIER_LINES: usize = 20;

/// Sends the customer their last conversations (masked; system lines left out), if any.
async fn show_earlier(app: &AppState, session: &Session, customer: &str) {
    let Some(store) = app.store.as_ref() else {
        return;
    };
    let read = store.customer_conversations(customer, &session.id, 0, EARLIER);
    let records = match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(records)) => records,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "cannot read a customer's earlier conversations");
            return;
        }
        Err(_) => return,
    };
    if records.is_empty() {
        return;
    }
    let conversations = records
        .into_iter()
        .map(|r| {
            let said: Vec<_> = r
                .transcript
                .into_iter()
                .filter(|l| l.from != Speaker::System)
                .collect();
            let skip = said.len().saturating_sub(EARLIER_LINES);
            crate::protocol::EarlierConversation {
                session: r.id,
                channel: r.channel,
                started_ms: r.created_ms,
                lines: said
                    .into_iter()
                    .skip(skip)
                    .map(|l| crate::protocol::EarlierLine {
                        from: l.from,
                        text: crate::protocol::mask_owned(l.text),
                        at_ms: l.at_ms,
                    })
                    .collect(),
            }
        })
        .collect();
    session.emit(&ServerFrame::Earlier { conversations });
}

/// What the relay needs of a customer's past: their last conversations (for the agent and
/// for offering the chat to their last agent first), and the names of the agents in them.
#[derive(Clone)]
pub struct Past {
    store: Option<Arc<Store>>,
    roster: Arc<RosterStore>,
    /// `routing.last_agent_days`: how recent a last conversation must be to prefer its agent.
    last_agent_days: u64,
}

impl Past {
    pub fn new(store: Option<Arc<Store>>, roster: Arc<RosterStore>, last_agent_days: u64) -> Self {
        Past {
            store,
            roster,
            last_agent_days,
        }
    }

    /// The customer's last conversations (cached on the session after the first read).
    pub async fn previous(&self, session: &Session) -> Arc<Vec<PreviousConversation>> {
        if let Some(cached) = session.with_past(|c| c.previous.clone()) {
            return cached;
        }
        let (Some(identity), Some(store)) = (session.identity(), self.store.as_ref()) else {
            return Arc::default();
        };
        let read = store.customer_conversations(&identity.customer, &session.id, 0, PREVIOUS);
        let records = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(records)) => records,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "cannot read a customer's earlier conversations");
                return Arc::default();
            }
            Err(_) => {
                metrics::counter!(metric::HISTORY_TIMEOUTS_TOTAL).increment(1);
                return Arc::default();
            }
        };
        let list: Arc<Vec<PreviousConversation>> =
            Arc::new(records.iter().map(|r| self.brief(r)).collect());
        let last = records.first().and_then(|r| {
            Some((
                r.agents.last()?.clone(),
                r.closed_ms.unwrap_or(r.created_ms),
            ))
        });
        session.with_past(|c| {
            c.previous = Some(list.clone());
            c.last_agent = last;
        });
        list
    }

    /// The agent of the customer's last conversation, if it was recent enough
    /// (`routing.last_agent_days`) to offer them the chat first.
    pub async fn last_agent(&self, session: &Session) -> Option<String> {
        let days = self.last_agent_days;
        if days == 0 || session.identity().is_none() {
            return None;
        }
        self.previous(session).await;
        let (agent, at_ms) = session.with_past(|c| c.last_agent.clone())?;
        let recent = crate::session::now_ms().saturating_sub(at_ms) <= days * 86_400_000;
        recent.then_some(agent)
    }

    /// The agent names of a record, in order, without repeats in a row.
    fn agent_names(&self, r: &ConversationRecord) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for id in &r.agents {
            let name = self.roster.name_of(id);
            if names.last() != Some(&name) {
                names.push(name);
            }
        }
        names
    }

    fn brief(&self, r: &ConversationRecord) -> PreviousConversation {
        let said = |who: Speaker| r.transcript.iter().filter(move |l| l.from == who);
        PreviousConversation {
            session: r.id.clone(),
            channel: r.channel.clone(),
            started_ms: r.created_ms,
            closed_ms: r.closed_ms,
            first_customer_message: said(Speaker::Customer).next().map(|l| l.text.clone()),
            last_agent_message: said(Speaker::Agent).next_back().map(|l| l.text.clone()),
            survey_score: r.survey_score,
            complaint_level: r.complaint_level,
            agents: self.agent_names(r),
        }
    }
}

/// The identity part of `assigned`'s customer: returning, previous and the vouched-for
/// fields (masked later, where the frame reaches the agent).
pub fn customer_fields(session: &Session, info: &mut crate::protocol::CustomerInfo) {
    let Some(identity) = session.identity() else {
        return;
    };
    let previous = session
        .with_past(|c| c.previous.clone())
        .unwrap_or_default();
    info.returning = !previous.is_empty();
    info.identified = true;
    info.previous = previous.as_ref().clone();
    info.name = identity.name.clone();
    info.tier = identity.tier.clone();
    info.phone = identity.phone.clone();
}

/// `history_request` on the agent's node: a page of the chat's customer's earlier
/// conversations, in full, masked; the read is written to the audit log first.
pub async fn history_request(app: &AppState, agent: &AgentSession, session: String, page: u32) {
    if agent.customer_node(&session).is_none() {
        let message = format!("session {session} is not one of your chats");
        return agent.error(ErrorCode::NotYourChat, message, None);
    }
    let Some(store) = app.store.clone() else {
        let message = "history needs the conversation store (store.url)";
        return agent.error(ErrorCode::Internal, message, None);
    };
    let customer = match store.customer_of(&session).await {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(error = %err, "cannot read whose chat this is");
            return agent.error(ErrorCode::Internal, "history unavailable", None);
        }
    };
    let Some(customer) = customer else {
        // An anonymous visitor: nothing is linked to them, by design.
        let frame = AgentServerFrame::History {
            session,
            page,
            conversations: Vec::new(),
            more: false,
        };
        agent.outbox.emit(&frame);
        return;
    };
    let audit =
        AuditEntry::agent_read(agent.id(), "read_history", &session, format!("page {page}"));
    if let Err(err) = store.audit(&audit).await {
        tracing::error!(error = %err, "cannot audit a history read; refused");
        return agent.error(ErrorCode::Internal, "history unavailable", None);
    }
    metrics::counter!(metric::HISTORY_READS_TOTAL).increment(1);
    let skip = page.saturating_mul(PREVIOUS);
    let records = match store
        .customer_conversations(&customer, &session, skip, PREVIOUS + 1)
        .await
    {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(error = %err, "cannot read a customer's history");
            return agent.error(ErrorCode::Internal, "history unavailable", None);
        }
    };
    let more = records.len() > PREVIOUS as usize;
    let conversations = records
        .into_iter()
        .take(PREVIOUS as usize)
        .map(|r| PastConversation {
            agents: app.relay.past.agent_names(&r),
            session: r.id,
            channel: r.channel,
            started_ms: r.created_ms,
            closed_ms: r.closed_ms,
            survey_score: r.survey_score,
            complaint_level: r.complaint_level,
            transcript: r.transcript,
        })
        .collect();
    let frame = AgentServerFrame::History {
        session,
        page,
        conversations,
        more,
    };
    agent.outbox.emit(&frame.masked());
}

/// Tells the customer why the identity token was not taken (before the greeting, seq 0).
pub fn bad_identity_frame() -> ServerFrame {
    ServerFrame::error(
        ErrorCode::BadIdentity,
        "the identity token is not valid (signature, expiry or form); continuing as a visitor",
    )
}
