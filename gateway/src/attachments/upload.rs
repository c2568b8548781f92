//! `POST /upload?session=ID[&name=FILE]`: a photo or a PDF for a chat, as the raw body.
//!
//! Who: the customer of the session (its resume token in `X-Kefu-Resume-Token`) or the agent
//! who holds the chat (its bearer token). The body is read in frames of whatever size the
//! connection delivers and written to the store in sealed chunks of at most
//! `store::attachments::CHUNK` bytes, so an upload holds one chunk in memory, never the file.
//! The size is refused early from `Content-Length` and counted while streaming (a sender can
//! lie about it). An image is decoded only after it arrived whole, under a node-wide permit
//! (`decode_concurrency`), with its dimensions checked from the header first; what is served
//! is the re-encoded image, never the bytes as sent.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;

use super::picture::{self, Caps, PictureError};
use super::sniff::{self, Sniffed};
use crate::app::AppState;
use crate::store::attachments::{AttachmentMetaRow, CHUNK};
use crate::store::Store;
use crate::telemetry::metric;

/// The customer's credential for its own session.
pub const RESUME_TOKEN_HEADER: &str = "x-kefu-resume-token";

#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    session: Option<String>,
    name: Option<String>,
}

/// Why an upload was refused; each maps to one status and a stable `error` code.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a customer's resume token (X-Kefu-Resume-Token) or the bearer token of the agent holding the chat is required")]
    Unauthorized,
    #[error("this chat is not yours")]
    NotYourChat,
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("attachments need the conversation store, which is off on this gateway")]
    Disabled,
    #[error("the upload could not be stored; try again shortly")]
    Store,
    #[error("the upload did not arrive in time")]
    Timeout,
}

impl UploadError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            UploadError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            UploadError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            UploadError::NotYourChat => (StatusCode::FORBIDDEN, "not_your_chat"),
            UploadError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type"),
            UploadError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            UploadError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            UploadError::Disabled => (StatusCode::SERVICE_UNAVAILABLE, "disabled"),
            UploadError::Store => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            UploadError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
        }
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        metrics::counter!(metric::UPLOADS_TOTAL, "outcome" => code).increment(1);
        let body = serde_json::json!({"error": code, "message": self.to_string()});
        (status, Json(body)).into_response()
    }
}

fn store_failed(err: crate::store::StoreError) -> UploadError {
    tracing::error!(error = %err, "attachment store failed");
    UploadError::Store
}

pub async fn upload(
    State(app): State<AppState>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let allow = allowed_origin(&app, &headers);
    let mut response = match accept(&app, query, &headers, body).await {
        Ok(answer) => {
            metrics::counter!(metric::UPLOADS_TOTAL, "outcome" => "ok").increment(1);
            Json(answer).into_response()
        }
        Err(err) => err.into_response(),
    };
    if let Some(origin) = allow {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// `OPTIONS /upload`: the widget runs on the shop's own pages, so its upload is cross-origin
/// (with the resume-token header, hence a preflight). Origins as for the customer socket:
/// `server.widget_origins`, or any when that list is empty. No cookies are involved.
pub async fn preflight(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let Some(origin) = allowed_origin(&app, &headers) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::HeaderValue::from_static("POST"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::HeaderValue::from_static(
                    "content-type, x-kefu-resume-token, authorization",
                ),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                header::HeaderValue::from_static("600"),
            ),
        ],
    )
        .into_response()
}

fn allowed_origin(app: &AppState, headers: &HeaderMap) -> Option<header::HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let listed = &app.settings.server.widget_origins;
    let text = origin.to_str().ok()?.trim_end_matches('/');
    (listed.is_empty() || listed.iter().any(|l| l.eq_ignore_ascii_case(text)))
        .then(|| origin.clone())
}

