//! The durable conversation store: SQLite (embedded default, file created on first start) or
//! PostgreSQL (several nodes), through one code path (`sqlx`'s `Any` driver).
//!
//! Writes go through a bounded queue to a batch writer task ([`writer`]) so closing a chat
//! never waits on the database; when the queue is full the caller waits (and a metric
//! counts it) rather than losing a conversation. [`Store::flush`] writes out everything
//! queued, which the server calls on shutdown. Message text and personal data are encrypted
//! ([`crypto`]) before they reach the database.

pub mod attachments;
mod chunks;
pub mod crypto;
mod customers;
mod kb;
mod log;
mod log_file;
mod queries;
mod record;
mod schema;
mod sign_ins;
mod tickets;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

pub use crypto::{CryptoError, KeyRing, KeySource};
pub use kb::{EditRow, MissRow, StatsRow};
pub use log::LogRow;
pub use queries::{AuditEntry, ComplaintRecord, ConversationSummary};
pub use record::ConversationRecord;
pub use tickets::{NewTicket, TicketRow};

use crate::telemetry::metric;

/// The shortest retention the gateway accepts (days).
pub const MIN_RETENTION_DAYS: u64 = 180;

/// `[store]` settings. The key itself never comes from a config file: see [`KeySource`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: String,
    pub key_file: PathBuf,
    pub queue: usize,
    pub batch: usize,
    pub max_connections: u32,
    pub retention_days: u64,
    pub retention_interval_s: u64,
    /// SQLite only: when a commit is flushed to disk (see [`SqliteSync`]).
    #[serde(default)]
    pub sqlite_synchronous: SqliteSync,
    /// Filled from the environment by [`crate::Settings::load`].
    #[serde(skip)]
    pub key: KeySource,
}

/// When SQLite (in write-ahead-log mode) flushes a commit to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// A commit is in the WAL file when it returns and survives a crash or kill of the
    /// gateway; the disk is flushed at checkpoints, so a power cut can lose the last moments
    /// (the same promise as Redis with `appendfsync everysec`). The default: a flush per
    /// commit cost more than the whole one-node latency budget on this machine's disk.
    #[default]
    Normal,
    /// Every commit flushed to disk before it returns (survives a power cut; slower).
    Full,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Normal => "PRAGMA synchronous=NORMAL",
            SqliteSync::Full => "PRAGMA synchronous=FULL",
        }
    }
}

impl StoreSettings {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("store database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store.url `{0}`: use sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error("store.retention_days is {0}; conversations must be kept at least {MIN_RETENTION_DAYS} days")]
    Retention(u64),
    #[error("store.queue and store.batch must be at least 1")]
    Sizes,
    #[error("cannot create the store directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the store file {path} private (mode 0600): {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a stored record is not readable: {0}")]
    Corrupt(String),
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("the blocking pool is gone")]
    PoolClosed,
    #[error("writing attachment chunks failed: {0}")]
    Chunks(String),
    #[error("conversation log file: {0}")]
    LogFile(#[from] rusqlite::Error),
    #[error("conversation log: {0}")]
    Log(String),
}

enum Command {
    Save(Box<ConversationRecord>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// An open store with its batch writer running.
pub struct Store {
    pool: AnyPool,
    /// Where the conversation log's rows live (a file of its own with SQLite).
    log: log::LogDb,
    keys: Arc<KeyRing>,
    tx: mpsc::Sender<Command>,
    /// Attachment chunks to the group-commit writer (`chunks`).
    chunks: mpsc::Sender<chunks::ChunkRow>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("keys", &self.keys).finish()
    }
}

impl Store {
    /// Checks the settings and the key, opens (creating the SQLite file and its directory),
    /// creates the tables, and starts the writer task.
    pub async fn open(settings: &StoreSettings) -> Result<Store, StoreError> {
        if settings.retention_days < MIN_RETENTION_DAYS {
            return Err(StoreError::Retention(settings.retention_days));
        }
        if settings.queue == 0 || settings.batch == 0 {
            return Err(StoreError::Sizes);
        }
        let source = settings.key.clone();
        let key_file = if settings.key_file.as_os_str().is_empty() {
            PathBuf::new()
        } else {
            crate::files::resolve_path(&settings.key_file)
        };
        let keys = tokio::task::spawn_blocking(move || KeyRing::load(&source, &key_file))
            .await
            .map_err(|_| StoreError::PoolClosed)??;
        Self::open_with(settings, keys).await
    }

