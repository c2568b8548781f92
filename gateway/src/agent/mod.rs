//! The agent socket: `GET /ws/agent`, authenticated before the upgrade.
//!
//! An agent has one [`AgentSession`] per node: its numbered frames (so a reconnect replays
//! what it missed, `?last_seq=N`), the chats it serves and the customer node of each. What an
//! agent does goes to the dispatcher (ready, away, close, transfer) or to the customer's node
//! through the bus (messages, typing).

mod leak;
mod send;

pub use crate::agents::{AgentSession, Agents};

use std::sync::Arc;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::Instrument;

use crate::app::AppState;
use crate::connection::{self, FrameHandler};
use crate::dispatch::{AgentSpec, DispatchError, TransferTarget};
use crate::limits::{ConnectionPermit, FrameVerdict};
use crate::protocol::{parse_agent_frame, AgentFrame, AgentServerFrame, ErrorCode};
use crate::routing::CustomerEvent;
use crate::signin::agent_step::SecondStep;
use crate::telemetry::metric;

#[derive(Debug, Default, Deserialize)]
pub struct AgentQuery {
    token: Option<String>,
    last_seq: Option<u64>,
    /// Two-step sign-in: a code, or a pass from an earlier `otp_session` frame.
    otp: Option<String>,
    otp_session: Option<String>,
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<AgentQuery>,
) -> Response {
    if app.shutdown.is_triggered() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting_down").into_response();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = bearer
        .or(query.token)
        .filter(|t| !t.is_empty() && t.len() <= 256)
    else {
        return unauthorized(peer, "missing token");
    };
    let entry = match app.roster.authenticate(token).await {
        Ok(entry) => entry,
        Err(crate::roster::AuthError::Refused) => return unauthorized(peer, "bad token"),
        Err(crate::roster::AuthError::Busy) => {
            metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => "auth_busy")
                .increment(1);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "sign-in busy; retry shortly",
            )
                .into_response();
        }
    };
    let permit = match connection::admit(&app, peer.ip()) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let last_seq = query.last_seq.unwrap_or(0);
    let step = SecondStep::new(query.otp, query.otp_session, peer.ip(), &headers);
    connection::configure(ws, &app).on_upgrade(move |mut socket| {
        let span = tracing::info_span!("agent", agent = %entry.id);
        async move {
            if step.check(&app, &mut socket, &entry).await {
                serve(socket, app, entry, last_seq, permit).await;
            }
        }
        .instrument(span)
    })
}

fn unauthorized(peer: std::net::SocketAddr, why: &'static str) -> Response {
    metrics::counter!(metric::AUTH_FAILURES_TOTAL, "socket" => "agent").increment(1);
    // The token itself is never logged.
    tracing::warn!(peer = %peer.ip(), why, "agent sign-in refused");
    (StatusCode::UNAUTHORIZED, "bad or missing agent token").into_response()
}

