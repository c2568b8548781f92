//! The records part of the admin API (bearer `server.admin_token`): conversations, search,
//! a customer's data export and deletion, the audit log, and reports. Every read of personal
//! data names its reader (`X-Kefu-Operator`) and is written to the audit log, with the peer
//! address, before it is answered.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{dates, reports};
use crate::admin::{authorize, Caller, Permission};
use crate::server::AppState;
use crate::session::now_ms;
use crate::store::{AuditEntry, Store, StoreError};
use crate::telemetry::metric;

/// Header naming the person reading (required on reads of personal data).
pub const OPERATOR_HEADER: &str = "x-kefu-operator";

type Refused = Box<Response>;

fn error(status: StatusCode, message: impl Into<String>) -> Refused {
    Box::new((status, Json(json!({"error": message.into()}))).into_response())
}

fn store_failed(err: StoreError) -> Response {
    metrics::counter!(metric::STORE_READ_ERRORS_TOTAL).increment(1);
    tracing::error!(error = %err, "conversation store read failed");
    *error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

/// Token checked for `need`, store enabled.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    need: Permission,
) -> Result<(Arc<Store>, Caller), Refused> {
    let caller = authorize(state, headers, need).await?;
    let store = state.store.clone().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the conversation store is disabled (store.url is empty)",
        )
    })?;
    Ok((store, caller))
}

/// The store and the person reading it: every read of personal data needs both. An
/// operator is named by their token; the break-glass token needs the X-Kefu-Operator header.
async fn open_as_operator(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Arc<Store>, String), Refused> {
    let (store, caller) = open(state, headers, Permission::ReadRecords).await?;
    let who = match caller.operator {
        Some(id) => id,
        None => named_operator(headers).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "reads of conversations must name the reader in the X-Kefu-Operator header",
            )
        })?,
    };
    Ok((store, who))
}

