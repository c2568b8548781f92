//! `GET /admin/kb/misses` and `GET /admin/kb/stats`: what the bot missed, grouped by meaning,
//! and the per-entry answer figures (behind the same `edit_kb` gate as [`super::kb`]).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::kb::kb_store;
use super::AdminError;
use crate::app::AppState;
use crate::kb::edits::EditError;
use crate::session::now_ms;
use crate::store::StatsRow;

/// Most misses grouped per read (the newest of the window).
const MISSES_READ: u32 = 5000;

#[derive(Debug, Deserialize)]
pub struct MissesQuery {
    since: Option<String>,
    lang: Option<String>,
}

/// `since` as ms since the epoch or a day `YYYY-MM-DD` (default: the last 7 days).
fn since_ms(since: Option<&str>) -> Result<u64, AdminError> {
    match since.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(now_ms().saturating_sub(7 * 86_400_000)),
        Some(s) => s
            .parse::<u64>()
            .or_else(|_| crate::records::dates::parse_day(s))
            .map_err(|e| AdminError::field(StatusCode::BAD_REQUEST, e, "since")),
    }
}

/// `GET /admin/kb/misses?since=…&lang=…`: missed questions grouped by meaning, biggest first.
pub async fn misses(
    State(state): State<AppState>,
    Query(q): Query<MissesQuery>,
) -> Result<impl IntoResponse, AdminError> {
    let store = kb_store(&state)?;
    let since = since_ms(q.since.as_deref())?;
    let lang = q.lang.filter(|l| !l.is_empty());
    let rows = store
        .misses_since(since, lang.as_deref(), MISSES_READ)
        .await
        .map_err(EditError::from)?;
    let total = rows.len();
    let clusters = tokio::task::spawn_blocking(move || crate::kb::misses::clusters(&rows))
        .await
        .map_err(|_| {
            AdminError::refused(StatusCode::SERVICE_UNAVAILABLE, "the blocking pool is gone")
        })?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "since_ms": since,
            "misses": total,
            "clusters": clusters,
        })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /admin/kb/stats?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 30 days): per
/// entry the totals and the helpful rate, and the per-day rows.
pub async fn stats(
    State(state): State<AppState>,
    Query(q): Query<StatsQuery>,
) -> Result<impl IntoResponse, AdminError> {
    let store = kb_store(&state)?;
    let today = now_ms();
    let day = |given: Option<String>, default_ms: u64, field: &'static str| match given {
        Some(d) if !d.is_empty() => crate::records::dates::parse_day(&d)
            .map(|_| d)
            .map_err(|e| AdminError::field(StatusCode::BAD_REQUEST, e, field)),
        _ => Ok(crate::kb::stats::day_of(default_ms)),
    };
    let from = day(q.from, today.saturating_sub(29 * 86_400_000), "from")?;
    let to = day(q.to, today, "to")?;
    let days = store.kb_stats(&from, &to).await.map_err(EditError::from)?;
    let mut totals: BTreeMap<String, StatsRow> = BTreeMap::new();
    for r in &days {
        let t = totals.entry(r.entry_id.clone()).or_default();
        t.entry_id = r.entry_id.clone();
        t.answered += r.answered;
        t.suggested += r.suggested;
        t.picked += r.picked;
        t.helpful_yes += r.helpful_yes;
        t.helpful_no += r.helpful_no;
        t.handoffs_after += r.handoffs_after;
    }
    let entries: Vec<_> = totals
        .into_values()
        .map(|t| {
            let rated = t.helpful_yes + t.helpful_no;
            let rate = (rated > 0).then(|| t.helpful_yes as f64 / rated as f64);
            json!({
                "entry_id": t.entry_id,
                "answered": t.answered,
                "suggested": t.suggested,
                "picked": t.picked,
                "helpful_yes": t.helpful_yes,
                "helpful_no": t.helpful_no,
                "helpful_rate": rate,
                "handoffs_after": t.handoffs_after,
            })
        })
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "from": from,
            "to": to,
            "entries": entries,
            "days": days,
        })),
    ))
}
