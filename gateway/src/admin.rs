//! The admin API: `/admin/*`, for operators with their own tokens and roles, and behind the
//! break-glass bearer token `server.admin_token`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub use crate::operators::Permission;
use crate::server::AppState;
use crate::telemetry::metric;

/// Who made an admin call.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator's id, or `None` for the break-glass token (the reader then names
    /// themselves in `X-Kefu-Operator` where a read needs it).
    pub operator: Option<String>,
    /// A sign-in pass, when this call gave a good code (see [`otp_session`]).
    pub pass: Option<(String, u64)>,
}

fn refuse(status: StatusCode, why: &'static str) -> Box<Response> {
    Box::new((status, why).into_response())
}

/// Checks `Authorization: Bearer TOKEN` for `need`: an operator's token (`ID.SECRET`, whose
/// role must allow it) or the break-glass `server.admin_token`, each use of which is audited.
/// With neither configured the admin API is disabled.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    need: Permission,
) -> Result<Caller, Box<Response>> {
    let break_glass = state.settings.server.admin_token.expose();
    if break_glass.is_empty() && state.operators.is_empty() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: add operators (server.operators_file) or set server.admin_token (KEFU__SERVER__ADMIN_TOKEN)",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !break_glass.is_empty() && constant_time_eq(given.as_bytes(), break_glass.as_bytes()) {
        metrics::counter!(metric::ADMIN_BREAK_GLASS_TOTAL).increment(1);
        tracing::warn!(
            action = need.as_str(),
            "admin call with the break-glass token"
        );
        if let Some(store) = state.store.clone() {
            let named = crate::records::http::named_operator(headers);
            let entry = crate::store::AuditEntry {
                at_ms: crate::session::now_ms(),
                operator: named.unwrap_or_else(|| "break-glass".into()),
                action: "break_glass".into(),
                target: need.as_str().into(),
                peer: String::new(),
                detail: "server.admin_token used".into(),
            };
            tokio::spawn(async move {
                if let Err(err) = store.audit(&entry).await {
                    tracing::error!(error = %err, "cannot audit a break-glass call");
                }
            });
        }
        return Ok(Caller {
            operator: None,
            pass: None,
        });
    }
    let op = state.operators.authenticate(given).await;
    // The second step before the role: a stolen token alone learns nothing about its role.
    let pass = match &op {
        Some(op) => Some(second_step(state, headers, op)?),
        None => None,
    };
    match op {
        Some(op) if op.role.allows(need) => {
            if let Some(ip) = crate::guard::peer_ip() {
                let agent = headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok());
                state
                    .sign_in
                    .signed_in("operator", &op.id, ip, agent.unwrap_or(""));
            }
            Ok(Caller {
                operator: Some(op.id),
                pass: pass.flatten(),
            })
        }
        Some(op) => {
            tracing::warn!(operator = %op.id, action = need.as_str(), "admin call outside the operator's role");
            Err(refuse(
                StatusCode::FORBIDDEN,
                "your role does not allow this admin call",
            ))
        }
        None => {
            metrics::counter!(metric::AUTH_FAILURES_TOTAL, "socket" => "admin").increment(1);
            tracing::warn!("admin request with a bad or missing token");
            Err(refuse(
                StatusCode::UNAUTHORIZED,
                "bad or missing admin token",
            ))
        }
    }
}

/// An enrolled operator's second step: a valid pass (`X-Kefu-OTP-Session`) or a good code
/// (`X-Kefu-OTP`, which earns a pass). 401 `otp_required` / `bad_otp` otherwise (counted by
/// the sign-in failure throttle like a bad token).
fn second_step(
    state: &AppState,
    headers: &HeaderMap,
    op: &crate::operators::Operator,
) -> Result<Option<(String, u64)>, Box<Response>> {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let account = crate::signin::Account {
        role: "operator",
        id: &op.id,
        secret: op.otp.as_ref(),
        token_hash: &op.token_hash,
    };
    if state
        .sign_in
        .pass_ok(&account, value(crate::signin::PASS_HEADER))
    {
        return Ok(None);
    }
    state
        .sign_in
        .check_code(&account, value(crate::signin::OTP_HEADER))
        .map_err(|err| {
            metrics::counter!(metric::AUTH_FAILURES_TOTAL, "socket" => "admin_otp").increment(1);
            tracing::warn!(operator = %op.id, code = err.code().as_str(), "admin second step refused");
            refuse(StatusCode::UNAUTHORIZED, err.message())
        })
}

/// `POST /admin/otp-session`: an operator's sign-in with a code (`X-Kefu-OTP`) answered with
/// a pass, `{"otp_session":"…","expires_at_ms":…}`, to send as `X-Kefu-OTP-Session` (or
/// `?otp_session=` on `/ws/supervisor`) instead of a new code until it expires. For an
/// operator who is not enrolled (or the break-glass token) `otp_session` is `null`.
pub async fn otp_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authorize(&state, &headers, Permission::SignIn).await {
        Ok(caller) => {
            let (pass, expires) = caller.pass.unzip();
            let body = json!({"otp_session": pass, "expires_at_ms": expires});
            ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(refused) => *refused,
    }
}

/// Compares without an early exit, so response timing does not leak the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /admin/kb/reload`: rebuilds the knowledge base; a bad one is refused (422) and the
/// old one kept. Sessions are not touched.
pub async fn reload_kb(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers, Permission::ReloadKb).await {
        return *refused;
    }
    match state.bot.reload().await {
        Ok(entries) => Json(json!({"reloaded": true, "entries": entries})).into_response(),
        Err(err) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"reloaded": false, "error": err.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /admin/supervisor`: queues, agents and SLA figures for the supervisor view
/// (`/supervisor/` polls it); see [`crate::web::supervisor`].
pub async fn supervisor(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers, Permission::Supervise).await {
        return *refused;
    }
    match crate::web::supervisor::report(&state).await {
        Ok(report) => ([(header::CACHE_CONTROL, "no-store")], Json(report)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "supervisor report failed");
            (StatusCode::SERVICE_UNAVAILABLE, "routing state unavailable").into_response()
        }
    }
}
