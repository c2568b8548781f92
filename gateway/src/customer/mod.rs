//! The customer socket: `GET /ws/customer`.
//!
//! One task per connection runs the shared [`connection`] loop; [`flow`] handles the frames
//! the customer sends. The greeting (or the replay on resume) is written
//! straight to the socket before the loop starts, so it is never queued behind other work.

mod flow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::Instrument;

use crate::connection::{self, End, FrameHandler};
use crate::limits::{ConnectionPermit, Refusal};
use crate::protocol::{Channel, Envelope, ErrorCode, Lang, ServerFrame};
use crate::server::AppState;
use crate::session::{Resolved, Session, SessionState};

/// Query parameters of the customer socket, validated by [`CustomerQuery::validate`].
#[derive(Debug, Default, Deserialize)]
pub struct CustomerQuery {
    visitor: Option<String>,
    channel: Option<String>,
    lang: Option<String>,
    session: Option<String>,
    last_seq: Option<String>,
}

struct Params {
    visitor: Option<String>,
    channel: Channel,
    lang: Lang,
    resume: Option<(String, u64)>,
}

impl CustomerQuery {
    fn validate(self) -> Result<Params, String> {
        let channel = match self.channel.as_deref() {
            None | Some("") => Channel::Web,
            Some(c) => c.parse()?,
        };
        let lang = match self.lang.as_deref() {
            None | Some("") => Lang::Zh,
            Some(l) => l.parse()?,
        };
        let last_seq = match self.last_seq.as_deref() {
            None | Some("") => 0,
            Some(n) => n
                .parse()
                .map_err(|_| format!("last_seq must be a whole number, got `{n}`"))?,
        };
        if self.visitor.as_ref().is_some_and(|v| v.len() > 128) {
            return Err("visitor id is longer than 128 bytes".into());
        }
        Ok(Params {
            visitor: self.visitor.filter(|v| !v.is_empty()),
            channel,
            lang,
            resume: self
                .session
                .filter(|s| !s.is_empty())
                .map(|s| (s, last_seq)),
        })
    }
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<CustomerQuery>,
) -> Response {
    let accepted_at = Instant::now();
    if app.shutdown.is_triggered() {
        return refuse(&app, StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    }
    let params = match query.validate() {
        Ok(p) => p,
        Err(message) => {
            metrics::counter!("kefu_connections_rejected_total", "reason" => "bad_query")
                .increment(1);
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let permit = match app.limits.admit(peer.ip()) {
        Ok(p) => p,
        Err(refusal @ Refusal::NodeFull) => {
            return refuse(&app, StatusCode::SERVICE_UNAVAILABLE, refusal.as_str())
        }
        Err(refusal @ Refusal::PerIpLimit) => {
            return refuse(&app, StatusCode::TOO_MANY_REQUESTS, refusal.as_str())
        }
    };
    connection::configure(ws, &app).on_upgrade(move |socket| {
        let span = tracing::info_span!("customer", session = tracing::field::Empty);
        serve(socket, app, params, permit, accepted_at).instrument(span)
    })
}

fn refuse(app: &AppState, status: StatusCode, reason: &'static str) -> Response {
    metrics::counter!("kefu_connections_rejected_total", "reason" => reason).increment(1);
    tracing::debug!(reason, open = app.limits.in_use(), "connection refused");
    (status, reason).into_response()
}

/// Runs one customer connection to its end.
async fn serve(
    mut socket: WebSocket,
    app: AppState,
    params: Params,
    _permit: ConnectionPermit,
    accepted_at: Instant,
) {
    let conn = app.next_conn_id();
    let (requested, last_seq) = match &params.resume {
        Some((id, seq)) => (Some(id.as_str()), *seq),
        None => (None, 0),
    };
    let resolved = app.sessions.resolve(
        requested,
        params.visitor.clone(),
        params.channel,
        params.lang,
    );
    let (session, fresh) = match resolved {
        Resolved::Resumed(s) => (s, false),
        Resolved::New(s) => (s, true),
        Resolved::Expired(s) => {
            // Precedes the new session, so it carries seq 0 and the greeting stays seq 1.
            let notice = ServerFrame::error(
                ErrorCode::SessionExpired,
                "the session to resume has ended (grace period over); a new session starts",
            );
            count_error(ErrorCode::SessionExpired);
            let text = Envelope {
                seq: 0,
                frame: &notice,
            }
            .to_json();
            if socket.send(Message::Text(text.into())).await.is_err() {
                app.sessions.remove(&s.id);
                return;
            }
            (s, true)
        }
    };
    tracing::Span::current().record("session", &*session.id);
    if fresh {
        let text = app
            .settings
            .greeting
            .script(session.channel, session.lang)
            .to_string();
        session.emit(&ServerFrame::Greeting {
            session_id: session.id.to_string(),
            text,
        });
    }
    let mut attachment = session.attach(
        conn,
        if fresh { 0 } else { last_seq },
        app.settings.limits.outbound_queue,
    );
    // The greeting (or the replay) is written first, straight to the socket.
    let write_timeout = Duration::from_millis(app.settings.limits.write_timeout_ms);
    if !matches!(
        connection::write_ready(&mut socket, &attachment, write_timeout, "customer").await,
        Ok(true)
    ) {
        session.detach(conn);
        return;
    }
    if fresh {
        metrics::histogram!("kefu_greeting_latency_seconds")
            .record(accepted_at.elapsed().as_secs_f64());
        session.set_state(SessionState::Bot);
        tracing::debug!(channel = ?session.channel, lang = ?session.lang, "greeted");
    } else {
        tracing::debug!(last_seq, "resumed");
    }

    let mut handler = CustomerHandler {
        app: app.clone(),
        session: session.clone(),
    };
    let end = connection::run(&mut socket, &app, &mut attachment, &mut handler).await;
    session.detach(conn);
    match end {
        End::Closed(reason) => {
            tracing::debug!(%reason, "session closed");
            app.sessions.remove(&session.id);
        }
        End::Dropped(reason) => tracing::debug!(reason, "connection ended, session resumable"),
    }
}

struct CustomerHandler {
    app: AppState,
    session: Arc<Session>,
}

impl FrameHandler for CustomerHandler {
    const SOCKET: &'static str = "customer";

    async fn on_text(&mut self, text: &str) -> Option<String> {
        flow::on_text(&self.app, &self.session, text).await
    }

    fn on_binary(&mut self) {
        send_error(
            &self.session,
            ErrorCode::BinaryNotSupported,
            "binary frames are not supported; send JSON text frames",
            None,
        );
    }

    fn on_shutdown(&mut self) {
        self.session.emit(&ServerFrame::Closed {
            reason: "shutting_down".into(),
        });
    }
}

pub(crate) fn send_error(
    session: &Session,
    code: ErrorCode,
    message: impl Into<String>,
    id: Option<String>,
) {
    count_error(code);
    session.emit(&ServerFrame::Error {
        code,
        message: message.into(),
        id,
    });
}

pub(crate) fn count_error(code: ErrorCode) {
    metrics::counter!("kefu_errors_total", "code" => code.as_str()).increment(1);
}