/// The reader named in the X-Kefu-Operator header, if any.
pub fn named_operator(headers: &HeaderMap) -> Option<String> {
    headers
        .get(OPERATOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
}

async fn audit(
    store: &Store,
    who: &str,
    action: &str,
    target: &str,
    peer: SocketAddr,
    detail: String,
) -> Result<(), Refused> {
    let entry = AuditEntry {
        at_ms: now_ms(),
        operator: who.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        peer: peer.ip().to_string(),
        detail,
    };
    store
        .audit(&entry)
        .await
        .map_err(|e| Box::new(store_failed(e)))
}

/// How a visitor id appears in the audit log and in log lines: its blind index, never the id.
fn visitor_ref(store: &Store, visitor: &str) -> String {
    format!("visitor:{}", store.keys().blind_index(visitor))
}

/// `GET /admin/conversations/{id}`: one conversation with its transcript, decrypted.
pub async fn conversation(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (store, who) = match open_as_operator(&state, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    if let Err(refused) = audit(&store, &who, "read_conversation", &id, peer, String::new()).await {
        return *refused;
    }
    match store.conversation(&id).await {
        Ok(Some(mut record)) => {
            // Photos and files of the transcript with links of the auditor's own: opening
            // one is an audited read of its own.
            if let Some(links) = state.attachments.links() {
                let reader = format!("operator:{who}");
                for line in &mut record.transcript {
                    if let Some(info) = line.rich.attachment.as_mut() {
                        links.fill(info, &reader);
                    }
                }
            }
            Json(record).into_response()
        }
        Ok(None) => *error(StatusCode::NOT_FOUND, "no such conversation"),
        Err(err) => store_failed(err),
    }
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    visitor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// Parses optional `from`/`to` days; `to` is inclusive (up to the end of that day).
fn range(from: Option<&str>, to: Option<&str>) -> Result<(Option<u64>, Option<u64>), Refused> {
    let day = |d: Option<&str>| {
        d.filter(|d| !d.is_empty())
            .map(dates::parse_day)
            .transpose()
            .map_err(|e| error(StatusCode::BAD_REQUEST, e))
    };
    Ok((day(from)?, day(to)?.map(|t| t + 86_400_000)))
}

/// `GET /admin/conversations?visitor=…&from=YYYY-MM-DD&to=YYYY-MM-DD`: summaries, no text.
pub async fn search(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    let (store, who) = match open_as_operator(&state, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let (from, to) = match range(q.from.as_deref(), q.to.as_deref()) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let visitor = q.visitor.filter(|v| !v.is_empty());
    if visitor.is_none() && from.is_none() && to.is_none() {
        return *error(StatusCode::BAD_REQUEST, "give `visitor` and/or `from`/`to`");
    }
    let target = visitor
        .as_deref()
        .map(|v| visitor_ref(&store, v))
        .unwrap_or_else(|| "all".into());
    let detail = format!(
        "from={} to={}",
        q.from.as_deref().unwrap_or(""),
        q.to.as_deref().unwrap_or("")
    );
    if let Err(refused) = audit(&store, &who, "search", &target, peer, detail).await {
        return *refused;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match store.search(visitor.as_deref(), from, to, limit).await {
        Ok(found) => Json(json!({"conversations": found})).into_response(),
        Err(err) => store_failed(err),
    }
}

/// `GET /admin/customers/{visitor}/export`: everything kept about one customer.
pub async fn export(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(visitor): Path<String>,
) -> Response {
    let (store, who) = match open_as_operator(&state, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let target = visitor_ref(&store, &visitor);
    if let Err(refused) = audit(
        &store,
        &who,
        "export_customer",
        &target,
        peer,
        String::new(),
    )
    .await
    {
        return *refused;
    }
    match store.export_visitor(&visitor).await {
        Ok(conversations) => Json(json!({
            "visitor": visitor,
            "exported_at_ms": now_ms(),
            "conversations": conversations,
        }))
        .into_response(),
        Err(err) => store_failed(err),
    }
}

/// `DELETE /admin/customers/{visitor}`: deletes one customer's conversations on request.
pub async fn delete_customer(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(visitor): Path<String>,
) -> Response {
    let (store, who) = match open_as_operator(&state, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let target = visitor_ref(&store, &visitor);
    match store.delete_visitor(&visitor).await {
        Ok(deleted) => {
            tracing::info!(%target, deleted, operator = %who, "customer data deleted on request");
            let detail = format!("deleted={deleted}");
            if let Err(refused) =
                audit(&store, &who, "delete_customer", &target, peer, detail).await
            {
                return *refused;
            }
            Json(json!({"deleted": deleted})).into_response()
        }
        Err(err) => store_failed(err),
    }
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    operator: Option<String>,
    from: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/audit?operator=…&from=YYYY-MM-DD&limit=N`: newest first.
pub async fn audit_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let store = match open(&state, &headers, Permission::ReadAudit).await {
        Ok((s, _)) => s,
        Err(refused) => return *refused,
    };
    let (from, _) = match range(q.from.as_deref(), None) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let operator = q.operator.filter(|o| !o.is_empty());
    match store.audit_log(operator.as_deref(), from, limit).await {
        Ok(entries) => Json(json!({"entries": entries})).into_response(),
        Err(err) => store_failed(err),
    }
}

#[derive(Debug, Deserialize)]
pub struct WeekQuery {
    week: Option<String>,
    format: Option<String>,
}

/// `GET /admin/reports/complaints?week=YYYY-Www&format=json|csv` (default: this week, JSON).
pub async fn complaints(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WeekQuery>,
) -> Response {
    let store = match open(&state, &headers, Permission::Reports).await {
        Ok((s, _)) => s,
        Err(refused) => return *refused,
    };
    let week = q.week.unwrap_or_else(|| dates::week_of(now_ms()));
    let (from, to) = match dates::parse_week(&week) {
        Ok(r) => r,
        Err(e) => return *error(StatusCode::BAD_REQUEST, e),
    };
    let report = match store.complaints(from, to).await {
        Ok(c) => reports::complaint_report(&week, c),
        Err(err) => return store_failed(err),
    };
    match q.format.as_deref() {
        None | Some("json") => Json(report).into_response(),
        Some("csv") => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            reports::complaint_csv(&report),
        )
            .into_response(),
        Some(other) => *error(
            StatusCode::BAD_REQUEST,
            format!("format `{other}`: use json or csv"),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /admin/reports/summary?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 7 days).
pub async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<RangeQuery>,
) -> Response {
    let store = match open(&state, &headers, Permission::Reports).await {
        Ok((s, _)) => s,
        Err(refused) => return *refused,
    };
    let (from, to) = match range(q.from.as_deref(), q.to.as_deref()) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let to = to.unwrap_or_else(|| now_ms() + 1);
    let from = from.unwrap_or_else(|| to.saturating_sub(7 * 86_400_000));
    match store.facts(from, to).await {
        Ok(records) => Json(json!({
            "from_ms": from,
            "to_ms": to,
            "summary": reports::summary(&records),
        }))
        .into_response(),
        Err(err) => store_failed(err),
    }
}

#[derive(Debug, Deserialize)]
pub struct TicketsQuery {
    status: Option<String>,
    group: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/tickets?status=open|claimed|answered|delivered&group=…`: left messages with
/// their status, decrypted (issue #17); `late` marks those answered after more than 24 h.
/// Audited like any read of personal data.
pub async fn tickets(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<TicketsQuery>,
) -> Response {
    let (store, who) = match open_as_operator(&state, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let status = q.status.filter(|s| !s.is_empty());
    let group = q.group.filter(|g| !g.is_empty() && g.len() <= 128);
    let detail = format!("status={}", status.as_deref().unwrap_or(""));
    let target = group.clone().unwrap_or_else(|| "all".into());
    if let Err(refused) = audit(&store, &who, "read_tickets", &target, peer, detail).await {
        return *refused;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    match store
        .tickets(group.as_deref(), status.as_deref(), limit)
        .await
    {
        Ok(found) => Json(json!({"tickets": found})).into_response(),
        Err(err) => store_failed(err),
    }
}
