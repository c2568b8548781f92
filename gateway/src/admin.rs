//! The admin API: `/admin/*`, behind the bearer token `server.admin_token`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::server::AppState;

/// Checks `Authorization: Bearer <server.admin_token>`; an empty token disables the API.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let expected = state.settings.server.admin_token.expose();
    if expected.is_empty() {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "the admin API is disabled: set server.admin_token (KEFU__SERVER__ADMIN_TOKEN)",
            )
                .into_response(),
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        metrics::counter!("kefu_auth_failures_total", "socket" => "admin").increment(1);
        tracing::warn!("admin request with a bad or missing token");
        Err(Box::new(
            (StatusCode::UNAUTHORIZED, "bad or missing admin token").into_response(),
        ))
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
    if let Err(refused) = authorize(&state, &headers) {
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
    if let Err(refused) = authorize(&state, &headers) {
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
