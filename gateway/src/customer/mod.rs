//! The customer socket: `GET /ws/customer`.
//!
//! One task per connection runs one `select!` loop over the shutdown signal, the session's
//! kick, the outbound queue and the socket; [`flow`] handles the frames the customer sends. The greeting (or the replay on resume) is written
//! straight to the socket before the loop starts, so it is never queued behind other work.

mod flow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::Instrument;

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
    let ws_settings = &app.settings.websocket;
    let max_frame = app.settings.limits.max_frame_bytes;
    ws.read_buffer_size(ws_settings.read_buffer_bytes)
        .write_buffer_size(ws_settings.write_buffer_bytes)
        .max_write_buffer_size(ws_settings.max_write_buffer_bytes)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| {
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
    let write_timeout = Duration::from_millis(app.settings.limits.write_timeout_ms);
    for frame in std::mem::take(&mut attachment.replay) {
        if !write(&mut socket, frame, write_timeout).await {
            session.detach(conn);
            return;
        }
    }
    if fresh {
        metrics::histogram!("kefu_greeting_latency_seconds")
            .record(accepted_at.elapsed().as_secs_f64());
        session.set_state(SessionState::Bot);
        tracing::debug!(channel = ?session.channel, lang = ?session.lang, "greeted");
    } else {
        tracing::debug!(last_seq, "resumed");
    }

    let end = connection_loop(&mut socket, &app, &session, &mut attachment, write_timeout).await;
    session.detach(conn);
    match end {
        End::Closed(reason) => {
            tracing::debug!(%reason, "session closed");
            app.sessions.remove(&session.id);
        }
        End::Dropped(reason) => tracing::debug!(reason, "connection ended, session resumable"),
    }
}

/// Why a connection loop ended.
enum End {
    /// The session is over.
    Closed(String),
    /// Only the socket is gone; the session waits for a resume.
    Dropped(&'static str),
}

async fn connection_loop(
    socket: &mut WebSocket,
    app: &AppState,
    session: &Arc<Session>,
    attachment: &mut crate::session::Attachment,
    write_timeout: Duration,
) -> End {
    let mut shutdown = app.shutdown.listen();
    let ping_every = app.settings.websocket.ping_interval_s;
    let mut ping = tokio::time::interval(Duration::from_secs(ping_every.max(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.recv() => {
                session.emit(&ServerFrame::Closed { reason: "shutting_down".into() });
                while let Ok(frame) = attachment.rx.try_recv() {
                    if !write(socket, frame, write_timeout).await {
                        break;
                    }
                }
                close(socket, close_code::AWAY, "server shutting down").await;
                return End::Dropped("shutdown");
            }
            _ = attachment.kick.notified() => {
                close(socket, close_code::AGAIN, "too slow or replaced; resume the session").await;
                return End::Dropped("kicked");
            }
            out = attachment.rx.recv() => {
                let Some(frame) = out else { return End::Dropped("queue closed") };
                if !write(socket, frame, write_timeout).await {
                    return End::Dropped("write failed");
                }
            }
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    None => return End::Dropped("client went away"),
                    Some(Err(err)) => {
                        if is_too_large(err) {
                            metrics::counter!("kefu_errors_total", "code" => "frame_too_large").increment(1);
                            close(socket, close_code::SIZE, "frame too large").await;
                            return End::Dropped("frame too large");
                        }
                        return End::Dropped("protocol error");
                    }
                    Some(Ok(Message::Text(text))) => {
                        metrics::counter!("kefu_frames_in_total", "socket" => "customer").increment(1);
                        if let Some(reason) = flow::on_text(app, session, &text).await {
                            // Let the closing frames reach the client before the socket goes.
                            while let Ok(frame) = attachment.rx.try_recv() {
                                if !write(socket, frame, write_timeout).await { break; }
                            }
                            close(socket, close_code::NORMAL, "session closed").await;
                            return End::Closed(reason);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        metrics::counter!("kefu_frames_in_total", "socket" => "customer").increment(1);
                        send_error(session, ErrorCode::BinaryNotSupported,
                            "binary frames are not supported; send JSON text frames", None);
                    }
                    Some(Ok(Message::Close(_))) => return End::Dropped("client closed"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
            _ = ping.tick(), if ping_every > 0 => {
                if last_heard.elapsed() > Duration::from_secs(ping_every * 3) {
                    close(socket, close_code::AWAY, "no answer to pings").await;
                    return End::Dropped("silent");
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return End::Dropped("write failed");
                }
            }
        }
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

fn count_error(code: ErrorCode) {
    metrics::counter!("kefu_errors_total", "code" => code.as_str()).increment(1);
}

/// Writes one frame, giving up after `timeout` (a stuck client must not hold its task).
async fn write(socket: &mut WebSocket, frame: Utf8Bytes, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, socket.send(Message::Text(frame))).await {
        Ok(Ok(())) => {
            metrics::counter!("kefu_frames_out_total", "socket" => "customer").increment(1);
            true
        }
        _ => false,
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

fn is_too_large(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    matches!(
        err.into_inner().downcast_ref::<WsError>(),
        Some(WsError::Capacity(_))
    )
}
