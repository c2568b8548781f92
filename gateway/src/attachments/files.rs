//! `GET /files/{id}?exp=…&sig=…[&v=thumb][&r=READER]`: an attachment through a signed link.
//!
//! The link is checked before anything is read. A link made for an agent or an auditor (`r`)
//! is an audited read: the audit row is written before the first byte goes out, and no
//! audit, no file. The bytes stream out one sealed chunk at a time.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::links::{now_s, LinkError, Part};
use crate::app::AppState;
use crate::store::{AuditEntry, Store};
use crate::telemetry::metric;

#[derive(Debug, Default, Deserialize)]
pub struct FileQuery {
    exp: Option<u64>,
    sig: Option<String>,
    v: Option<String>,
    r: Option<String>,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    metrics::counter!(metric::FILE_READS_TOTAL, "outcome" => status.as_str().to_string())
        .increment(1);
    (status, message.to_string()).into_response()
}

pub async fn file(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Response {
    let (Some(links), Some(store)) = (app.attachments.links(), app.store.as_ref()) else {
        return refuse(StatusCode::NOT_FOUND, "attachments are off on this gateway");
    };
    let part = match query.v.as_deref() {
        None | Some("") | Some("file") => Part::File,
        Some("thumb") => Part::Thumb,
        Some(_) => return refuse(StatusCode::BAD_REQUEST, "`v` is `file` or `thumb`"),
    };
    let reader = query.r.unwrap_or_default();
    let (Some(exp), Some(sig)) = (query.exp, query.sig) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "a signed link (exp, sig) is required",
        );
    };
    if id.len() > 64 || reader.len() > 160 || sig.len() > 64 {
        return refuse(StatusCode::FORBIDDEN, "this link is not valid");
    }
    if let Err(err) = links.verify(&id, part, &reader, exp, &sig, now_s()) {
        let status = match err {
            LinkError::Expired => StatusCode::GONE,
            LinkError::Bad => StatusCode::FORBIDDEN,
        };
        return refuse(status, &err.to_string());
    }
    let row = match store.attachment(&id).await {
        Ok(Some(row)) if row.ready => row,
        Ok(_) => {
            return refuse(
                StatusCode::NOT_FOUND,
                "no such attachment (it may have been deleted)",
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot read an attachment row");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be read right now",
            );
        }
    };
    if !reader.is_empty() {
        let entry = AuditEntry {
            at_ms: crate::session::now_ms(),
            operator: reader.clone(),
            action: "read_attachment".into(),
            target: id.clone(),
            peer: peer.ip().to_string(),
            detail: format!("session {} {}", row.session, part.as_str()),
        };
        if let Err(err) = store.audit(&entry).await {
            tracing::error!(error = %err, "cannot write the audit log; attachment not served");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log cannot be written right now",
            );
        }
    }
    let mime = match part {
        Part::File => row.meta.mime.clone(),
        Part::Thumb => match row.meta.thumb_mime.clone() {
            Some(m) => m,
            None => return refuse(StatusCode::NOT_FOUND, "this attachment has no thumbnail"),
        },
    };
    let chunks = match store.chunk_count(&id, part.as_str()).await {
        Ok(n) => n,
        Err(err) => {
            tracing::error!(error = %err, "cannot count attachment chunks");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be read right now",
            );
        }
    };
    metrics::counter!(metric::FILE_READS_TOTAL, "outcome" => "200").increment(1);
    let body = Body::from_stream(stream(store.clone(), id, part, chunks));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    let set = |value: &str| {
        HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    headers.insert(header::CONTENT_TYPE, set(&mime));
    if part == Part::File {
        if let Ok(len) = HeaderValue::from_str(&row.bytes.to_string()) {
            headers.insert(header::CONTENT_LENGTH, len);
        }
    }
    // Served as what was sniffed and nothing else; a PDF is a download, not a page.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=600"),
    );
    let disposition = if row.kind == "image" {
        "inline"
    } else {
        "attachment"
    };
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(disposition),
    );
    response
}

/// The chunks of `part`, one at a time.
fn stream(
    store: std::sync::Arc<Store>,
    id: String,
    part: Part,
    chunks: u64,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(0u64, move |n| {
        let store = store.clone();
        let id = id.clone();
        async move {
            if n >= chunks {
                return None;
            }
            let chunk = match store.chunk(&id, part.as_str(), n).await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => Err(std::io::Error::other("attachment chunk missing")),
                Err(err) => {
                    tracing::error!(error = %err, "cannot read an attachment chunk");
                    Err(std::io::Error::other("attachment chunk unreadable"))
                }
            };
            Some((chunk, n + 1))
        }
    })
}
