//! The group commit of attachment chunks: every chunk that arrives while the previous batch
//! is being written goes into the next one, in one transaction. A commit costs a disk sync
//! whatever its size, so fifty uploads at once would otherwise queue a thousand syncs behind
//! SQLite's one writer; batched, they share them. Each upload waits for its chunk before it
//! reads more of its body, so memory stays at one chunk per upload plus the bounded queue.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::crypto::Aad;
use super::{KeyRing, StoreError};

use crate::telemetry::metric;

/// Bytes of plain chunks written in one transaction at most.
const BATCH_BYTES: usize = 8 << 20;

/// Chunks waiting for the writer (each at most `attachments::CHUNK` bytes).
pub(super) const QUEUE: usize = 64;

pub(super) struct ChunkRow {
    pub id: String,
    pub part: String,
    pub n: u64,
    pub plain: Vec<u8>,
    pub done: oneshot::Sender<Result<(), String>>,
}

pub(super) fn aad(row: &str) -> Aad<'_> {
    Aad {
        table: "kefu_attachment_chunks",
        row,
        field: "body_enc",
    }
}

pub(super) async fn run(pool: AnyPool, keys: Arc<KeyRing>, mut rx: mpsc::Receiver<ChunkRow>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.plain.len();
        let mut batch = vec![first];
        while bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(row) => {
                    bytes += row.plain.len();
                    batch.push(row);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!(metric::ATTACHMENT_CHUNK_BATCH).record(batch.len() as f64);
        let ring = keys.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|row| {
                    let name = format!("{}/{}/{}", row.id, row.part, row.n);
                    let body = ring.encrypt_bytes(&row.plain, aad(&name));
                    (row.id, row.part, row.n, body, row.done)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(sealed) = sealed else {
            continue; // the blocking pool is gone: the senders see their channel dropped
        };
        let result = write(&pool, &sealed).await;
        for (_, _, _, _, done) in sealed {
            let _ = done.send(result.clone());
        }
    }
}

type Sealed = (
    String,
    String,
    u64,
    Result<String, super::CryptoError>,
    oneshot::Sender<Result<(), String>>,
);

async fn write(pool: &AnyPool, rows: &[Sealed]) -> Result<(), String> {
    let fail = |e: StoreError| e.to_string();
    let mut tx = pool.begin().await.map_err(|e| fail(e.into()))?;
    for (id, part, n, body, _) in rows {
        let body = body.as_ref().map_err(|e| e.to_string())?;
        sqlx::query(
            "INSERT INTO kefu_attachment_chunks (attachment, part, n, body_enc)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.clone())
        .bind(part.clone())
        .bind(i64::try_from(*n).unwrap_or(i64::MAX))
        .bind(body.clone())
        .execute(&mut *tx)
        .await
        .map_err(|e| fail(e.into()))?;
    }
    tx.commit().await.map_err(|e| fail(e.into()))
}
