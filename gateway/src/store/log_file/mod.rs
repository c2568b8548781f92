//! The conversation log's SQLite file, owned by one thread of its own.
//!
//! Every customer and agent `ack` on one node waits for a group commit here, so a commit's
//! cost is the node's ack latency. Through the pool each commit was five hand-overs between
//! the runtime and other threads (sealing on the blocking pool, then `BEGIN`, `INSERT`,
//! `COMMIT` each a trip to the driver's worker); on two busy cores every hand-over may wait
//! for a core. Here a commit is one job: the thread seals the rows, inserts them and commits,
//! and answers once.
//!
//! The other cost was SQLite's automatic checkpoint: every ~4 MB of WAL the committing
//! connection copied the WAL into the database and flushed both to disk (~25 ms on this
//! disk) while every ack behind it waited. Checkpoints now run on a second connection, a
//! thread of their own ([`checkpointer`]): it copies in rounds until it has caught up with
//! the writer, then the writer copies the last few pages itself, between two commits, so
//! that its next write starts the WAL over. The WAL stays small without the writer ever
//! doing the bulk of the copying.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::crypto::Aad;
use super::{KeyRing, LogRow, SqliteSync, StoreError};
use crate::telemetry::metric;

/// Jobs waiting for the thread at most (the journal's writer sends one commit at a time).
const JOBS: usize = 256;
/// A checkpoint cycle starts at most this often while the log is being written.
const CYCLE_EVERY: Duration = Duration::from_millis(50);
/// The writer copies the rest itself (so the WAL starts over) once the WAL is this many
/// frames long (1 MB): while idle it need not, and a larger WAL made the writer's copy
/// slower, not rarer enough (16 MB: ~12 ms per copy against ~2 ms, and a worse ack tail).
const RESTART_FRAMES: i64 = 256;
/// The checkpointer's rounds stop once a round found fewer new WAL frames than this...
const CAUGHT_UP_FRAMES: i64 = 64;
/// ...or after this many rounds (the writer then copies what is left).
const MAX_ROUNDS: usize = 8;

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
    /// From the checkpointer: it has caught up (or failed) with the WAL this many frames long.
    CaughtUp(i64),
    /// Checkpoint everything, close the file, stop.
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
    /// Opens (creating) the log file and starts its two threads.
    pub(super) async fn open(
        file: PathBuf,
        sync: SqliteSync,
        keys: Arc<KeyRing>,
    ) -> Result<LogFile, StoreError> {
        Self::open_restarting_at(file, sync, keys, RESTART_FRAMES).await
    }

    /// As [`Self::open`], the WAL started over at `restart_frames` (tests use a small one).
    async fn open_restarting_at(
        file: PathBuf,
        sync: SqliteSync,
        keys: Arc<KeyRing>,
        restart_frames: i64,
    ) -> Result<LogFile, StoreError> {
        let (jobs, rx) = mpsc::channel(JOBS);
        let (ready, opened) = oneshot::channel();
        let to_self = jobs.downgrade();
        std::thread::Builder::new()
            .name("kefu-log".into())
            .spawn(
                move || match Writer::open(&file, sync, keys, restart_frames) {
                    Ok(writer) => {
                        let checkpoints = checkpointer::checkpointer(&file, sync, to_self);
                        let _ = ready.send(Ok(()));
                        writer.run(rx, checkpoints);
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                    }
                },
            )
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

    /// Waits for what was sent before, checkpoints and closes the file.
    pub(super) async fn close(&self) {
        if self.call(Job::Close).await.is_err() {
            tracing::debug!("conversation log file already closed");
        }
    }

    pub(super) async fn delete(&self, sessions: Vec<String>) -> Result<(), StoreError> {
        self.call(|r| Job::Delete(sessions, r)).await
    }
}

