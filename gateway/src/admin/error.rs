//! Every refusal and failure of the admin API, and the one place that turns them into answers.
//!
//! The answers are part of the protocol and must not drift: the gate's refusals are plain
//! text (as they always were, for curl users), the records and knowledge-base routes answer
//! JSON `{"error"}` or `{"error","field"}`.

use axum::extract::rejection::ExtensionRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::kb::edits::EditError;
use crate::store::StoreError;
use crate::telemetry::metric;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Neither operators nor the break-glass token are configured (403, text).
    #[error(
        "the admin API is disabled: add operators (server.operators_file) or set server.admin_token (KEFU__SERVER__ADMIN_TOKEN)"
    )]
    Disabled,
    /// No token, or one that is neither an operator's nor the break-glass one (401, text).
    #[error("bad or missing admin token")]
    BadToken,
    /// An enrolled operator without a good pass or code (401, text `otp_required…`/`bad_otp…`).
    #[error("{0}")]
    SecondStep(&'static str),
    /// The operator's role lacks the route's permission (403, text).
    #[error("your role does not allow this admin call")]
    NotAllowed,
    /// A handler asked for the caller on a route mounted without the gate: a bug, never the
    /// client's fault (500, text).
    #[error("this admin route is mounted without its authorizing layer")]
    Ungated,
    /// A records route while `store.url` is empty (503, JSON).
    #[error("the conversation store is disabled (store.url is empty)")]
    NoStore,
    /// A read of personal data with the break-glass token but no `X-Kefu-Operator` (400, JSON).
    #[error("reads of conversations must name the reader in the X-Kefu-Operator header")]
    NoReader,
    /// Any other refusal with its status: JSON `{"error"}`, plus `"field"` when one is named.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        message: String,
        field: Option<&'static str>,
    },
    /// A failed store call of the records routes (500, JSON with the error; counted).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A knowledge-base edit refused or failed (400/422/404/409/503/500, JSON).
    #[error(transparent)]
    Edit(#[from] EditError),
    /// A dependency of the route is not answering (503, text).
    #[error("{0}")]
    Unavailable(&'static str),
    /// `POST /admin/kb/reload` with a knowledge base that does not load (422,
    /// `{"reloaded":false,"error"}`; the old one is kept).
    #[error("{0}")]
    BadKb(String),
    /// The connection's address is missing (only when served without connect info).
    #[error(transparent)]
    Extension(#[from] ExtensionRejection),
}

impl AdminError {
    /// A JSON refusal `{"error"}` with `status`.
    pub fn refused(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Refused {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 `{"error"}`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::refused(StatusCode::BAD_REQUEST, message)
    }

    /// A JSON refusal `{"error","field"}` naming the field at fault.
    pub fn field(status: StatusCode, message: impl Into<String>, field: &'static str) -> Self {
        Self::Refused {
            status,
            message: message.into(),
            field: Some(field),
        }
    }
}

fn json_error(status: StatusCode, message: String, field: Option<String>) -> Response {
    let mut body = json!({"error": message});
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, Json(body)).into_response()
}

fn edit_failed(err: EditError) -> Response {
    let message = err.to_string();
    match err {
        EditError::BadBody { field, .. } => json_error(StatusCode::BAD_REQUEST, message, field),
        EditError::Invalid { field, .. } => {
            json_error(StatusCode::UNPROCESSABLE_ENTITY, message, Some(field))
        }
        EditError::NotFound(_) => json_error(StatusCode::NOT_FOUND, message, None),
        EditError::Exists(_) => json_error(StatusCode::CONFLICT, message, Some("id".into())),
        EditError::NoStore => json_error(StatusCode::SERVICE_UNAVAILABLE, message, None),
        EditError::Store(err) => {
            tracing::error!(error = %err, "knowledge-base store call failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed".into(),
                None,
            )
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            Self::Disabled | Self::NotAllowed => (StatusCode::FORBIDDEN, message).into_response(),
            Self::BadToken | Self::SecondStep(_) => {
                (StatusCode::UNAUTHORIZED, message).into_response()
            }
            Self::Ungated => {
                tracing::error!("{message}");
                (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
            Self::NoStore => json_error(StatusCode::SERVICE_UNAVAILABLE, message, None),
            Self::NoReader => json_error(StatusCode::BAD_REQUEST, message, None),
            Self::Refused { status, field, .. } => {
                json_error(status, message, field.map(str::to_string))
            }
            Self::Store(err) => {
                metrics::counter!(metric::STORE_READ_ERRORS_TOTAL).increment(1);
                tracing::error!(error = %err, "conversation store read failed");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, message, None)
            }
            Self::Edit(err) => edit_failed(err),
            Self::BadKb(error) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"reloaded": false, "error": error})),
            )
                .into_response(),
            Self::Extension(rejection) => rejection.into_response(),
        }
    }
}
