//! The admin API: `/admin/*`, for operators with their own tokens and roles, and behind the
//! break-glass bearer token `server.admin_token`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub use crate::operators::Permission;
use crate::server::AppState;

/// Who made an admin call.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator's id, or `None` for the break-glass token (the reader then names
    /// themselves in `X-Kefu-Operator` where a read needs it).
    pub operator: Option<String>,
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
        metrics::counter!("kefu_admin_break_glass_total").increment(1);
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
        return Ok(Caller { operator: None });
    }
    match state.operators.authenticate(given).await {
        Some(op) if op.role.allows(need) => Ok(Caller {
            operator: Some(op.id),
        }),
        Some(op) => {
            tracing::warn!(operator = %op.id, action = need.as_str(), "admin call outside the operator's role");
            Err(refuse(
                StatusCode::FORBIDDEN,
                "your role does not allow this admin call",
            ))
        }
        None => {
            metrics::counter!("kefu_auth_failures_total", "socket" => "admin").increment(1);
            tracing::warn!("admin request with a bad or missing token");
            Err(refuse(
                StatusCode::UNAUTHORIZED,
                "bad or missing admin token",
            ))
        }
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