async fn accept(
    app: &AppState,
    query: UploadQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Value, UploadError> {
    let settings = &app.attachments.settings;
    let store = app
        .store
        .as_ref()
        .filter(|_| app.attachments.links().is_some())
        .ok_or(UploadError::Disabled)?;
    let session = query
        .session
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .ok_or_else(|| UploadError::BadRequest("`session` (1-64 bytes) is required".into()))?;
    let uploader = uploader(app, &session, headers).await?;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > settings.max_bytes) {
        return Err(too_large(settings.max_bytes));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let now = crate::session::now_ms();
    let totals = store
        .reserve_attachment(
            &id,
            &session,
            &uploader,
            announced.unwrap_or(0),
            now,
            now.saturating_sub(60_000),
        )
        .await
        .map_err(store_failed)?;
    if totals.recent > settings.per_minute {
        let _ = store.drop_attachment(&id).await;
        return Err(UploadError::RateLimited(format!(
            "at most {} uploads a minute per chat; try again shortly",
            settings.per_minute
        )));
    }
    if totals.bytes > settings.session_bytes {
        let _ = store.drop_attachment(&id).await;
        return Err(UploadError::TooLarge(format!(
            "this chat has used its {} bytes of uploads",
            settings.session_bytes
        )));
    }
    let name = clean_name(query.name.as_deref());
    let timeout = Duration::from_millis(settings.upload_timeout_ms);
    let result = match tokio::time::timeout(timeout, receive(app, store, &id, name, body)).await {
        Ok(result) => result,
        Err(_) => Err(UploadError::Timeout),
    };
    if result.is_err() {
        if let Err(err) = store.drop_attachment(&id).await {
            tracing::error!(error = %err, "cannot remove a refused upload");
        }
    } else {
        tracing::info!(uploader = uploader_kind(&uploader), "attachment stored");
    }
    result
}

fn uploader_kind(uploader: &str) -> &'static str {
    if uploader.starts_with("agent:") {
        "agent"
    } else {
        "customer"
    }
}

/// Who uploads: `customer` or `agent:ID`.
async fn uploader(
    app: &AppState,
    session: &str,
    headers: &HeaderMap,
) -> Result<String, UploadError> {
    if let Some(token) = headers
        .get(RESUME_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let live = app.sessions.get_live(session);
        return match live {
            Some(s)
                if token.len() <= crate::session::token::MAX_TOKEN_LEN
                    && s.token_matches(token) =>
            {
                Ok("customer".into())
            }
            _ => Err(UploadError::Unauthorized),
        };
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or(UploadError::Unauthorized)?;
    // Agent tokens count against the agents' sign-in failure allowance (a customer's wrong
    // resume token does not: customers behind one address must not lock its agents out).
    let ip = crate::guard::peer_ip();
    if ip.is_some_and(|ip| app.agent_auth_failures.is_blocked(ip)) {
        return Err(UploadError::RateLimited(
            "too many failed sign-ins from this address; try again in a minute".into(),
        ));
    }
    let entry = match app.roster.authenticate(bearer.to_string()).await {
        Ok(entry) => entry,
        Err(crate::roster::AuthError::Refused) => {
            if let Some(ip) = ip {
                app.agent_auth_failures.record_failure(ip);
            }
            return Err(UploadError::Unauthorized);
        }
        Err(crate::roster::AuthError::Busy) => return Err(UploadError::Store),
    };
    let holds = app
        .agents
        .get(&entry.id)
        .is_some_and(|a| a.customer_node(session).is_some());
    if !holds {
        return Err(UploadError::NotYourChat);
    }
    Ok(format!("agent:{}", entry.id))
}

fn too_large(max: u64) -> UploadError {
    UploadError::TooLarge(format!("the file is larger than the limit of {max} bytes"))
}

/// A display name: the last path segment, no control characters, at most 100 characters.
fn clean_name(name: Option<&str>) -> Option<String> {
    let name = name?.rsplit(['/', '\\']).next()?.trim();
    let clean: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    (!clean.is_empty()).then_some(clean)
}

/// Streams the body into chunks of `raw` (images) or `file` (PDF), then finishes the row.
async fn receive(
    app: &AppState,
    store: &Store,
    id: &str,
    name: Option<String>,
    body: Body,
) -> Result<serde_json::Value, UploadError> {
    let settings = &app.attachments.settings;
    let caps = Caps {
        side: settings.max_side,
        pixels: settings.max_pixels,
        thumb_side: settings.thumb_side,
    };
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK.min(64 * 1024));
    let mut kind: Option<Sniffed> = None;
    let mut header_checked = false;
    let mut total: u64 = 0;
    let mut n: u64 = 0;
    loop {
        let frame = match stream.next().await {
            Some(Ok(frame)) => Some(frame),
            Some(Err(_)) => {
                return Err(UploadError::BadRequest("the upload was cut off".into()));
            }
            None => None,
        };
        let done = frame.is_none();
        if let Some(frame) = frame {
            total += frame.len() as u64;
            if total > settings.max_bytes {
                return Err(too_large(settings.max_bytes));
            }
            buf.extend_from_slice(&frame);
        }
        if kind.is_none() && (buf.len() >= sniff::HEAD || (done && !buf.is_empty())) {
            kind = Some(sniff::sniff(&buf).map_err(UploadError::Unsupported)?);
        }
        if let (Some(k), false) = (kind, header_checked) {
            // The dimensions as soon as the first bytes show them: a bomb goes before the
            // rest of it is even read.
            match k.image_format() {
                Some(format) if n == 0 => match picture::check_header(&buf, format, caps) {
                    Ok(Some(_)) => header_checked = true,
                    Ok(None) => {}
                    Err(err) => return Err(UploadError::TooLarge(err.to_string())),
                },
                _ => header_checked = true,
            }
        }
        let part = if kind.is_some_and(Sniffed::is_image) {
            "raw"
        } else {
            "file"
        };
        while buf.len() >= CHUNK || (done && !buf.is_empty()) {
            if kind.is_none() {
                break;
            }
            let rest = if buf.len() > CHUNK {
                buf.split_off(CHUNK)
            } else {
                Vec::new()
            };
            let chunk = std::mem::replace(&mut buf, rest);
            store
                .put_chunk(id, part, n, chunk)
                .await
                .map_err(store_failed)?;
            n += 1;
        }
        if done {
            break;
        }
    }
    let Some(kind) = kind else {
        return Err(UploadError::BadRequest("the upload is empty".into()));
    };
    metrics::histogram!(metric::UPLOAD_BYTES).record(total as f64);
    match kind.image_format() {
        None => {
            let name = name.unwrap_or_else(|| "document.pdf".into());
            let meta = AttachmentMetaRow {
                name: name.clone(),
                mime: "application/pdf".into(),
                thumb_mime: None,
            };
            store
                .finish_attachment(id, "file", &meta, total, None)
                .await
                .map_err(store_failed)?;
            Ok(answer(id, "file", &name, total, None))
        }
        Some(format) => image(app, store, id, name, format, caps).await,
    }
}

