//! Rows of the conversation log (`kefu_log`): the durable copy of live sessions when routing
//! is in memory (one node). The store knows rows, not conversations: each row is one opaque
//! log entry of a session, encrypted with the store key, numbered `n` in append order. The
//! journal decides what an entry means.

use std::sync::Arc;

use sqlx::{AnyPool, Row};

use super::crypto::Aad;
use super::{KeyRing, Store, StoreError};

/// One entry to append: the session, its number (unique and increasing per node), the plain
/// JSON.
pub struct LogRow {
    pub session: Arc<str>,
    pub n: u64,
    pub body: String,
}

fn aad<'a>(session: &'a str, n: &'a str) -> Aad<'a> {
    Aad {
        table: "kefu_log",
        row: session,
        field: n,
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Encrypts (on the blocking pool) and appends `rows` in one transaction: the group
    /// commit of every entry that arrived while the previous one was being written.
    pub async fn append_log(&self, rows: Vec<LogRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ring = self.keys.clone();
        let sealed = tokio::task::spawn_blocking(move || seal(&ring, rows))
            .await
            .map_err(|_| StoreError::PoolClosed)??;
        let mut tx = self.pool.begin().await?;
        for (session, n, body) in &sealed {
            sqlx::query("INSERT INTO kefu_log (session, n, body_enc) VALUES ($1, $2, $3)")
                .bind(session.to_string())
                .bind(ms(*n))
                .bind(body.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every entry of `session`, decrypted, in append order.
    pub async fn load_log(&self, session: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT n, body_enc FROM kefu_log WHERE session = $1 ORDER BY n")
            .bind(session.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut sealed = Vec::with_capacity(rows.len());
        for row in rows {
            let n: i64 = row.try_get(0)?;
            let body: String = row.try_get(1)?;
            sealed.push((n, body));
        }
        let ring = self.keys.clone();
        let session = session.to_string();
        tokio::task::spawn_blocking(move || {
            sealed
                .into_iter()
                .map(|(n, body)| {
                    let n = n.to_string();
                    ring.decrypt_field(&body, aad(&session, &n))
                        .map_err(StoreError::from)
                })
                .collect()
        })
        .await
        .map_err(|_| StoreError::PoolClosed)?
    }

    /// Sessions that have a log (at most `limit`), for the restart of a single node.
    pub async fn logged_sessions(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT session FROM kefu_log LIMIT $1")
            .bind(ms(limit as u64))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// The highest entry number in the log (0 when empty): numbering goes on after a restart.
    pub async fn last_log_number(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(n), 0) FROM kefu_log")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Forgets a session's log: its record is stored (ended, or expired).
    pub async fn delete_log(&self, session: &str) -> Result<(), StoreError> {
        delete(&self.pool, session).await
    }
}

async fn delete(pool: &AnyPool, session: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM kefu_log WHERE session = $1")
        .bind(session.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

fn seal(ring: &KeyRing, rows: Vec<LogRow>) -> Result<Vec<(Arc<str>, u64, String)>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let n = row.n.to_string();
            let body = ring.encrypt_field(&row.body, aad(&row.session, &n))?;
            Ok((row.session, row.n, body))
        })
        .collect()
}
