//! Rows of uploaded photos and files (`kefu_attachments`, `kefu_attachment_chunks`).
//!
//! The store knows rows, not uploads: an attachment is one row of facts (its session, kind,
//! size, dimensions; the name and media types sealed in `meta_enc`) and its bytes in chunks of
//! at most [`CHUNK`] bytes, each sealed on its own with the store key (AES-256-GCM, bound to
//! attachment, part and number), so an upload streams to the database and a download streams
//! out of it with one chunk in memory at a time. Parts: `raw` (an image as received, until it
//! is decoded), `file` (what is served) and `thumb`.
//!
//! Attachments go with their conversation: a customer's deletion, and retention by the
//! creation time of the conversation they belong to (see [`Store::purge_older_than`]).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::crypto::Aad;
use super::{Store, StoreError};

/// Largest chunk sealed in one row.
pub const CHUNK: usize = 256 * 1024;

pub(super) const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kefu_attachments (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        uploader TEXT NOT NULL,
        kind TEXT NOT NULL,
        meta_enc TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        width BIGINT,
        height BIGINT,
        ready BIGINT NOT NULL,
        created_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS kefu_attachments_session ON kefu_attachments (session)",
    "CREATE INDEX IF NOT EXISTS kefu_attachments_created ON kefu_attachments (created_ms)",
    "CREATE TABLE IF NOT EXISTS kefu_attachment_chunks (
        attachment TEXT NOT NULL,
        part TEXT NOT NULL,
        n BIGINT NOT NULL,
        body_enc TEXT NOT NULL,
        PRIMARY KEY (attachment, part, n)
    )",
];

/// The sealed part of an attachment's row: what could name the customer or the content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttachmentMetaRow {
    pub name: String,
    pub mime: String,
    #[serde(default)]
    pub thumb_mime: Option<String>,
}

/// One attachment's row, opened.
#[derive(Debug, Clone)]
pub struct AttachmentRow {
    pub id: String,
    pub session: String,
    pub uploader: String,
    pub kind: String,
    pub meta: AttachmentMetaRow,
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub ready: bool,
    pub created_ms: u64,
}

/// What a session has uploaded: how many since `since_ms`, and bytes in all.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadTotals {
    pub recent: u64,
    pub bytes: u64,
}