/// Decodes the staged image (one of `decode_concurrency` at a time), stores the clean image
/// and its thumbnail, drops the bytes as sent.
async fn image(
    app: &AppState,
    store: &Store,
    id: &str,
    name: Option<String>,
    format: image::ImageFormat,
    caps: Caps,
) -> Result<serde_json::Value, UploadError> {
    let _permit = app
        .attachments
        .decode_permit()
        .await
        .ok_or(UploadError::Store)?;
    let raw = store.read_part(id, "raw").await.map_err(store_failed)?;
    let processed = tokio::task::spawn_blocking(move || picture::process(&raw, format, caps))
        .await
        .map_err(|_| UploadError::Store)?
        .map_err(|err| match err {
            PictureError::TooLarge { .. } => UploadError::TooLarge(err.to_string()),
            PictureError::Unreadable(_) => UploadError::Unsupported(err.to_string()),
            PictureError::Encode => UploadError::Store,
        })?;
    store.delete_part(id, "raw").await.map_err(store_failed)?;
    let bytes = processed.file.len() as u64;
    for (part, data) in [("file", processed.file), ("thumb", processed.thumb)] {
        for (n, chunk) in data.chunks(CHUNK).enumerate() {
            store
                .put_chunk(id, part, n as u64, chunk.to_vec())
                .await
                .map_err(store_failed)?;
        }
    }
    let ext = if processed.mime == "image/jpeg" {
        "jpg"
    } else {
        "png"
    };
    let name = name.unwrap_or_else(|| format!("photo.{ext}"));
    let meta = AttachmentMetaRow {
        name: name.clone(),
        mime: processed.mime.into(),
        thumb_mime: Some(processed.thumb_mime.into()),
    };
    let dims = (processed.width, processed.height);
    store
        .finish_attachment(id, "image", &meta, bytes, Some(dims))
        .await
        .map_err(store_failed)?;
    Ok(answer(id, "image", &name, bytes, Some(dims)))
}

fn answer(
    id: &str,
    kind: &str,
    name: &str,
    bytes: u64,
    dims: Option<(u32, u32)>,
) -> serde_json::Value {
    serde_json::json!({
        "attachment_id": id,
        "kind": kind,
        "name": name,
        "bytes": bytes,
        "width": dims.map(|d| d.0),
        "height": dims.map(|d| d.1),
    })
}

#[cfg(test)]
mod tests {
    use super::clean_name;

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(
            clean_name(Some("C:\\fakepath\\破损.jpg")).as_deref(),
            Some("破损.jpg")
        );
        assert_eq!(
            clean_name(Some("../../etc/passwd\n")).as_deref(),
            Some("passwd")
        );
        assert_eq!(clean_name(Some("  ")), None);
    }
}
