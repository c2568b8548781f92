//! `/admin/kb/*`: the missed questions, the entries and their edits, the merged export, the
//! try box and the answer figures. The same authorisation as every admin route
//! ([`crate::admin::authorize`], permission `edit_kb`: editors and admins, or the break-glass
//! token); errors are JSON `{"error", "field"?}` with 400 (not JSON / wrong shape), 422 (a rule
//! broken), 404, 409 or 503 (no store).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::edits::{self, Change, EditError, Patch};
use crate::admin::{authorize, Permission};
use crate::server::AppState;

/// Longest try-box question, as for customer messages.
const TRY_MAX_CHARS: usize = 2000;

/// The routes, merged into the gateway's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/kb/entries", get(list).post(create))
        .route("/admin/kb/entries/{id}", patch(update).delete(remove))
        .route("/admin/kb/entries/{id}/history", get(history))
        .route("/admin/kb/export", get(export))
        .route("/admin/kb/try", post(try_question))
        .route("/admin/kb/misses", get(super::figures::misses))
        .route("/admin/kb/stats", get(super::figures::stats))
}

pub(super) fn error(
    status: StatusCode,
    message: impl Into<String>,
    field: Option<String>,
) -> Response {
    let mut body = json!({"error": message.into()});
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, Json(body)).into_response()
}

pub(super) fn edit_failed(err: EditError) -> Response {
    let message = err.to_string();
    match err {
        EditError::BadBody { field, .. } => error(StatusCode::BAD_REQUEST, message, field),
        EditError::Invalid { field, .. } => {
            error(StatusCode::UNPROCESSABLE_ENTITY, message, Some(field))
        }
        EditError::NotFound(_) => error(StatusCode::NOT_FOUND, message, None),
        EditError::Exists(_) => error(StatusCode::CONFLICT, message, Some("id".into())),
        EditError::NoStore => error(StatusCode::SERVICE_UNAVAILABLE, message, None),
        EditError::Store(err) => {
            tracing::error!(error = %err, "knowledge-base store call failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store failed", None)
        }
    }
}

/// Authorised for `edit_kb`; the operator's id (or the break-glass reader's name).
pub(super) async fn caller(state: &AppState, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let caller = authorize(state, headers, Permission::EditKb).await?;
    Ok(caller.operator.unwrap_or_else(|| {
        crate::records::http::named_operator(headers).unwrap_or_else(|| "break-glass".into())
    }))
}

pub(super) fn no_store() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the knowledge-base tools need the store (store.url is empty)",
        None,
    )
}

/// `GET /admin/kb/entries`: the merged entries in use and their version.
async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = caller(&state, &headers).await {
        return *refused;
    }
    let index = state.bot.index();
    let body = json!({"version": state.bot.version(), "entries": index.entries()});
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn edit(state: &AppState, headers: &HeaderMap, peer: SocketAddr, change: Change) -> Response {
    let who = match caller(state, headers).await {
        Ok(who) => who,
        Err(refused) => return *refused,
    };
    match edits::apply(state, &who, &peer.ip().to_string(), change).await {
        Ok(edit) => Json(json!({
            "version": edit.version,
            "serving": state.bot.version(),
            "entry": edit.after,
        }))
        .into_response(),
        Err(err) => edit_failed(err),
    }
}

/// `POST /admin/kb/entries`: a new entry (the fields of a KB file's `[[entry]]`).
async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match edits::parse(&body) {
        Ok(entry) => edit(&state, &headers, peer, Change::Create(entry)).await,
        Err(err) => match caller(&state, &headers).await {
            Ok(_) => edit_failed(err),
            Err(refused) => *refused,
        },
    }
}

/// `PATCH /admin/kb/entries/{id}`: changes fields; `add_questions` adds paraphrases.
async fn update(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match edits::parse::<Patch>(&body) {
        Ok(patch) => edit(&state, &headers, peer, Change::Update(id, patch)).await,
        Err(err) => match caller(&state, &headers).await {
            Ok(_) => edit_failed(err),
            Err(refused) => *refused,
        },
    }
}

/// `DELETE /admin/kb/entries/{id}`.
async fn remove(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    edit(&state, &headers, peer, Change::Delete(id)).await
}

/// `GET /admin/kb/entries/{id}/history`: every stored edit of the entry, before and after.
async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = caller(&state, &headers).await {
        return *refused;
    }
    let Some(store) = state.kb.store() else {
        return no_store();
    };
    match store.kb_history(&id).await {
        Ok(edits) => Json(json!({"entry_id": id, "edits": edits})).into_response(),
        Err(err) => edit_failed(err.into()),
    }
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
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Response {
    if let Err(refused) = caller(&state, &headers).await {
        return *refused;
    }
    let index = state.bot.index();
    let entries = index.entries();
    let (body, kind) = match q.format.as_deref().unwrap_or("toml") {
        "toml" => match toml::to_string(&TomlFile { entry: entries }) {
            Ok(text) => (text, "application/toml; charset=utf-8"),
            Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string(), None),
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
            return error(StatusCode::BAD_REQUEST, message, Some("format".into()));
        }
    };
    let version = state.bot.version().to_string();
    (
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
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TryBody {
    text: String,
    #[serde(default)]
    lang: Option<String>,
}

/// `POST /admin/kb/try {"text","lang"}`: what the bot would do, not counted anywhere.
async fn try_question(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = caller(&state, &headers).await {
        return *refused;
    }
    let q: TryBody = match edits::parse(&body) {
        Ok(q) => q,
        Err(err) => return edit_failed(err),
    };
    if q.text.trim().is_empty() || q.text.chars().count() > TRY_MAX_CHARS {
        let message = format!("must be 1-{TRY_MAX_CHARS} characters");
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            Some("text".into()),
        );
    }
    if let Some(lang) = q.lang.as_deref().filter(|l| !matches!(*l, "zh" | "en")) {
        let message = format!("`{lang}`: use zh or en");
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            Some("lang".into()),
        );
    }
    let limit = state.settings.kb.suggestions.max(5);
    match state.bot.search(q.text, limit).await {
        Ok(found) => {
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
            Json(json!({
                "decision": found.outcome.decision,
                "confidence": found.outcome.confidence,
                "version": state.bot.version(),
                "lang": q.lang,
                "matches": matches,
            }))
            .into_response()
        }
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string(), None),
    }
}
