//! The connection loop shared by the customer and agent sockets.
//!
//! One task per connection runs one `select!` over the shutdown signal, the outbox's kick,
//! the outbound queue, the socket and a ping timer. Outbound frames are drained before the
//! socket is read again (`biased`), so a client that floods without reading fills its own
//! queue and is dropped as a slow consumer instead of growing memory.
//!
//! The loop is generic over the socket (any `Sink` of messages and `Stream` of results, as
//! axum's `WebSocket` is), so its unit tests drive it with channels instead of a server.

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;

use crate::app::AppState;
use crate::limits::FrameVerdict;
use crate::outbox::{Attachment, Kicked};
use crate::protocol::ErrorCode;
use crate::shutdown::ShutdownListener;
use crate::telemetry::metric;

#[cfg(test)]
mod tests;

/// What a connection loop needs of a socket: axum's `WebSocket`, or channels in tests.
pub trait Socket:
    Sink<Message, Error = axum::Error> + Stream<Item = Result<Message, axum::Error>> + Unpin + Send
{
}

impl<S> Socket for S where
    S: Sink<Message, Error = axum::Error>
        + Stream<Item = Result<Message, axum::Error>>
        + Unpin
        + Send
{
}

/// The loop's clock: how long a write may take and how often to ping.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `limits.write_timeout_ms`: a burst that takes longer drops the connection.
    pub write_timeout: Duration,
    /// `websocket.ping_interval_s` (0: no pings); three silent intervals drop the client.
    pub ping_every_s: u64,
}

impl Timing {
    pub fn of(settings: &crate::config::Settings) -> Self {
        Self {
            write_timeout: Duration::from_millis(settings.limits.write_timeout_ms),
            ping_every_s: settings.websocket.ping_interval_s,
        }
    }
}

