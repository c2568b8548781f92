//! Photos and files in chats (issue #18): `POST /upload` takes one over HTTP (never inside a
//! WebSocket frame), streaming it in bounded chunks into the store, encrypted; a `message`
//! then names it by id, and whoever receives the message gets its facts and short-lived
//! signed links (`GET /files/ID?exp=…&sig=…`).
//!
//! - [`sniff`]: the type from the first bytes (JPEG, PNG, WebP, GIF, PDF; the rest is 415);
//! - [`picture`]: header-checked decoding, re-encoding without metadata, thumbnails;
//! - [`links`]: the signed links, refreshed whenever a frame carrying one is written;
//! - [`upload`], [`files`]: the two HTTP handlers;
//! - rows and chunks: `store::attachments`.

pub mod files;
pub mod links;
pub mod picture;
pub mod sniff;
pub mod upload;

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::protocol::AttachmentInfo;
use crate::store::Store;
pub use links::Links;

/// `[attachments]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSettings {
    /// Largest upload (bytes); larger ones are refused with 413.
    pub max_bytes: u64,
    /// Largest image side and pixel count, checked from the header before decoding.
    pub max_side: u32,
    pub max_pixels: u64,
    /// Longest side of a thumbnail.
    pub thumb_side: u32,
    /// Uploads a session may make per minute, and bytes in all.
    pub per_minute: u64,
    pub session_bytes: u64,
    /// Life of a signed link (seconds).
    pub link_ttl_s: u64,
    /// Images decoded at once on this node: each holds its pixels in memory while it runs.
    pub decode_concurrency: usize,
    /// An upload must arrive within this time.
    pub upload_timeout_ms: u64,
}

/// The handle the socket and HTTP modules use: settings, the store, the link signer.
pub struct Attachments {
    pub settings: AttachmentSettings,
    store: Option<Arc<Store>>,
    links: Option<Arc<Links>>,
    /// The customers' frame rewriter, one for all (a customer socket must not cost an
    /// allocation of its own for it).
    customer_refresh: Option<crate::outbox::Refresh>,
    decode: Semaphore,
}

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachments")
            .field("enabled", &self.links.is_some())
            .finish()
    }
}

/// Why a message's `attachment` cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UseError {
    #[error("attachments need the conversation store, which is off on this gateway")]
    Disabled,
    #[error("no finished upload with this id in this chat")]
    Unknown,
    #[error("the store cannot be read right now; send the message again shortly")]
    Store,
}

impl Attachments {
    /// Attachments are on when the store is (they are kept in it, under its key).
    pub fn new(settings: AttachmentSettings, store: Option<Arc<Store>>) -> Self {
        let links = store
            .as_ref()
            .and_then(|s| s.keys().derived_key("kefu attachment links v1"))
            .map(|key| Arc::new(Links::new(key, settings.link_ttl_s)));
        let decode = Semaphore::new(settings.decode_concurrency.max(1));
        let customer_refresh = links.clone().map(|links| {
            let refresh: crate::outbox::Refresh =
                Arc::new(move |text: &str| links.refresh(text, ""));
            refresh
        });
        Self {
            settings,
            store,
            links,
            customer_refresh,
            decode,
        }
    }

    pub fn links(&self) -> Option<&Arc<Links>> {
        self.links.as_ref()
    }

    fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref().filter(|_| self.links.is_some())
    }

    /// The facts of a finished upload of `session`, for a message that names it (no links:
    /// those are made per reader when the frame is written).
    pub async fn info(&self, id: &str, session: &str) -> Result<AttachmentInfo, UseError> {
        let store = self.store().ok_or(UseError::Disabled)?;
        let row = match store.attachment(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err(UseError::Unknown),
            Err(err) => {
                tracing::error!(error = %err, "cannot read an attachment row");
                return Err(UseError::Store);
            }
        };
        if !row.ready || row.session != session {
            return Err(UseError::Unknown);
        }
        Ok(AttachmentInfo {
            id: row.id,
            kind: row.kind,
            name: row.meta.name,
            bytes: row.bytes,
            width: row.width,
            height: row.height,
            url: None,
            thumb_url: None,
        })
    }

    /// One of the node's image decodes (`None`: the node is shutting the pool down).
    pub async fn decode_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.decode.acquire().await.ok()
    }

    /// What rewrites frames for a socket of `reader` (see [`Links::refresh`]).
    pub fn refresher(&self, reader: String) -> Option<crate::outbox::Refresh> {
        if reader.is_empty() {
            return self.customer_refresh.clone();
        }
        let links = self.links.clone()?;
        Some(Arc::new(move |text: &str| links.refresh(text, &reader)))
    }
}
