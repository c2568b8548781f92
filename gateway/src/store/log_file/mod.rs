//! The conversation log's SQLite files, owned by one thread of their own.
//!
//! Every customer and agent `ack` on one node waits for a group commit here, so a commit's
//! cost is the node's ack latency. Through the pool each commit was five hand-overs between
//! the runtime and other threads (sealing on the blocking pool, then `BEGIN`, `INSERT`,
//! `COMMIT` each a trip to the driver's worker); on two busy cores every hand-over may wait
//! for a core. Here a commit is one job: the thread seals the rows, inserts them and commits,
//! and answers once.
//!
//! In WAL mode with `synchronous=normal` a commit itself never flushes to disk; the flushes
//! come with checkpoints (before copying the WAL into the database, after copying it whole)
//! and with the first commit after the WAL starts over (its header). A single file's WAL can
//! only start over once nobody writes while it is copied whole, so on one file the writer
//! had to take part: a first build had it copy the WAL's last pages every 1 MB, ~8 times a
//! second at a peak, each time three flushes (2-5 ms, now and then 25-50 ms) that every ack
//! behind it waited for, which was most of the ack tail. So the log is two files, two
//! *halves* (`kefu-log.db` and `kefu-log-2.db`, attached to one connection): the writer
//! appends to one while [`checkpointer`], on a connection and thread of its own, copies the
//! other whole and starts its WAL over; then they swap. Every flush happens on the half
//! nobody writes, and the writer never waits for one. A session's rows may lie in both
//! halves: reads take both, in order, and an ended session is deleted from each half while
//! it is the one written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::crypto::Aad;
use super::{KeyRing, LogRow, SqliteSync, StoreError};

mod checkpointer;
mod writer;

/// Jobs waiting for the thread at most (the journal's writer sends one commit at a time).
const JOBS: usize = 256;
/// The halves swap at most this often (when the other half is ready); without a
/// checkpointer the writer copies at most this often itself.
const SWAP_EVERY: Duration = Duration::from_millis(50);
/// Rows (and deletes) written to one half without a swap after which the writer copies that
/// half itself (the checkpointer is stuck or gone): the bound on a WAL's size.
const FORCE_ROWS: u64 = 16_384;
/// The halves' schema names on the writer's and the checkpointer's connections.
const HALVES: [&str; 2] = ["main", "alt"];

/// Ended sessions deleted along with one commit of appends...
const DELETES_PER_COMMIT: usize = 4;
/// ...or at once when nothing else waits.
const IDLE_DELETES: usize = 16;
/// Ended sessions waiting to be deleted at most; beyond, a delete is done when asked.
const MAX_QUEUED_DELETES: usize = 65_536;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Append(Vec<LogRow>, Reply<()>),
    /// Rows sealed elsewhere (moved from an older store file).
    Import(Vec<(Arc<str>, u64, String)>, Reply<()>),
    Load(String, Reply<Vec<String>>),
    Sessions(usize, Reply<Vec<String>>),
    LastNumber(Reply<u64>),
    Delete(Vec<String>, Reply<()>),
    /// From the checkpointer: this half is copied whole and its WAL started over.
    Ready(usize),
    /// Checkpoint everything, close the files, stop.
    Close(Reply<()>),
}

/// The handle: every call one job for the thread.
pub(super) struct LogFile {
    jobs: mpsc::Sender<Job>,
}

pub(super) const LOG_TABLE: &str = "CREATE TABLE IF NOT EXISTS kefu_log (
    session TEXT NOT NULL,
    n BIGINT NOT NULL,
    body_enc TEXT NOT NULL,
    PRIMARY KEY (session, n)
)";

/// One row the checkpointer rewrites in a half it has copied whole: that write is what
/// starts the half's WAL over (and flushes the WAL's new header) before the writer uses it.
const MARK_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS kefu_log_mark (k INTEGER PRIMARY KEY, restarts BIGINT NOT NULL)";

pub(super) fn aad<'a>(session: &'a str, n: &'a str) -> Aad<'a> {
    Aad {
        table: "kefu_log",
        row: session,
        field: n,
    }
}