/// Why a connection loop ended.
pub enum End {
    /// The party is done (the customer closed the chat).
    Closed(String),
    /// Only the socket is gone; the party may resume.
    Dropped(&'static str),
}

/// What a socket does with the frames its client sends.
pub trait FrameHandler {
    /// Metric label of the socket.
    const SOCKET: &'static str;
    /// A text frame; `Some(reason)` ends the session.
    fn on_text(&mut self, text: &str) -> impl std::future::Future<Output = Option<String>> + Send;
    /// Tells the client what was wrong with what it sent (an `error` frame).
    fn tell(&mut self, code: ErrorCode, message: &'static str);
    /// A binary frame: not part of the protocol.
    fn on_binary(&mut self) {
        self.tell(
            ErrorCode::BinaryNotSupported,
            "binary frames are not supported; send JSON text frames",
        );
    }
    /// Counts one inbound frame (of any kind) against the party's frame budget.
    fn take_frame(&mut self) -> FrameVerdict;
    /// A frame was dropped over budget: tell the client `rate_limited`.
    fn over_budget(&mut self) {
        self.tell(
            ErrorCode::RateLimited,
            "too many frames; frames are being dropped, slow down",
        );
    }
    /// The node is shutting down: say goodbye through the outbox. With a durable log the
    /// party resumes elsewhere: the answer is then the last `seq` it may have seen, and the
    /// loop tells it `reconnect` and closes with 1012 (service restart).
    fn on_shutdown(&mut self) -> impl std::future::Future<Output = Option<u64>> + Send;
}

/// Close code 1012: the service restarts; reconnect (RFC 6455 registry).
pub const SERVICE_RESTART: u16 = 1012;

/// How long the goodbye waits for the log to take what is still pending.
const SHUTDOWN_SYNC: Duration = Duration::from_secs(2);

/// Waits (bounded) until the session's pending frames are durable, for the goodbye.
pub async fn sync_for_shutdown(session: &crate::session::Session) {
    let _ = tokio::time::timeout(SHUTDOWN_SYNC, session.sync()).await;
}

/// Runs one connection until its client goes, the party is done, the node shuts down or
/// the connection is kicked (too slow, or replaced by a newer one).
pub async fn run<S: Socket, H: FrameHandler>(
    socket: &mut S,
    timing: Timing,
    mut shutdown: ShutdownListener,
    attachment: &mut Attachment,
    handler: &mut H,
) -> End {
    let write_timeout = timing.write_timeout;
    let ping_every = timing.ping_every_s;
    let mut ping = tokio::time::interval(Duration::from_secs(ping_every.max(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.recv() => {
                let resumable = handler.on_shutdown().await;
                flush(socket, attachment, write_timeout, H::SOCKET).await;
                match resumable {
                    Some(seq) => {
                        let text = format!(r#"{{"type":"reconnect","seq":{seq}}}"#);
                        let _ = tokio::time::timeout(
                            write_timeout,
                            socket.send(Message::Text(text.into())),
                        )
                        .await;
                        close(socket, SERVICE_RESTART, "service restart; resume the session").await;
                    }
                    None => close(socket, close_code::AWAY, "server shutting down").await,
                }
                return End::Dropped("shutdown");
            }
            _ = attachment.wake.notified() => {
                match write_ready(socket, attachment, write_timeout, H::SOCKET).await {
                    Ok(true) => {}
                    Ok(false) => return End::Dropped("write failed"),
                    Err(Kicked) => {
                        close(socket, close_code::AGAIN, "too slow or replaced; resume the session").await;
                        return End::Dropped("kicked");
                    }
                }
            }
            incoming = socket.next() => {
                last_heard = Instant::now();
                match incoming {
                    None => return End::Dropped("client went away"),
                    Some(Err(err)) => {
                        if is_too_large(err) {
                            metrics::counter!(metric::ERRORS_TOTAL, "code" => "frame_too_large").increment(1);
                            close(socket, close_code::SIZE, "frame too large").await;
                            drain_input(socket).await;
                            return End::Dropped("frame too large");
                        }
                        return End::Dropped("protocol error");
                    }
                    Some(Ok(Message::Text(_) | Message::Binary(_))) if !admitted(handler) => {}
                    Some(Ok(Message::Text(text))) => {
                        metrics::counter!(metric::FRAMES_IN_TOTAL, "socket" => H::SOCKET).increment(1);
                        // Boxed: handling a frame (bot search, routing, the store) is a deep
                        // future, and inline it would sit in every idle connection's task.
                        if let Some(reason) = Box::pin(handler.on_text(&text)).await {
                            // Let the closing frames reach the client before the socket goes.
                            flush(socket, attachment, write_timeout, H::SOCKET).await;
                            close(socket, close_code::NORMAL, "session closed").await;
                            return End::Closed(reason);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        metrics::counter!(metric::FRAMES_IN_TOTAL, "socket" => H::SOCKET).increment(1);
                        handler.on_binary();
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

/// Whether an inbound frame is within the party's budget (telling it when it is not).
fn admitted<H: FrameHandler>(handler: &mut H) -> bool {
    match handler.take_frame() {
        FrameVerdict::Handle => true,
        FrameVerdict::DropAndTell => {
            handler.over_budget();
            false
        }
        FrameVerdict::Drop => false,
    }
}

/// Writes what is ready right now.
async fn flush<S: Socket>(
    socket: &mut S,
    attachment: &mut Attachment,
    timeout: Duration,
    label: &'static str,
) {
    let _ = write_ready(socket, attachment, timeout, label).await;
}

/// Writes every frame the attachment has ready, in one flush (a burst, such as a replay or
/// an agent's history, costs one write to the socket rather than one per frame); gives up
/// after `timeout` (a stuck client must not hold its task). `Ok(false)`: the write failed.
pub async fn write_ready<S: Socket>(
    socket: &mut S,
    attachment: &Attachment,
    timeout: Duration,
    label: &'static str,
) -> Result<bool, Kicked> {
    let burst = async {
        let mut written = 0u64;
        while let Some(mut frame) = attachment.pull()? {
            if let Some(fresh) = attachment.refresh.as_ref().and_then(|f| f(frame.as_str())) {
                frame = fresh.into();
            }
            if socket.feed(Message::Text(frame)).await.is_err() {
                return Ok(false);
            }
            written += 1;
        }
        if written > 0 {
            if socket.flush().await.is_err() {
                return Ok(false);
            }
            metrics::counter!(metric::FRAMES_OUT_TOTAL, "socket" => label).increment(written);
        }
        Ok(true)
    };
    tokio::time::timeout(timeout, burst)
        .await
        .unwrap_or(Ok(false))
}

/// A connection slot for a signed-in socket (agent, supervisor) from `ip`, or the 503
/// refusal, counted by reason.
pub fn admit(
    app: &AppState,
    ip: std::net::IpAddr,
) -> Result<crate::limits::ConnectionPermit, Box<axum::response::Response>> {
    use axum::response::IntoResponse;
    app.limits.admit(ip).map_err(|refusal| {
        metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => refusal.as_str())
            .increment(1);
        let status = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        Box::new((status, refusal.as_str()).into_response())
    })
}

pub async fn close<S: Socket>(socket: &mut S, code: u16, reason: &'static str) {
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

/// After a close for a frame too large, reads (and discards) what the client still sends for
/// a moment: closing a socket with unread input makes the kernel send a reset, which can
/// overtake the close frame, and the client would see a broken connection instead of 1009.
/// Bounded in time and reads, so a client streaming forever cannot hold the task.
async fn drain_input<S: Socket>(socket: &mut S) {
    let until = Instant::now() + Duration::from_millis(500);
    for _ in 0..256 {
        match tokio::time::timeout_at(until, socket.next()).await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

fn is_too_large(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    matches!(
        err.into_inner().downcast_ref::<WsError>(),
        Some(WsError::Capacity(_))
    )
}

/// Applies the configured buffer and size limits to an upgrade.
pub fn configure(
    ws: axum::extract::ws::WebSocketUpgrade,
    app: &AppState,
) -> axum::extract::ws::WebSocketUpgrade {
    let ws_settings = &app.settings.websocket;
    let max_frame = app.settings.limits.max_frame_bytes;
    ws.read_buffer_size(ws_settings.read_buffer_bytes)
        .write_buffer_size(ws_settings.write_buffer_bytes)
        .max_write_buffer_size(ws_settings.max_write_buffer_bytes)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
}
