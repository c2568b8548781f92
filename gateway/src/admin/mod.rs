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
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};

pub use self::auth::{authorize, constant_time_eq, Caller, Operator, Records};
pub use self::error::AdminError;
use crate::app::AppState;
pub use crate::operators::Permission;

/// Every `/admin/*` route, each group behind the gate for its permission.
pub fn routes(state: &AppState) -> Router<AppState> {
    let read_records = vec![
        ("/admin/conversations", get(records::search)),
        ("/admin/conversations/{id}", get(records::conversation)),
        ("/admin/customers/{visitor}/export", get(records::export)),
        (
            "/admin/customers/{visitor}",
            delete(records::delete_customer),
        ),
        ("/admin/tickets", get(records::tickets)),
    ];
    let reports = vec![
        ("/admin/reports/complaints", get(records::complaints)),
        ("/admin/reports/summary", get(records::summary)),
    ];
    [
        (Permission::ReadRecords, read_records),
        (
            Permission::ReadAudit,
            vec![("/admin/audit", get(records::audit_log))],
        ),
        (Permission::Reports, reports),
        (
            Permission::Supervise,
            vec![("/admin/supervisor", get(supervisor))],
        ),
        (
            Permission::SignIn,
            vec![("/admin/otp-session", post(otp_session))],
        ),
        (
            Permission::ReloadKb,
            vec![("/admin/kb/reload", post(reload_kb))],
        ),
        (Permission::EditKb, kb::routes()),
    ]
    .into_iter()
    .fold(Router::new(), |router, (need, group)| {
        gated(router, state, need, group)
    })
}

/// Adds `group` to `router`, each route's methods behind the gate for `need`. The layer goes
/// on each method router, not on the router: a router's `route_layer` also wraps the 405
/// answer, and an unknown path (404) or method (405) is answered before any token is looked
/// at, as it always was.
fn gated(
    router: Router<AppState>,
    state: &AppState,
    need: Permission,
    group: Vec<(&'static str, MethodRouter<AppState>)>,
) -> Router<AppState> {
    let gate = axum::middleware::from_fn_with_state((state.clone(), need), auth::gate);
    group.into_iter().fold(router, |router, (path, methods)| {
        router.route(path, methods.route_layer(gate.clone()))
    })
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
