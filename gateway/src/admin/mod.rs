//! The admin API: `/admin/*`, for operators with their own tokens and roles, and behind the
//! break-glass bearer token `server.admin_token`.
//!
//! The routes are mounted in groups, one per [`Permission`], each behind the [`auth::gate`]
//! layer: authorization happens once, before any handler, and handlers only say what they
//! need ([`Caller`], [`Operator`], [`Records`]) and answer `Result<_, AdminError>`.
//!
//! - [`auth`]: the gate (token, second step, role) and the extractors;
//! - [`error`]: every refusal and its exact answer;
//! - [`records`]: conversations, customers' data, the audit log, tickets and reports;
//! - [`kb`], [`kb_figures`]: the knowledge-base tools under `/admin/kb/*`.

pub mod auth;
pub mod error;
pub mod kb;
pub mod kb_figures;
pub mod records;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub use self::auth::{authorize, constant_time_eq, Caller, Operator, Records, OPERATOR_HEADER};
pub use self::error::AdminError;
pub use crate::operators::Permission;
use crate::server::AppState;

/// Every `/admin/*` route, each group behind the gate for its permission. A `route_layer`
/// runs only for a matched route, so unknown paths and methods keep their plain 404/405.
pub fn routes(state: &AppState) -> Router<AppState> {
    let gated = |need: Permission, routes: Router<AppState>| {
        routes.route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), need),
            auth::gate,
        ))
    };
    let read_records = Router::new()
        .route("/admin/conversations", get(records::search))
        .route("/admin/conversations/{id}", get(records::conversation))
        .route("/admin/customers/{visitor}/export", get(records::export))
        .route(
            "/admin/customers/{visitor}",
            delete(records::delete_customer),
        )
        .route("/admin/tickets", get(records::tickets));
    let audit = Router::new().route("/admin/audit", get(records::audit_log));
    let reports = Router::new()
        .route("/admin/reports/complaints", get(records::complaints))
        .route("/admin/reports/summary", get(records::summary));
    let supervise = Router::new().route("/admin/supervisor", get(supervisor));
    let sign_in = Router::new().route("/admin/otp-session", post(otp_session));
    let reload = Router::new().route("/admin/kb/reload", post(reload_kb));
    Router::new()
        .merge(gated(Permission::ReadRecords, read_records))
        .merge(gated(Permission::ReadAudit, audit))
        .merge(gated(Permission::Reports, reports))
        .merge(gated(Permission::Supervise, supervise))
        .merge(gated(Permission::SignIn, sign_in))
        .merge(gated(Permission::ReloadKb, reload))
        .merge(gated(Permission::EditKb, kb::routes()))
}

/// `POST /admin/otp-session`: an operator's sign-in with a code (`X-Kefu-OTP`) answered with
/// a pass, `{"otp_session":"…","expires_at_ms":…}`, to send as `X-Kefu-OTP-Session` (or
/// `?otp_session=` on `/ws/supervisor`) instead of a new code until it expires. For an
/// operator who is not enrolled (or the break-glass token) `otp_session` is `null`.
async fn otp_session(caller: Caller) -> impl IntoResponse {
    let (pass, expires) = caller.pass.unzip();
    let body = json!({"otp_session": pass, "expires_at_ms": expires});
    ([(header::CACHE_CONTROL, "no-store")], Json(body))
}

/// `POST /admin/kb/reload`: rebuilds the knowledge base; a bad one is refused (422) and the
/// old one kept. Sessions are not touched.
async fn reload_kb(State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    match state.bot.reload().await {
        Ok(entries) => Ok(Json(json!({"reloaded": true, "entries": entries}))),
        Err(err) => Err(AdminError::BadKb(err.to_string())),
    }
}

/// `GET /admin/supervisor`: queues, agents and SLA figures for the supervisor view
/// (`/supervisor/` polls it); see [`crate::web::supervisor`].
async fn supervisor(State(state): State<AppState>) -> Result<impl IntoResponse, AdminError> {
    match crate::web::supervisor::report(&state).await {
        Ok(report) => Ok(([(header::CACHE_CONTROL, "no-store")], Json(report))),
        Err(err) => {
            tracing::error!(error = %err, "supervisor report failed");
            Err(AdminError::Unavailable("routing state unavailable"))
        }
    }
}