fn meta_aad(id: &str) -> Aad<'_> {
    Aad {
        table: "kefu_attachments",
        row: id,
        field: "meta_enc",
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Writes the row of an upload that is starting (not ready, `bytes` as announced) and
    /// returns the session's totals including it, so concurrent uploads of one session
    /// cannot all slip under its caps.
    pub async fn reserve_attachment(
        &self,
        id: &str,
        session: &str,
        uploader: &str,
        announced: u64,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<UploadTotals, StoreError> {
        let meta = self
            .keys
            .encrypt_field("{}", meta_aad(id))
            .map_err(StoreError::from)?;
        sqlx::query(
            "INSERT INTO kefu_attachments
             (id, session, uploader, kind, meta_enc, bytes, width, height, ready, created_ms)
             VALUES ($1, $2, $3, 'pending', $4, $5, NULL, NULL, 0, $6)",
        )
        .bind(id.to_string())
        .bind(session.to_string())
        .bind(uploader.to_string())
        .bind(meta)
        .bind(ms(announced))
        .bind(ms(now_ms))
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS recent_n FROM kefu_attachments
             WHERE session = $1 AND created_ms >= $2",
        )
        .bind(session.to_string())
        .bind(ms(since_ms))
        .fetch_one(&self.pool)
        .await?;
        let all = sqlx::query(
            // PostgreSQL sums BIGINT as NUMERIC: cast back, for one type on both databases.
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS total FROM kefu_attachments
             WHERE session = $1",
        )
        .bind(session.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(UploadTotals {
            recent: u(row.try_get("recent_n")?),
            bytes: u(all.try_get("total")?),
        })
    }

    /// Seals and writes chunk `n` of `part` (with whatever other chunks are waiting: see
    /// `store::chunks`); resolves once it is committed.
    pub async fn put_chunk(
        &self,
        id: &str,
        part: &str,
        n: u64,
        plain: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let row = super::chunks::ChunkRow {
            id: id.to_string(),
            part: part.to_string(),
            n,
            plain,
            done,
        };
        self.chunks
            .send(row)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Chunks)
    }

    /// How many chunks `part` has.
    pub async fn chunk_count(&self, id: &str, part: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM kefu_attachment_chunks WHERE attachment = $1 AND part = $2",
        )
        .bind(id.to_string())
        .bind(part.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(u(row.try_get("n")?))
    }

    /// Chunk `n` of `part`, opened (`None`: no such chunk).
    pub async fn chunk(&self, id: &str, part: &str, n: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT body_enc FROM kefu_attachment_chunks
             WHERE attachment = $1 AND part = $2 AND n = $3",
        )
        .bind(id.to_string())
        .bind(part.to_string())
        .bind(ms(n))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: String = row.try_get("body_enc")?;
        let keys = self.keys.clone();
        let aad_row = format!("{id}/{part}/{n}");
        let plain = tokio::task::spawn_blocking(move || {
            keys.decrypt_bytes(&sealed, super::chunks::aad(&aad_row))
        })
        .await
        .map_err(|_| StoreError::PoolClosed)??;
        Ok(Some(plain))
    }

    /// The whole of `part`, opened (a staged image to decode: at most the upload cap).
    pub async fn read_part(&self, id: &str, part: &str) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        for n in 0..self.chunk_count(id, part).await? {
            let chunk = self
                .chunk(id, part, n)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("attachment chunk {n} missing")))?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    pub async fn delete_part(&self, id: &str, part: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM kefu_attachment_chunks WHERE attachment = $1 AND part = $2")
            .bind(id.to_string())
            .bind(part.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks an upload ready with its final facts.
    pub async fn finish_attachment(
        &self,
        id: &str,
        kind: &str,
        meta: &AttachmentMetaRow,
        bytes: u64,
        dims: Option<(u32, u32)>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sealed = self.keys.encrypt_field(&json, meta_aad(id))?;
        sqlx::query(
            "UPDATE kefu_attachments SET kind = $1, meta_enc = $2, bytes = $3, width = $4,
             height = $5, ready = 1 WHERE id = $6",
        )
        .bind(kind.to_string())
        .bind(sealed)
        .bind(ms(bytes))
        .bind(dims.map(|d| i64::from(d.0)))
        .bind(dims.map(|d| i64::from(d.1)))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes an attachment and its chunks (a refused or failed upload).
    pub async fn drop_attachment(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM kefu_attachment_chunks WHERE attachment = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM kefu_attachments WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One attachment's row, opened.
    pub async fn attachment(&self, id: &str) -> Result<Option<AttachmentRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM kefu_attachments WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        let sealed: String = row.try_get("meta_enc")?;
        let json = self.keys.decrypt_field(&sealed, meta_aad(&id))?;
        let meta = serde_json::from_str(&json).unwrap_or_default();
        let dim = |col: &str| -> Result<Option<u32>, sqlx::Error> {
            Ok(row
                .try_get::<Option<i64>, _>(col)?
                .and_then(|v| u32::try_from(v).ok()))
        };
        Ok(Some(AttachmentRow {
            session: row.try_get("session")?,
            uploader: row.try_get("uploader")?,
            kind: row.try_get("kind")?,
            meta,
            bytes: u(row.try_get("bytes")?),
            width: dim("width")?,
            height: dim("height")?,
            ready: row.try_get::<i64, _>("ready")? != 0,
            created_ms: u(row.try_get("created_ms")?),
            id,
        }))
    }

    /// Uploads that never finished (the node stopped mid-way), started before `before_ms`.
    pub async fn purge_unfinished_uploads(&self, before_ms: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM kefu_attachment_chunks WHERE attachment IN
             (SELECT id FROM kefu_attachments WHERE ready = 0 AND created_ms < $1)",
        )
        .bind(ms(before_ms))
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query("DELETE FROM kefu_attachments WHERE ready = 0 AND created_ms < $1")
            .bind(ms(before_ms))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

/// Deletes the attachments whose session matches `sessions` (an SQL condition on
/// `kefu_attachments.session` with its parameters already bound by the caller's query), in
/// the caller's transaction: attachments go with their conversation.
pub(super) const DELETE_CHUNKS_OF: &str =
    "DELETE FROM kefu_attachment_chunks WHERE attachment IN (SELECT id FROM kefu_attachments WHERE session IN (";
pub(super) const DELETE_ROWS_OF: &str = "DELETE FROM kefu_attachments WHERE session IN (";
