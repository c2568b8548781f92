//! The supervisor channel: `GET /ws/supervisor`, a WebSocket on which supervisors (operators
//! with the `supervise` permission: roles supervisor and admin) receive alerts as they
//! happen: `new_sign_in` and `leak_blocked`.
//!
//! Alerts go out through one bounded broadcast ring: a supervisor whose socket is more than
//! `sign_in.alert_queue` alerts behind is disconnected on purpose (counted in
//! `kefu_slow_consumers_total{socket="supervisor"}`) rather than letting it hold memory or
//! slow the others; the page reconnects. Alerts are node-local: a supervisor sees those of
//! the node it is connected to; the audit log has all of them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::admin::Permission;
use crate::app::AppState;
use crate::limits::ConnectionPermit;
use crate::shutdown::ShutdownListener;
use crate::telemetry::metric;

/// The broadcast ring of alerts.
pub struct Alerts {
    tx: broadcast::Sender<Arc<str>>,
}

impl Alerts {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Sends `alert` (an object with `"type":"alert"`) to every connected supervisor.
    pub fn publish(&self, alert: &Value) {
        // No receiver is fine: nobody is watching, the audit log still has it.
        let _ = self.tx.send(alert.to_string().into());
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// Browsers cannot set headers on a WebSocket, so the credentials may come as parameters.
#[derive(Debug, Default, Deserialize)]
pub struct SupervisorQuery {
    token: Option<String>,
    otp: Option<String>,
    otp_session: Option<String>,
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut headers: HeaderMap,
    Query(query): Query<SupervisorQuery>,
) -> Response {
    if app.shutdown.is_triggered() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting_down").into_response();
    }
    let given = [
        (
            header::AUTHORIZATION,
            query.token.map(|t| format!("Bearer {t}")),
        ),
        (super::OTP_HEADER, query.otp),
        (super::PASS_HEADER, query.otp_session),
    ];
    for (name, value) in given {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.entry(name).or_insert(value);
        }
    }
    if let Err(refused) = crate::admin::authorize(&app, &headers, Permission::Supervise).await {
        return refused.into_response();
    }
    let permit = match crate::connection::admit(&app, peer.ip()) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    // Subscribed before the upgrade answer, so no alert raised after it is missed.
    let alerts = app.sign_in.alerts.subscribe();
    let shutdown = app.shutdown.listen();
    crate::connection::configure(ws, &app)
        .on_upgrade(move |socket| serve(socket, alerts, shutdown, permit))
}

async fn serve(
    mut socket: WebSocket,
    mut alerts: broadcast::Receiver<Arc<str>>,
    mut shutdown: ShutdownListener,
    _permit: ConnectionPermit,
) {
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.recv() => {
                return crate::connection::close(&mut socket, 1001, "shutting down").await;
            }
            alert = alerts.recv() => match alert {
                Ok(text) => {
                    let sent = tokio::time::timeout(
                        Duration::from_secs(5),
                        socket.send(Message::Text(text.as_ref().into())),
                    );
                    if !matches!(sent.await, Ok(Ok(()))) {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!(metric::SLOW_CONSUMERS_TOTAL, "socket" => "supervisor")
                        .increment(1);
                    return crate::connection::close(&mut socket, 1008, "too far behind; reconnect").await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Supervisors only listen; whatever they send is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}