/// The writing thread's state.
struct Writer {
    conn: Connection,
    keys: Arc<KeyRing>,
    /// A checkpoint cycle is under way (the checkpointer copies; `CaughtUp` ends it).
    cycling: bool,
    /// Something was written since the WAL last started over.
    dirty: bool,
    last_cycle: Instant,
    /// See [`RESTART_FRAMES`].
    restart_frames: i64,
    /// Ended sessions whose rows are still to be deleted, in order, and the same as a set.
    forget: VecDeque<String>,
    forgetting: HashSet<String>,
}

fn connect(file: &Path, sync: SqliteSync) -> Result<Connection, StoreError> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let level = match sync {
        SqliteSync::Normal => "NORMAL",
        SqliteSync::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", level)?;
    Ok(conn)
}

impl Writer {
    fn open(
        file: &Path,
        sync: SqliteSync,
        keys: Arc<KeyRing>,
        restart_frames: i64,
    ) -> Result<Writer, StoreError> {
        let conn = connect(file, sync)?;
        // Checkpoints are this module's (see the module doc), never a commit's side effect.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.execute_batch(LOG_TABLE)?;
        Ok(Writer {
            conn,
            keys,
            cycling: false,
            dirty: false,
            last_cycle: Instant::now(),
            restart_frames,
            forget: VecDeque::new(),
            forgetting: HashSet::new(),
        })
    }