async fn serve(
    mut socket: WebSocket,
    app: AppState,
    entry: crate::roster::AgentEntry,
    last_seq: u64,
    _permit: ConnectionPermit,
) {
    let conn = app.next_conn_id();
    if app.journal.is_shared() {
        // Several nodes number an agent's frames each on their own: a `last_seq` from another
        // node would replay frames of this node it never saw, or skip some. Its chats come
        // from the log instead, in full.
        app.agents.forget_detached(&entry.id);
    }
    let (agent, created) = app.agents.get_or_create(&entry, &app.settings);
    let spec = AgentSpec {
        id: entry.id.clone(),
        groups: entry.groups.clone(),
        capacity: entry.capacity,
    };
    if let Err(err) = app.relay.agent_online(&spec).await {
        tracing::error!(error = %err, "cannot register the agent with the dispatcher");
        connection::close(&mut socket, 1011, "routing unavailable").await;
        return;
    }
    // New here, with a durable log: the agent may hold chats served from another node (it
    // moved, or its node went away); they come back from the log, numbered after what it saw.
    let from_log = created && app.journal.is_durable();
    if from_log {
        agent.outbox.skip_to(last_seq);
    }
    if last_seq == 0 || from_log {
        agent.outbox.emit(&AgentServerFrame::Welcome {
            agent: entry.id.clone(),
            name: entry.name.clone(),
            groups: entry.groups.clone(),
            capacity: entry.capacity,
        });
    }
    if from_log {
        app.relay.restore_chats(&agent).await;
    }
    let mut attachment = agent
        .outbox
        .attach(conn, last_seq, app.settings.limits.outbound_queue);
    // Links in the agent's frames name it as the reader: its downloads are audited.
    attachment.refresh = app.attachments.refresher(format!("agent:{}", entry.id));
    if attachment.gap && !from_log {
        rebuild(&app, &agent, last_seq, &mut attachment).await;
    }
    tracing::info!(node = %app.node_id, "agent connected");
    let mut handler = AgentHandler {
        app: app.clone(),
        agent: agent.clone(),
    };
    let end = connection::run(
        &mut socket,
        connection::Timing::of(&app.settings),
        app.shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    agent.outbox.detach(conn);
    if agent.outbox.detached_since().is_some() {
        // Its chats wait for the grace period; the dispatcher's reap requeues them after.
        app.relay.agent_disconnected(&entry.id).await;
    }
    if let connection::End::Dropped(reason) = end {
        tracing::info!(reason, "agent connection ended");
    }
}

/// The replay cannot cover what the agent missed: rather than skip frames silently, start
/// the agent over with a welcome and every chat it still holds, in full (`assigned` with
/// `resumed`), numbered after what it has seen.
async fn rebuild(
    app: &AppState,
    agent: &AgentSession,
    last_seq: u64,
    attachment: &mut crate::outbox::Attachment,
) {
    metrics::counter!(metric::AGENT_REBUILDS_TOTAL).increment(1);
    tracing::info!(last_seq, "agent replay has a gap; rebuilding its chats");
    attachment.skip_backlog();
    agent.outbox.skip_to(last_seq);
    let entry = &agent.entry;
    agent.outbox.emit(&AgentServerFrame::Welcome {
        agent: entry.id.clone(),
        name: entry.name.clone(),
        groups: entry.groups.clone(),
        capacity: entry.capacity,
    });
    app.relay.resync_chats(agent).await;
}

struct AgentHandler {
    app: AppState,
    agent: Arc<AgentSession>,
}

impl FrameHandler for AgentHandler {
    const SOCKET: &'static str = "agent";

    async fn on_text(&mut self, text: &str) -> Option<String> {
        match parse_agent_frame(text) {
            Ok(frame) => on_frame(&self.app, &self.agent, frame).await,
            Err(err) => self.agent.error(err.code, err.message, None),
        }
        None
    }

    fn tell(&mut self, code: ErrorCode, message: &'static str) {
        self.agent.error(code, message, None);
    }

    fn take_frame(&mut self) -> FrameVerdict {
        self.agent.take_frame()
    }

    async fn on_shutdown(&mut self) -> Option<u64> {
        if self.app.journal.is_durable() {
            // Its chats live in the log: it resumes on another node (or this one, restarted).
            return Some(self.agent.outbox.last_seq());
        }
        self.agent.error(
            ErrorCode::ShuttingDown,
            "the gateway node is shutting down; reconnect",
            None,
        );
        None
    }
}

async fn on_frame(app: &AppState, agent: &Arc<AgentSession>, frame: AgentFrame) {
    let id = agent.id();
    match frame {
        AgentFrame::Ready { capacity } => match app.relay.agent_ready(id, capacity).await {
            Ok(()) => crate::tickets::on_ready(app, agent).await,
            Err(err) => dispatch_error(agent, err, None),
        },
        AgentFrame::HistoryRequest { session, page } => {
            crate::continuity::history_request(app, agent, session, page.unwrap_or(0)).await
        }
        AgentFrame::OrdersRequest { session } => {
            // Its own task: the shop may take up to its timeout, the agent's chats may not.
            tokio::spawn(crate::orders::agent_request(
                app.clone(),
                agent.clone(),
                session,
            ));
        }
        AgentFrame::TicketClaim { ticket } => crate::tickets::claim(app, agent, ticket).await,
        AgentFrame::TicketReply { ticket, text } => {
            crate::tickets::reply(app, agent, ticket, text).await
        }
        AgentFrame::Away {} => {
            if let Err(err) = app.relay.agent_away(id).await {
                dispatch_error(agent, err, None);
            }
        }
        AgentFrame::Message {
            session,
            id: msg_id,
            text,
            attachment,
        } => {
            send::send_message(app, agent, session, msg_id, text, attachment, None).await;
        }
        AgentFrame::Card { session, id, card } => {
            send::send_message(app, agent, session, id, String::new(), None, Some(card)).await;
        }
        AgentFrame::Typing { session } => {
            let node = agent.customer_node(&session);
            if let Some(customer_node) = node.filter(|_| agent.typing_due(&session)) {
                let event = CustomerEvent::AgentTyping {
                    agent: id.to_string(),
                };
                app.relay.to_customer(&customer_node, session, event).await;
            }
        }
        AgentFrame::Close { session } => {
            let Some(customer_node) = agent.customer_node(&session) else {
                return not_yours(agent, &session, None);
            };
            if let Err(err) = app.relay.close_chat(agent, session, &customer_node).await {
                dispatch_error(agent, err, None);
            }
        }
        AgentFrame::Transfer {
            session,
            group,
            agent: to_agent,
        } => {
            let Some(customer_node) = agent.customer_node(&session) else {
                return not_yours(agent, &session, None);
            };
            let target = match (group, to_agent) {
                // A queue nobody serves would hold the customer forever (and each new name
                // would be a new queue in the dispatcher).
                (Some(g), _) if !crate::web::known_groups(app).contains(&g) => {
                    let message = "no such group; see /console/config.json for the groups";
                    return agent.error(ErrorCode::UnknownGroup, message, None);
                }
                (Some(g), _) => TransferTarget::Group(g),
                (None, Some(a)) => TransferTarget::Agent(a),
                (None, None) => return,
            };
            let transferred = app
                .relay
                .transfer(agent, session, &customer_node, target)
                .await;
            if let Err(err) = transferred {
                dispatch_error(agent, err, None);
            }
        }
    }
}

fn not_yours(agent: &AgentSession, session: &str, id: Option<String>) {
    let message = format!("session {session} is not one of your chats");
    agent.error(ErrorCode::NotYourChat, message, id);
}

fn dispatch_error(agent: &AgentSession, err: DispatchError, id: Option<String>) {
    let code = match err {
        DispatchError::AgentUnavailable(_) => ErrorCode::AgentUnavailable,
        DispatchError::NotAssigned { .. } | DispatchError::UnknownSession(_) => {
            ErrorCode::NotYourChat
        }
        DispatchError::Invalid(_) | DispatchError::UnknownAgent(_) => ErrorCode::BadField,
        _ => {
            tracing::error!(error = %err, "dispatcher failed");
            ErrorCode::Internal
        }
    };
    agent.error(code, err.to_string(), id);
}
