//! `/admin/kb/*`: the missed questions, the entries and their edits, the merged export, the
//! try box and the answer figures. Mounted behind the gate for permission `edit_kb` (editors
//! and admins, or the break-glass token); errors are JSON `{"error", "field"?}` with 400 (not
//! JSON / wrong shape), 422 (a rule broken), 404, 409 or 503 (no store).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, MethodRouter};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, Caller};
use crate::app::AppState;
use crate::kb::edits::{self, Change, EditError, Patch};

/// Longest try-box question, as for customer messages.
const TRY_MAX_CHARS: usize = 2000;

/// The routes, mounted by [`super::routes`] behind the `edit_kb` gate.
pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/admin/kb/entries", get(list).post(create)),
        ("/admin/kb/entries/{id}", patch(update).delete(remove)),
        ("/admin/kb/entries/{id}/history", get(history)),
        ("/admin/kb/export", get(export)),
        ("/admin/kb/try", post(try_question)),
        ("/admin/kb/misses", get(super::kb_figures::misses)),
        ("/admin/kb/stats", get(super::kb_figures::stats)),
    ]
}

/// The store of the knowledge-base tools, or 503 without one.
pub(super) fn kb_store(
    state: &AppState,
) -> Result<std::sync::Arc<crate::store::Store>, AdminError> {
    state.kb.store().cloned().ok_or_else(|| {
        AdminError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the knowledge-base tools need the store (store.url is empty)",
        )
    })
}

/// `GET /admin/kb/entries`: the merged entries in use and their version.
async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let index = state.bot.index();
    let body = json!({"version": state.bot.version(), "entries": index.entries()});
    ([(header::CACHE_CONTROL, "no-store")], Json(body))
}

/// Applies one edit in the caller's name; the answer is the new version and the entry.
async fn edit(
    state: &AppState,
    caller: &Caller,
    peer: SocketAddr,
    change: Change,
) -> Result<Json<Value>, AdminError> {
    let edit = edits::apply(state, &caller.name(), &peer.ip().to_string(), change).await?;
    Ok(Json(json!({
        "version": edit.version,
        "serving": state.bot.version(),
        "entry": edit.after,
    })))
}

/// `POST /admin/kb/entries`: a new entry (the fields of a KB file's `[[entry]]`).
async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let entry = edits::parse(&body)?;
    edit(&state, &caller, peer, Change::Create(entry)).await
}

/// `PATCH /admin/kb/entries/{id}`: changes fields; `add_questions` adds paraphrases.
async fn update(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let patch = edits::parse::<Patch>(&body)?;
    edit(&state, &caller, peer, Change::Update(id, patch)).await
}

/// `DELETE /admin/kb/entries/{id}`.
async fn remove(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    edit(&state, &caller, peer, Change::Delete(id)).await
}

/// `GET /admin/kb/entries/{id}/history`: every stored edit of the entry, before and after.
async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let store = kb_store(&state)?;
    let edits = store.kb_history(&id).await.map_err(EditError::from)?;
    Ok(Json(json!({"entry_id": id, "edits": edits})))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

/// The TOML authoring format's shape, for the export.
#[derive(serde::Serialize)]
struct TomlFile<'a> {
    entry: &'a [faq_index::Entry],
}

/// `GET /admin/kb/export?format=toml|jsonl`: the merged KB (files plus edits), loadable as is.
async fn export(
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, AdminError> {
    let index = state.bot.index();
    let entries = index.entries();
    let (body, kind) = match q.format.as_deref().unwrap_or("toml") {
        "toml" => match toml::to_string(&TomlFile { entry: entries }) {
            Ok(text) => (text, "application/toml; charset=utf-8"),
            Err(err) => {
                let message = err.to_string();
                return Err(AdminError::refused(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    message,
                ));
            }
        },
        "jsonl" => {
            let mut text = String::new();
            for e in entries {
                text.push_str(&serde_json::to_string(e).unwrap_or_default());
                text.push('\n');
            }
            (text, "application/jsonl; charset=utf-8")
        }
        other => {
            let message = format!("format `{other}`: use toml or jsonl");
            return Err(AdminError::field(
                StatusCode::BAD_REQUEST,
                message,
                "format",
            ));
        }
    };
    let version = state.bot.version().to_string();
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CACHE_CONTROL, "no-store".into()),
            (
                header::HeaderName::from_static("x-kefu-kb-version"),
                version,
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TryBody {
    text: String,
    #[serde(default)]
    lang: Option<String>,
}

/// `POST /admin/kb/try {"text","lang"}`: what the bot would do, not counted anywhere.
async fn try_question(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let q: TryBody = edits::parse(&body)?;
    if q.text.trim().is_empty() || q.text.chars().count() > TRY_MAX_CHARS {
        let message = format!("must be 1-{TRY_MAX_CHARS} characters");
        return Err(AdminError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            "text",
        ));
    }
    if let Some(lang) = q.lang.as_deref().filter(|l| !matches!(*l, "zh" | "en")) {
        let message = format!("`{lang}`: use zh or en");
        return Err(AdminError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            "lang",
        ));
    }
    let limit = state.settings.kb.suggestions.max(5);
    let found = state
        .bot
        .search(q.text, limit)
        .await
        .map_err(|err| AdminError::refused(StatusCode::SERVICE_UNAVAILABLE, err.to_string()))?;
    let matches: Vec<_> = found
        .outcome
        .matches
        .iter()
        .map(|m| {
            let entry = found.index.entry(&m.id);
            json!({
                "entry_id": m.id,
                "question": m.question,
                "score": m.score,
                "answer": entry.map(|e| e.answer.clone()),
                "category": entry.map(|e| e.category.clone()),
            })
        })
        .collect();
    Ok(Json(json!({
        "decision": found.outcome.decision,
        "confidence": found.outcome.confidence,
        "version": state.bot.version(),
        "lang": q.lang,
        "matches": matches,
    })))
}
