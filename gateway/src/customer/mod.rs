//! The customer socket: `GET /ws/customer`.
//!
//! One task per connection runs the shared [`connection`] loop; [`flow`] handles the frames
//! the customer sends. The greeting (or the replay on resume) is written
//! straight to the socket before the loop starts, so it is never queued behind other work.

mod flow;
mod resume;
mod trigger;

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

use crate::app::AppState;
use crate::connection::{self, End, FrameHandler};
use crate::limits::{ConnectionPermit, FrameVerdict, Refusal};
use crate::protocol::{Channel, Envelope, ErrorCode, Lang, ServerFrame};
use crate::session::{Resolved, Session};
use crate::telemetry::metric;

/// Query parameters of the customer socket, validated by [`CustomerQuery::validate`].
#[derive(Debug, Default, Deserialize)]
pub struct CustomerQuery {
    visitor: Option<String>,
    channel: Option<String>,
    lang: Option<String>,
    session: Option<String>,
    last_seq: Option<String>,
    resume_token: Option<String>,
    /// The shop's signed token for a logged-in customer (issue #17).
    identity: Option<String>,
}

/// A resume request: the session id, its token (empty when none was sent) and `last_seq`.
struct Resume {
    id: String,
    token: String,
    last_seq: u64,
}

struct Params {
    visitor: Option<String>,
    channel: Channel,
    lang: Lang,
    resume: Option<Resume>,
    identity: Option<String>,
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
            Some(n) => n.parse().map_err(|_| {
                let n = crate::protocol::clip(n, 24);
                format!("last_seq must be a whole number, got `{n}`")
            })?,
        };
        if self.visitor.as_ref().is_some_and(|v| v.len() > 128) {
            return Err("visitor id is longer than 128 bytes".into());
        }
        if self.session.as_ref().is_some_and(|v| v.len() > 64) {
            return Err("session id is longer than 64 bytes".into());
        }
        // A token too long to be ours is simply wrong (answered as an unknown session).
        let token = self
            .resume_token
            .filter(|t| t.len() <= crate::session::token::MAX_TOKEN_LEN)
            .unwrap_or_default();
        Ok(Params {
            // Too long to be a token of ours: refused like any bad token (`bad_identity`).
            identity: self.identity.filter(|t| !t.is_empty()),
            visitor: self.visitor.filter(|v| !v.is_empty()),
            channel,
            lang,
            resume: self.session.filter(|s| !s.is_empty()).map(|id| Resume {
                id,
                token,
                last_seq,
            }),
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
            metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => "bad_query")
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
    metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => reason).increment(1);
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
        Some(r) => (Some((r.id.as_str(), r.token.as_str())), r.last_seq),
        None => (None, 0),
    };
    let from_log = match &params.resume {
        Some(r) if app.journal.is_durable() && app.sessions.get_live(&r.id).is_none() => {
            resume::from_log(&app, &r.id, &r.token).await
        }
        _ => resume::FromLog::NotTried,
    };
    let resolved = match from_log {
        resume::FromLog::Resumed(session) => Resolved::Resumed(session),
        // An ended session is answered as before its log existed: not known any more.
        resume::FromLog::NotTried | resume::FromLog::Closed | resume::FromLog::Unknown => {
            app.sessions.resolve(
                requested,
                params.visitor.clone(),
                params.channel,
                params.lang,
            )
        }
    };
    let (session, token) = match resolved {
        Resolved::Resumed(s) => (s, None),
        Resolved::New(f) => (f.session, Some(f.token)),
        Resolved::Expired(f) => {
            let message =
                "the session to resume has ended (grace period over); a new session starts";
            if !notice(&mut socket, ErrorCode::SessionExpired, message).await {
                app.sessions.remove(&f.session.id);
                return;
            }
            (f.session, Some(f.token))
        }
        Resolved::Unknown(f) => {
            // Same words whether the id never existed or the token is wrong: no probing.
            let message = "no session with this id and resume_token; a new session starts";
            if !notice(&mut socket, ErrorCode::SessionUnknown, message).await {
                app.sessions.remove(&f.session.id);
                return;
            }
            (f.session, Some(f.token))
        }
    };
    let fresh = token.is_some();
    tracing::Span::current().record("session", &*session.id);
    // A fresh chat of an identified customer; a resumed one keeps the identity it had.
    let identity = match params.identity.as_deref().filter(|_| fresh) {
        None => None,
        Some(jwt) => match app.identity.as_ref().map(|v| v.verify(jwt)) {
            Some(Ok(identity)) => Some(identity),
            refused => {
                let why = match refused {
                    Some(Err(crate::identity::IdentityError::Refused(why))) => why,
                    _ => "no_secret",
                };
                metrics::counter!(metric::IDENTITY_REFUSED_TOTAL, "why" => why).increment(1);
                tracing::debug!(why, "identity token refused");
                let frame = crate::continuity::bad_identity_frame();
                if !notice_frame(&mut socket, &frame).await {
                    app.sessions.remove(&session.id);
                    return;
                }
                None
            }
        },
    };
    if let Some(resume_token) = token {
        let text = app
            .settings
            .greeting
            .script(session.channel, session.lang)
            .to_string();
        session.emit(&ServerFrame::Greeting {
            session_id: session.id.to_string(),
            resume_token,
            text,
        });
        // The greeting is written once the log has the session (a resume can then find it).
        if session.sync().await.is_err() {
            app.sessions.remove(&session.id);
            return;
        }
    }
    let mut attachment = session.attach(
        conn,
        if fresh { 0 } else { last_seq },
        app.settings.limits.outbound_queue,
    );
    // Links to photos and files in frames are signed afresh as they go out (replays too).
    attachment.refresh = app.attachments.refresher(String::new());
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
        metrics::histogram!(metric::GREETING_LATENCY_SECONDS)
            .record(accepted_at.elapsed().as_secs_f64());
        session.greeted();
        tracing::debug!(channel = ?session.channel, lang = ?session.lang, "greeted");
        if let Some(identity) = identity {
            crate::continuity::identify(&app, &session, identity).await;
        }
    } else {
        tracing::debug!(last_seq, "resumed");
    }

    let mut handler = CustomerHandler {
        app: app.clone(),
        session: session.clone(),
    };
    let end = connection::run(
        &mut socket,
        connection::Timing::of(&app.settings),
        app.shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    session.detach(conn);
    match end {
        End::Closed(reason) => {
            tracing::debug!(%reason, "session closed");
            app.sessions.remove(&session.id);
        }
        End::Dropped(reason) => tracing::debug!(reason, "connection ended, session resumable"),
    }
}

