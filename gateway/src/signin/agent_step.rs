//! The second step of an agent's sign-in, on the upgraded socket before anything else.
//!
//! The token was checked before the upgrade (401 for a bad one). An enrolled agent then
//! gives a valid `otp_session` pass, or a code as `?otp=123456`, or, when the URL has
//! neither, as its first frame `{"type":"otp","code":"123456"}` within
//! `sign_in.otp_frame_timeout_ms` (the server says `otp_required` first, without closing, so
//! a client knows to ask). A good code earns `{"type":"otp_session",…}` (unnumbered, before
//! `welcome`); a wrong one gets `bad_otp`, counts against the address's sign-in failures
//! (`limits.auth_failures_per_minute`, then 429) and closes the socket, as does a missing one.

use std::net::IpAddr;

use axum::extract::ws::{Message, WebSocket};
use axum::http::{header, HeaderMap};
use serde_json::json;

use super::{Account, OtpError};
use crate::app::AppState;
use crate::roster::AgentEntry;
use crate::telemetry::metric;

/// What the upgrade request brought for the second step (and for the sign-in history).
pub struct SecondStep {
    otp: Option<String>,
    pass: Option<String>,
    ip: IpAddr,
    user_agent: String,
}

impl SecondStep {
    pub fn new(otp: Option<String>, pass: Option<String>, ip: IpAddr, headers: &HeaderMap) -> Self {
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Self {
            otp,
            pass,
            ip,
            user_agent: user_agent.unwrap_or("").to_string(),
        }
    }

    /// Whether the agent passed (then the sign-in is noted for the alerts); on `false` the
    /// socket has been told and closed.
    pub async fn check(self, app: &AppState, socket: &mut WebSocket, entry: &AgentEntry) -> bool {
        let passed = check(app, socket, entry, self.otp, self.pass, self.ip).await;
        if passed {
            let sign_in = &app.sign_in;
            sign_in.signed_in("agent", &entry.id, self.ip, &self.user_agent);
        }
        passed
    }
}

async fn check(
    app: &AppState,
    socket: &mut WebSocket,
    entry: &AgentEntry,
    otp: Option<String>,
    pass: Option<String>,
    ip: IpAddr,
) -> bool {
    let account = Account {
        role: "agent",
        id: &entry.id,
        secret: entry.otp.as_ref(),
        token_hash: &entry.token_hash,
    };
    if app.sign_in.pass_ok(&account, pass.as_deref()) {
        return true;
    }
    let code = match otp {
        Some(code) => Some(code),
        None => {
            let waiting = OtpError::Required;
            send(socket, error_frame(waiting, true)).await;
            first_frame_code(socket, app.sign_in.frame_timeout).await
        }
    };
    match app.sign_in.check_code(&account, code.as_deref()) {
        Ok(issued) => {
            if let Some((pass, expires)) = issued {
                let frame = json!({"type": "otp_session", "seq": 0, "otp_session": pass, "expires_at_ms": expires});
                send(socket, frame).await;
            }
            true
        }
        Err(err) => {
            if err == OtpError::Bad {
                app.agent_auth_failures.record_failure(ip);
                metrics::counter!(metric::AUTH_FAILURES_TOTAL, "socket" => "agent_otp")
                    .increment(1);
            }
            let peer = super::history::masked_ip(ip);
            tracing::warn!(%peer, code = err.code().as_str(), "agent second step refused");
            send(socket, error_frame(err, false)).await;
            crate::connection::close(socket, 1008, err.code().as_str()).await;
            false
        }
    }
}

fn error_frame(err: OtpError, waiting: bool) -> serde_json::Value {
    let message = if waiting {
        "this agent is enrolled for two-step sign-in: send {\"type\":\"otp\",\"code\":\"123456\"} now, or reconnect with ?otp=123456"
    } else {
        err.message()
    };
    json!({"type": "error", "seq": 0, "code": err.code().as_str(), "message": message})
}

async fn send(socket: &mut WebSocket, frame: serde_json::Value) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        socket.send(Message::Text(frame.to_string().into())),
    )
    .await;
}

/// The code of the first frame, if it is an `otp` frame and arrives in time.
async fn first_frame_code(socket: &mut WebSocket, wait: std::time::Duration) -> Option<String> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).ok()?;
                if frame["type"] != "otp" {
                    return None;
                }
                return frame["code"].as_str().map(|c| c.chars().take(16).collect());
            }
            // Pings and pongs are not the first frame.
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}
