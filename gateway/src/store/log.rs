//! Rows of the conversation log (`kefu_log`): the durable copy of live sessions when routing
//! is in memory (one node). The store knows rows, not conversations: each row is one opaque
//! log entry of a session, encrypted with the store key, numbered `n` in append order. The
//! journal decides what an entry means.

use std::sync::Arc;

use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::log_file::{aad, seal, LogFile};
use super::{KeyRing, SqliteSync, Store, StoreError};

/// One entry to append: the session, its number (unique and increasing per node), the plain
/// JSON.
pub struct LogRow {
    pub session: Arc<str>,
    pub n: u64,
    pub body: String,
}

/// Where the log's rows live: with SQLite a file of its own, written by its own thread
/// ([`LogFile`]); with PostgreSQL (or SQLite in memory, in tests) the store's pool.
pub(super) enum LogDb {
    File(LogFile),
    Pool(AnyPool),
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Encrypts and appends `rows` in one transaction: the group commit of every entry that
    /// arrived while the previous one was being written.
    pub async fn append_log(&self, rows: Vec<LogRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let pool = match &self.log {
            LogDb::File(file) => return file.append(rows).await,
            LogDb::Pool(pool) => pool,
        };
        let ring = self.keys.clone();
        let sealed = tokio::task::spawn_blocking(move || seal(&ring, rows))
            .await
            .map_err(|_| StoreError::PoolClosed)??;
        let mut tx = pool.begin().await?;
        insert_rows(&mut tx, &sealed).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every entry of `session`, decrypted, in append order.
    pub async fn load_log(&self, session: &str) -> Result<Vec<String>, StoreError> {
        let pool = match &self.log {
            LogDb::File(file) => return file.load(session).await,
            LogDb::Pool(pool) => pool,
        };
        let rows = sqlx::query("SELECT n, body_enc FROM kefu_log WHERE session = $1 ORDER BY n")
            .bind(session.to_string())
            .fetch_all(pool)
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
        let pool = match &self.log {
            LogDb::File(file) => return file.sessions(limit).await,
            LogDb::Pool(pool) => pool,
        };
        let rows = sqlx::query("SELECT DISTINCT session FROM kefu_log LIMIT $1")
            .bind(ms(limit as u64))
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// The highest entry number in the log (0 when empty): numbering goes on after a restart.
    pub async fn last_log_number(&self) -> Result<u64, StoreError> {
        let pool = match &self.log {
            LogDb::File(file) => return file.last_number().await,
            LogDb::Pool(pool) => pool,
        };
        let row = sqlx::query("SELECT COALESCE(MAX(n), 0) FROM kefu_log")
            .fetch_one(pool)
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Forgets a session's log: its record is stored (ended, or expired).
    pub async fn delete_log(&self, session: &str) -> Result<(), StoreError> {
        self.delete_logs(&[session.to_string()]).await
    }

    /// Forgets the logs of many ended sessions in one transaction: one commit (one fsync)
    /// instead of one per session, which at a thousand endings a second kept the log's own
    /// appends waiting for the database.
    pub async fn delete_logs(&self, sessions: &[String]) -> Result<(), StoreError> {
        let pool = match &self.log {
            LogDb::File(file) => return file.delete(sessions.to_vec()).await,
            LogDb::Pool(pool) => pool,
        };
        let mut tx = pool.begin().await?;
        for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "DELETE FROM kefu_log WHERE session IN ({})",
                marks.join(",")
            );
            // Only placeholders are built here; every value is bound.
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for session in chunk {
                query = query.bind(session.clone());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
/// Inserts sealed rows, many per statement: a statement is a trip to the database's worker,
/// and at a peak a commit holds hundreds of entries.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[(Arc<str>, u64, String)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from("INSERT INTO kefu_log (session, n, body_enc) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = 3 * i;
            sql.push_str(&format!("(${}, ${}, ${})", b + 1, b + 2, b + 3));
        }
        // Only placeholders are built here; every value is bound.
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (session, n, body) in chunk {
            query = query
                .bind(session.to_string())
                .bind(ms(*n))
                .bind(body.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows (or sessions) per statement: well under SQLite's and PostgreSQL's bind limits.
const ROWS_PER_STATEMENT: usize = 200;

/// With SQLite the log lives in database files of its own beside the store's (`kefu.db` ->
/// `kefu-log.db` and `kefu-log-2.db`, see [`LogFile`]), written through one connection: its
/// group commits then never wait on the store's other writers (records, KB figures), whose
/// locks SQLite makes a waiter poll for in growing sleeps (that was the one-node ack tail),
/// and a checkpoint of one file does not stall the other. Rows an earlier version kept in the store's own
/// `kefu_log` move over at start.
pub(super) async fn open_log_file(
    main: &AnyPool,
    file: &std::path::Path,
    sync: SqliteSync,
    keys: Arc<KeyRing>,
) -> Result<LogFile, StoreError> {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("kefu");
    let name = match file.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}-log.{ext}"),
        None => format!("{stem}-log"),
    };
    let log_file = file.with_file_name(name);
    let halves = LogFile::halves(&log_file);
    for half in &halves {
        super::private_files(half, true)?;
    }
    let log = LogFile::open(log_file, sync, keys).await?;
    for half in &halves {
        super::private_files(half, false)?;
    }
    let old = sqlx::query("SELECT session, n, body_enc FROM kefu_log")
        .fetch_all(main)
        .await?;
    if !old.is_empty() {
        let mut rows = Vec::with_capacity(old.len());
        for row in &old {
            let session: String = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            let body: String = row.try_get(2)?;
            rows.push((
                Arc::<str>::from(session),
                u64::try_from(n).unwrap_or(0),
                body,
            ));
        }
        let moved = rows.len();
        log.import(rows).await?;
        sqlx::query("DELETE FROM kefu_log").execute(main).await?;
        tracing::info!(
            rows = moved,
            "conversation log moved to its own database file"
        );
    }
    Ok(log)
}