/// Writes a notice that precedes a new session, so it carries seq 0 and the greeting stays
/// seq 1. Returns whether the socket took it.
async fn notice(socket: &mut WebSocket, code: ErrorCode, message: &str) -> bool {
    notice_frame(socket, &ServerFrame::error(code, message)).await
}

async fn notice_frame(socket: &mut WebSocket, frame: &ServerFrame) -> bool {
    if let ServerFrame::Error { code, .. } = frame {
        crate::session::count_error(*code);
    }
    let text = Envelope { seq: 0, frame }.to_json();
    socket.send(Message::Text(text.into())).await.is_ok()
}

struct CustomerHandler {
    app: AppState,
    session: Arc<Session>,
}

impl FrameHandler for CustomerHandler {
    const SOCKET: &'static str = "customer";

    async fn on_text(&mut self, text: &str) -> Option<String> {
        let ended = flow::on_text(&self.app, &self.session, text).await;
        if ended.is_some() {
            // The last frames go out before the socket closes: once the log has them.
            connection::sync_for_shutdown(&self.session).await;
        }
        ended
    }

    fn tell(&mut self, code: ErrorCode, message: &'static str) {
        self.session.error(code, message, None);
    }

    fn take_frame(&mut self) -> FrameVerdict {
        self.session.take_frame()
    }

    async fn on_shutdown(&mut self) -> Option<u64> {
        if self.app.journal.is_durable() {
            connection::sync_for_shutdown(&self.session).await;
            return Some(self.session.durable_seq());
        }
        self.session.emit(&ServerFrame::Closed {
            reason: "shutting_down".into(),
        });
        None
    }
}