fn sql_n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl LogFile {
    /// The two halves' files for the log at `file`: `file` itself and `<stem>-2.<ext>`.
    pub(super) fn halves(file: &Path) -> [PathBuf; 2] {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("kefu-log");
        let name = match file.extension().and_then(|e| e.to_str()) {
            Some(ext) => format!("{stem}-2.{ext}"),
            None => format!("{stem}-2"),
        };
        [file.to_path_buf(), file.with_file_name(name)]
    }

    /// Opens (creating) the log's two halves and starts the writing and the checkpointing
    /// threads.
    pub(super) async fn open(
        file: PathBuf,
        sync: SqliteSync,
        keys: Arc<KeyRing>,
    ) -> Result<LogFile, StoreError> {
        Self::open_with(file, sync, keys, true).await
    }

    /// As [`Self::open`]; without a checkpointer (as when it cannot start) if told so.
    async fn open_with(
        file: PathBuf,
        sync: SqliteSync,
        keys: Arc<KeyRing>,
        checkpointer: bool,
    ) -> Result<LogFile, StoreError> {
        let (jobs, rx) = mpsc::channel(JOBS);
        let (ready, opened) = oneshot::channel();
        let to_writer = jobs.downgrade();
        let files = Self::halves(&file);
        std::thread::Builder::new()
            .name("kefu-log".into())
            .spawn(move || match writer::Writer::open(&files, sync, keys) {
                Ok(mut writer) => {
                    if checkpointer {
                        writer.checkpoints = checkpointer::start(&files, sync, to_writer);
                    }
                    let _ = ready.send(Ok(()));
                    writer.run(rx);
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                }
            })
            .map_err(|e| StoreError::Log(format!("cannot start the log thread: {e}")))?;
        opened.await.map_err(|_| StoreError::WriterGone)??;
        Ok(LogFile { jobs })
    }

    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(job(tx))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(super) async fn append(&self, rows: Vec<LogRow>) -> Result<(), StoreError> {
        self.call(|r| Job::Append(rows, r)).await
    }

    pub(super) async fn import(
        &self,
        rows: Vec<(Arc<str>, u64, String)>,
    ) -> Result<(), StoreError> {
        self.call(|r| Job::Import(rows, r)).await
    }

    pub(super) async fn load(&self, session: &str) -> Result<Vec<String>, StoreError> {
        let session = session.to_string();
        self.call(|r| Job::Load(session, r)).await
    }

    pub(super) async fn sessions(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.call(|r| Job::Sessions(limit, r)).await
    }

    pub(super) async fn last_number(&self) -> Result<u64, StoreError> {
        self.call(Job::LastNumber).await
    }

    /// Waits for what was sent before, checkpoints and closes the files.
    pub(super) async fn close(&self) {
        if self.call(Job::Close).await.is_err() {
            tracing::debug!("conversation log file already closed");
        }
    }

    pub(super) async fn delete(&self, sessions: Vec<String>) -> Result<(), StoreError> {
        self.call(|r| Job::Delete(sessions, r)).await
    }
}

/// A connection to the first half with the second attached as `alt`, both in WAL mode.
fn connect(files: &[PathBuf; 2], sync: SqliteSync) -> Result<Connection, StoreError> {
    let conn = Connection::open(&files[0])?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let second = files[1]
        .to_str()
        .ok_or_else(|| StoreError::Log("the log's file name is not UTF-8".into()))?;
    conn.execute(&format!("ATTACH DATABASE ?1 AS {}", HALVES[1]), [second])?;
    let level = match sync {
        SqliteSync::Normal => "NORMAL",
        SqliteSync::Full => "FULL",
    };
    for half in HALVES {
        conn.pragma_update(Some(half), "journal_mode", "WAL")?;
        conn.pragma_update(Some(half), "synchronous", level)?;
    }
    Ok(conn)
}

/// What one checkpoint of a half reported.
struct Checkpoint {
    /// Another checkpoint or a read stood in the way.
    busy: bool,
    /// Frames in the half's WAL, and how many of them are now in its database.
    frames: i64,
    copied: i64,
}

impl Checkpoint {
    /// The WAL is in the database whole: the half's next write starts it over.
    fn whole(&self) -> bool {
        !self.busy && self.frames == self.copied
    }
}

/// Runs `PRAGMA <half>.wal_checkpoint(<mode>)` (`PASSIVE` never holds a writer up).
fn checkpoint(conn: &Connection, half: usize, mode: &str) -> Result<Checkpoint, StoreError> {
    let pragma = format!("PRAGMA {}.wal_checkpoint({mode})", HALVES[half]);
    let done = conn.query_row(&pragma, [], |r| {
        Ok(Checkpoint {
            busy: r.get::<_, i64>(0)? != 0,
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })?;
    Ok(done)
}

/// Seals each row's body, bound to its session and number (the pool path uses it too).
pub(super) fn seal(
    keys: &KeyRing,
    rows: Vec<LogRow>,
) -> Result<Vec<(Arc<str>, u64, String)>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let n = row.n.to_string();
            let body = keys.encrypt_field(&row.body, aad(&row.session, &n))?;
            Ok((row.session, row.n, body))
        })
        .collect()
}

#[cfg(test)]
mod tests;
