//! The gate of the admin API and what handlers read from it.
//!
//! Every `/admin/*` route sits behind [`gate`], mounted as a `route_layer` on the methods of
//! each route of a permission group (see [`super::routes`]): so a handler cannot forget to
//! authorize, and an unknown path (404) or method (405) is answered before any token is
//! looked at, as it always was.
//! The gate leaves the [`Caller`] in the request's extensions; handlers take it, or the
//! named reader ([`Operator`]) or the store ([`Records`]), as extractors.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AdminError;
use crate::app::AppState;
use crate::operators::Permission;
use crate::store::Store;
use crate::telemetry::metric;

/// Header naming the person reading (required on reads of personal data with the
/// break-glass token, which names nobody by itself).
pub const OPERATOR_HEADER: &str = "x-kefu-operator";

/// Who made an admin call.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator's id, or `None` for the break-glass token (the reader then names
    /// themselves in `X-Kefu-Operator` where a read needs it).
    pub operator: Option<String>,
    /// The reader named in `X-Kefu-Operator`; only counts for the break-glass token, since
    /// an operator is named by their own token whatever header they send.
    pub named: Option<String>,
    /// A sign-in pass, when this call gave a good code (`POST /admin/otp-session` hands it out).
    pub pass: Option<(String, u64)>,
}

impl Caller {
    /// Who is reading: the operator, else the name the break-glass caller gave, if any.
    pub fn reader(&self) -> Option<&str> {
        self.operator.as_deref().or(self.named.as_deref())
    }

    /// The name written to the audit log: the reader, else `break-glass`.
    pub fn name(&self) -> String {
        self.reader().unwrap_or("break-glass").to_string()
    }
}

/// The middleware of every admin route: authorizes for the permission it was mounted with
/// and hands the [`Caller`] on in the request's extensions, or answers the refusal.
pub async fn gate(
    State((app, need)): State<(AppState, Permission)>,
    mut request: Request,
    next: Next,
) -> Response {
    match authorize(&app, request.headers(), need).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// Checks `Authorization: Bearer TOKEN` for `need`: an operator's token (`ID.SECRET`, whose
/// role must allow it) or the break-glass `server.admin_token`, each use of which is audited.
/// With neither configured the admin API is disabled. Public for `/ws/supervisor`, which
/// takes its credentials from the query before it can ask.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    need: Permission,
) -> Result<Caller, AdminError> {
    let break_glass = state.settings.server.admin_token.expose();
    if break_glass.is_empty() && state.operators.is_empty() {
        return Err(AdminError::Disabled);
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let named = named_operator(headers);
    if !break_glass.is_empty() && constant_time_eq(given.as_bytes(), break_glass.as_bytes()) {
        let caller = Caller {
            operator: None,
            named,
            pass: None,
        };
        audit_break_glass(state, &caller, need);
        return Ok(caller);
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
                named,
                pass: pass.flatten(),
            })
        }
        Some(op) => {
            tracing::warn!(operator = %op.id, action = need.as_str(), "admin call outside the operator's role");
            Err(AdminError::NotAllowed)
        }
        None => {
            metrics::counter!(metric::AUTH_FAILURES_TOTAL, "socket" => "admin").increment(1);
            tracing::warn!("admin request with a bad or missing token");
            Err(AdminError::BadToken)
        }
    }
}

/// Counts, logs and audits (off the request's path) one use of the break-glass token.
fn audit_break_glass(state: &AppState, caller: &Caller, need: Permission) {
    metrics::counter!(metric::ADMIN_BREAK_GLASS_TOTAL).increment(1);
    tracing::warn!(
        action = need.as_str(),
        "admin call with the break-glass token"
    );
    if let Some(store) = state.store.clone() {
        let entry = crate::store::AuditEntry {
            at_ms: crate::session::now_ms(),
            operator: caller.name(),
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
}

/// An enrolled operator's second step: a valid pass (`X-Kefu-OTP-Session`) or a good code
/// (`X-Kefu-OTP`, which earns a pass). 401 `otp_required` / `bad_otp` otherwise (counted by
/// the sign-in failure throttle like a bad token).
fn second_step(
    state: &AppState,
    headers: &HeaderMap,
    op: &crate::operators::Operator,
) -> Result<Option<(String, u64)>, AdminError> {
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
            AdminError::SecondStep(err.message())
        })
}

/// The reader named in the X-Kefu-Operator header, if any.
fn named_operator(headers: &HeaderMap) -> Option<String> {
    headers
        .get(OPERATOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
}

/// Compares without an early exit, so response timing does not leak the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AdminError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(AdminError::Ungated)
    }
}

/// The person reading personal data: the operator, or for the break-glass token the name in
/// `X-Kefu-Operator` (400 without one), so that every such read is audited under a name.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller
            .reader()
            .map(|who| Self(who.to_string()))
            .ok_or(AdminError::NoReader)
    }
}

/// The conversation store, or 503 when it is disabled (`store.url` empty).
#[derive(Clone)]
pub struct Records(pub Arc<Store>);

impl FromRequestParts<AppState> for Records {
    type Rejection = AdminError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        state.store.clone().map(Self).ok_or(AdminError::NoStore)
    }
}