    /// As [`Self::open`] with a given key ring (tests use it for wrong-key and rotation).
    pub async fn open_with(settings: &StoreSettings, keys: KeyRing) -> Result<Store, StoreError> {
        let url = connect_url(&settings.url)?;
        let file = sqlite_file(&url);
        if let Some(file) = &file {
            private_files(file, true)?;
        }
        sqlx::any::install_default_drivers();
        let sync = file
            .is_some()
            .then_some(settings.sqlite_synchronous.pragma());
        let pool = connect(&url, settings.max_connections.max(1), sync).await?;
        if file.is_some() {
            // Write-ahead logging: a commit is one append to the WAL (flushed as
            // `sqlite_synchronous` says) and readers never wait for the writer. The rollback
            // journal's several flushes per commit made the conversation log's group commits
            // take tens of milliseconds at 1,000 messages/s. The mode is kept in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .fetch_all(&pool)
                .await?;
        }
        schema::migrate(&pool).await?;
        if let Some(file) = &file {
            // SQLite gives -wal and -shm the main file's mode; made sure of here too.
            private_files(file, false)?;
        }
        let keys = Arc::new(keys);
        let log = match &file {
            Some(file) => log::LogDb::File(
                log::open_log_file(&pool, file, settings.sqlite_synchronous, keys.clone()).await?,
            ),
            None => log::LogDb::Pool(pool.clone()),
        };
        let (tx, rx) = mpsc::channel(settings.queue);
        tokio::spawn(writer::run(pool.clone(), keys.clone(), rx, settings.batch));
        let (chunk_tx, chunk_rx) = mpsc::channel(chunks::QUEUE);
        tokio::spawn(chunks::run(pool.clone(), keys.clone(), chunk_rx));
        tracing::info!(
            backend = backend(&url),
            key = keys.current_id(),
            "conversation store open"
        );
        Ok(Store {
            pool,
            log,
            keys,
            tx,
            chunks: chunk_tx,
        })
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The key ring, shared (the conversation log on Redis seals its entries with it).
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.clone()
    }

    /// Queues a record for the batch writer; waits while the queue is full.
    pub async fn save(&self, record: ConversationRecord) {
        let depth = self.tx.max_capacity() - self.tx.capacity();
        metrics::gauge!(metric::STORE_QUEUE_DEPTH).set(depth as f64);
        let command = Command::Save(Box::new(record));
        let command = match self.tx.try_send(command) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(command)) => {
                metrics::counter!(metric::STORE_QUEUE_FULL_TOTAL).increment(1);
                tracing::warn!("conversation store queue full; waiting for the writer");
                command
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!(metric::STORE_WRITE_ERRORS_TOTAL).increment(1);
                tracing::error!("conversation store writer stopped; a record was not written");
                return;
            }
        };
        if self.tx.send(command).await.is_err() {
            metrics::counter!(metric::STORE_WRITE_ERRORS_TOTAL).increment(1);
            tracing::error!("conversation store writer stopped; a record was not written");
        }
    }

    /// Writes out everything queued so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Writes records at once, bypassing the queue (tools and tests, e.g. backdated data).
    pub async fn write_now(&self, records: Vec<ConversationRecord>) -> Result<(), StoreError> {
        writer::write_batch(&self.pool, &self.keys, records).await
    }

    /// Closes the connections (after [`Self::flush`]).
    pub async fn close(&self) {
        self.pool.close().await;
        if let log::LogDb::File(file) = &self.log {
            file.close().await;
        }
    }
}

/// The connection URL: SQLite files are created on first start (with their directory).
fn connect_url(url: &str) -> Result<String, StoreError> {
    let url = url.trim();
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        if path != ":memory:" {
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
            }
        }
        let query = if query.contains("mode=") {
            query.to_string()
        } else if query.is_empty() {
            "mode=rwc".to_string()
        } else {
            format!("{query}&mode=rwc")
        };
        Ok(format!("sqlite://{path}?{query}"))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_string())
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

/// The database file of a SQLite URL from [`connect_url`] (none in memory or on PostgreSQL).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (path != ":memory:").then(|| PathBuf::from(path))
}

/// The database file and its `-wal`/`-shm` companions readable by the gateway's user only
/// (0600; transcripts are encrypted, but the facts and indexes are not). `create` makes the
/// A pool of `max` connections to `url`, each set up with `pragma` first (SQLite's
/// `synchronous`, which is per connection).
async fn connect(
    url: &str,
    max: u32,
    pragma: Option<&'static str>,
) -> Result<sqlx::AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(pragma) = pragma {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// main file with that mode before SQLite opens it, so it is never briefly world-readable.
fn private_files(file: &std::path::Path, create: bool) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let failed = |source| StoreError::File {
            path: file.to_path_buf(),
            source,
        };
        if create {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(file)
                .map_err(failed)?;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            let path = PathBuf::from(name);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(failed)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, create);
    Ok(())
}

/// Milliseconds as the database's BIGINT.
fn writer_ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn backend(url: &str) -> &'static str {
    if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file() {
        assert_eq!(
            connect_url("sqlite://target/kefu-test-url/x.db").unwrap(),
            "sqlite://target/kefu-test-url/x.db?mode=rwc"
        );
        assert!(connect_url("mysql://x").is_err());
        assert_eq!(
            connect_url("postgres://u@h/db").unwrap(),
            "postgres://u@h/db"
        );
    }
}