    fn run(
        mut self,
        mut jobs: mpsc::Receiver<Job>,
        mut checkpoints: Option<std::sync::mpsc::Sender<()>>,
    ) {
        loop {
            let job = if self.forget.is_empty() {
                jobs.blocking_recv()
            } else {
                match jobs.try_recv() {
                    Ok(job) => Some(job),
                    // Nothing waits: a group of deletes on its own.
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match self.commit_with_deletes(&[], IDLE_DELETES) {
                            Ok(()) => self.dirty = true,
                            Err(err) => {
                                tracing::warn!(%err, "cannot delete ended sessions' logs")
                            }
                        }
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(job) = job else { break };
            if let Job::Close(reply) = job {
                self.close();
                let _ = reply.send(Ok(()));
                return;
            }
            self.handle(job);
            if self.dirty && !self.cycling && self.last_cycle.elapsed() >= CYCLE_EVERY {
                self.last_cycle = Instant::now();
                match &checkpoints {
                    Some(tx) if tx.send(()).is_ok() => self.cycling = true,
                    // No checkpointer (it could not open, or stopped): copy here instead.
                    _ => {
                        checkpoints = None;
                        self.finish_checkpoint();
                    }
                }
            }
        }
        self.close();
    }

    /// Deletes what is still to be deleted, and leaves the database whole and the WAL empty
    /// for the next start.
    fn close(mut self) {
        if let Err(err) = self.commit_with_deletes(&[], usize::MAX) {
            tracing::warn!(%err, "cannot delete ended sessions' logs");
        }
        if let Err(err) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%err, "conversation log: last checkpoint failed");
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Append(rows, reply) => {
                let result = seal(&self.keys, rows)
                    .and_then(|rows| self.commit_with_deletes(&rows, DELETES_PER_COMMIT));
                self.dirty |= result.is_ok();
                let _ = reply.send(result);
            }
            Job::Import(rows, reply) => {
                let result = self.insert(&rows);
                self.dirty |= result.is_ok();
                let _ = reply.send(result);
            }
            Job::Load(session, reply) => {
                let _ = reply.send(self.load(&session));
            }
            Job::Sessions(limit, reply) => {
                let _ = reply.send(self.sessions(limit));
            }
            Job::LastNumber(reply) => {
                let result = self
                    .conn
                    .query_row("SELECT COALESCE(MAX(n), 0) FROM kefu_log", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .map_err(StoreError::from);
                let _ = reply.send(result);
            }
            Job::Delete(sessions, reply) => {
                if self.forget.len() + sessions.len() <= MAX_QUEUED_DELETES {
                    for session in sessions {
                        if self.forgetting.insert(session.clone()) {
                            self.forget.push_back(session);
                        }
                    }
                    let _ = reply.send(Ok(()));
                } else {
                    let result = self.delete_now(&sessions);
                    self.dirty |= result.is_ok();
                    let _ = reply.send(result);
                }
            }
            Job::CaughtUp(frames) => {
                if frames >= self.restart_frames {
                    self.finish_checkpoint();
                }
                self.cycling = false;
            }
            Job::Close(reply) => {
                let _ = reply.send(Err(StoreError::WriterGone));
            }
        }
    }

    /// Copies what the checkpointer left (the pages written during its last round), so the
    /// next write starts the WAL over.
    fn finish_checkpoint(&mut self) {
        let started = Instant::now();
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            }) {
            Ok((busy, log, done)) => {
                if busy == 0 && log == done {
                    self.dirty = false;
                }
                metrics::gauge!(metric::JOURNAL_WAL_FRAMES).set(log as f64);
            }
            Err(err) => tracing::warn!(%err, "conversation log checkpoint failed"),
        }
        metrics::histogram!(metric::JOURNAL_CHECKPOINT_SECONDS, "by" => "writer")
            .record(started.elapsed().as_secs_f64());
    }

    /// One transaction; a prepared single-row statement per row (with the database in this
    /// thread a statement costs no trip, so batching statements would only add parsing).
    fn insert(&mut self, rows: &[(Arc<str>, u64, String)]) -> Result<(), StoreError> {
        self.commit_with_deletes(rows, 0)
    }

    /// Appends `rows` and deletes up to `deletes` of the ended sessions waiting, in one
    /// transaction. Deletes ride along a few at a time because a group of them on its own
    /// (32 sessions, 2-5 ms at a peak) held every ack behind it; a few per commit cost each
    /// commit little. On failure the deletes stay queued.
    fn commit_with_deletes(
        &mut self,
        rows: &[(Arc<str>, u64, String)],
        deletes: usize,
    ) -> Result<(), StoreError> {
        let take = deletes.min(self.forget.len());
        let tx = self.conn.transaction()?;
        {
            let mut statement =
                tx.prepare_cached("INSERT INTO kefu_log (session, n, body_enc) VALUES (?, ?, ?)")?;
            for (session, n, body) in rows {
                statement.execute(rusqlite::params![&**session, sql_n(*n), body])?;
            }
        }
        if take > 0 {
            let started = Instant::now();
            let mut statement = tx.prepare_cached("DELETE FROM kefu_log WHERE session = ?")?;
            for session in self.forget.iter().take(take) {
                statement.execute([session])?;
            }
            metrics::histogram!(metric::JOURNAL_FORGET_SECONDS)
                .record(started.elapsed().as_secs_f64());
        }
        tx.commit()?;
        for session in self.forget.drain(..take) {
            self.forgetting.remove(&session);
        }
        Ok(())
    }

    fn load(&self, session: &str) -> Result<Vec<String>, StoreError> {
        if self.forgetting.contains(session) {
            return Ok(Vec::new()); // ended: its rows are about to go
        }
        let mut statement = self
            .conn
            .prepare_cached("SELECT n, body_enc FROM kefu_log WHERE session = ? ORDER BY n")?;
        let rows = statement.query_map([session], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut bodies = Vec::new();
        for row in rows {
            let (n, body): (i64, String) = row?;
            let n = n.to_string();
            bodies.push(self.keys.decrypt_field(&body, aad(session, &n))?);
        }
        Ok(bodies)
    }

    fn sessions(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT DISTINCT session FROM kefu_log LIMIT ?")?;
        let rows = statement.query_map([sql_n(limit as u64)], |r| r.get::<_, String>(0))?;
        let mut sessions = Vec::new();
        for row in rows {
            let session = row?;
            if !self.forgetting.contains(&session) {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }

    fn delete_now(&mut self, sessions: &[String]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut statement = tx.prepare_cached("DELETE FROM kefu_log WHERE session = ?")?;
            for session in sessions {
                statement.execute([session])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
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

mod checkpointer;
#[cfg(test)]
mod tests;
