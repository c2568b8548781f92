//! The records part of the admin API: conversations, search, a customer's data export and
//! deletion, the audit log, tickets and reports. Every read of personal data names its reader
//! ([`Reader`]: the operator, or `X-Kefu-Operator` with the break-glass token) and is written
//! to the audit log, with the peer address, before it is answered.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, Operator, Records};
use crate::app::AppState;
use crate::records::{dates, reports};
use crate::session::now_ms;
use crate::store::{AuditEntry, Store};

/// Whoever reads personal data, with what they need for it: the store, their name and
/// their address for the audit log. Taken after the gate, so it refuses in today's order:
/// no store (503) before no named reader (400).
pub struct Reader {
    store: Arc<Store>,
    who: String,
    peer: SocketAddr,
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let Records(store) = Records::from_request_parts(parts, state).await?;
        let Operator(who) = Operator::from_request_parts(parts, state).await?;
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await?;
        Ok(Self { store, who, peer })
    }
}

impl Reader {
    /// Writes this reader's `action` on `target` to the audit log; the read is refused
    /// (500) if it cannot be recorded.
    async fn audit(&self, action: &str, target: &str, detail: String) -> Result<(), AdminError> {
        let entry = AuditEntry {
            at_ms: now_ms(),
            operator: self.who.clone(),
            action: action.to_string(),
            target: target.to_string(),
            peer: self.peer.ip().to_string(),
            detail,
        };
        Ok(self.store.audit(&entry).await?)
    }

    /// How a visitor id appears in the audit log and in log lines: its blind index, never
    /// the id.
    fn visitor_ref(&self, visitor: &str) -> String {
        format!("visitor:{}", self.store.keys().blind_index(visitor))
    }
}

/// `GET /admin/conversations/{id}`: one conversation with its transcript, decrypted.
pub async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    reader: Reader,
) -> Result<Response, AdminError> {
    reader
        .audit("read_conversation", &id, String::new())
        .await?;
    let Some(mut record) = reader.store.conversation(&id).await? else {
        return Err(AdminError::refused(
            StatusCode::NOT_FOUND,
            "no such conversation",
        ));
    };
    // Photos and files of the transcript with links of the auditor's own: opening one is
    // an audited read of its own.
    if let Some(links) = state.attachments.links() {
        let link_reader = format!("operator:{}", reader.who);
        for line in &mut record.transcript {
            if let Some(info) = line.rich.attachment.as_mut() {
                links.fill(info, &link_reader);
            }
        }
    }
    Ok(Json(record).into_response())
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    visitor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// Parses optional `from`/`to` days; `to` is inclusive (up to the end of that day).
fn range(from: Option<&str>, to: Option<&str>) -> Result<(Option<u64>, Option<u64>), AdminError> {
    let day = |d: Option<&str>| {
        d.filter(|d| !d.is_empty())
            .map(dates::parse_day)
            .transpose()
            .map_err(AdminError::bad_request)
    };
    Ok((day(from)?, day(to)?.map(|t| t + 86_400_000)))
}

/// `GET /admin/conversations?visitor=…&from=YYYY-MM-DD&to=YYYY-MM-DD`: summaries, no text.
pub async fn search(
    Query(q): Query<SearchQuery>,
    reader: Reader,
) -> Result<Json<Value>, AdminError> {
    let (from, to) = range(q.from.as_deref(), q.to.as_deref())?;
    let visitor = q.visitor.filter(|v| !v.is_empty());
    if visitor.is_none() && from.is_none() && to.is_none() {
        return Err(AdminError::bad_request("give `visitor` and/or `from`/`to`"));
    }
    let target = visitor
        .as_deref()
        .map(|v| reader.visitor_ref(v))
        .unwrap_or_else(|| "all".into());
    let detail = format!(
        "from={} to={}",
        q.from.as_deref().unwrap_or(""),
        q.to.as_deref().unwrap_or("")
    );
    reader.audit("search", &target, detail).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let found = reader
        .store
        .search(visitor.as_deref(), from, to, limit)
        .await?;
    Ok(Json(json!({"conversations": found})))
}

/// `GET /admin/customers/{visitor}/export`: everything kept about one customer.
pub async fn export(
    Path(visitor): Path<String>,
    reader: Reader,
) -> Result<Json<Value>, AdminError> {
    let target = reader.visitor_ref(&visitor);
    reader
        .audit("export_customer", &target, String::new())
        .await?;
    let conversations = reader.store.export_visitor(&visitor).await?;
    Ok(Json(json!({
        "visitor": visitor,
        "exported_at_ms": now_ms(),
        "conversations": conversations,
    })))
}

/// `DELETE /admin/customers/{visitor}`: deletes one customer's conversations on request.
pub async fn delete_customer(
    Path(visitor): Path<String>,
    reader: Reader,
) -> Result<Json<Value>, AdminError> {
    let target = reader.visitor_ref(&visitor);
    let deleted = reader.store.delete_visitor(&visitor).await?;
    tracing::info!(%target, deleted, operator = %reader.who, "customer data deleted on request");
    let detail = format!("deleted={deleted}");
    reader.audit("delete_customer", &target, detail).await?;
    Ok(Json(json!({"deleted": deleted})))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    operator: Option<String>,
    from: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/audit?operator=…&from=YYYY-MM-DD&limit=N`: newest first.
pub async fn audit_log(
    Query(q): Query<AuditQuery>,
    Records(store): Records,
) -> Result<Json<Value>, AdminError> {
    let (from, _) = range(q.from.as_deref(), None)?;
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let operator = q.operator.filter(|o| !o.is_empty());
    let entries = store.audit_log(operator.as_deref(), from, limit).await?;
    Ok(Json(json!({"entries": entries})))
}

#[derive(Debug, Deserialize)]
pub struct WeekQuery {
    week: Option<String>,
    format: Option<String>,
}

/// `GET /admin/reports/complaints?week=YYYY-Www&format=json|csv` (default: this week, JSON).
pub async fn complaints(
    Query(q): Query<WeekQuery>,
    Records(store): Records,
) -> Result<Response, AdminError> {
    let week = q.week.unwrap_or_else(|| dates::week_of(now_ms()));
    let (from, to) = dates::parse_week(&week).map_err(AdminError::bad_request)?;
    let report = reports::complaint_report(&week, store.complaints(from, to).await?);
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            reports::complaint_csv(&report),
        )
            .into_response()),
        Some(other) => Err(AdminError::bad_request(format!(
            "format `{other}`: use json or csv"
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /admin/reports/summary?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 7 days).
pub async fn summary(
    Query(q): Query<RangeQuery>,
    Records(store): Records,
) -> Result<Json<Value>, AdminError> {
    let (from, to) = range(q.from.as_deref(), q.to.as_deref())?;
    let to = to.unwrap_or_else(|| now_ms() + 1);
    let from = from.unwrap_or_else(|| to.saturating_sub(7 * 86_400_000));
    let records = store.facts(from, to).await?;
    Ok(Json(json!({
        "from_ms": from,
        "to_ms": to,
        "summary": reports::summary(&records),
    })))
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
    Query(q): Query<TicketsQuery>,
    reader: Reader,
) -> Result<Json<Value>, AdminError> {
    let status = q.status.filter(|s| !s.is_empty());
    let group = q.group.filter(|g| !g.is_empty() && g.len() <= 128);
    let detail = format!("status={}", status.as_deref().unwrap_or(""));
    let target = group.clone().unwrap_or_else(|| "all".into());
    reader.audit("read_tickets", &target, detail).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let found = reader
        .store
        .tickets(group.as_deref(), status.as_deref(), limit)
        .await?;
    Ok(Json(json!({"tickets": found})))
}
