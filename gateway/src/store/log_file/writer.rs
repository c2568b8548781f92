//! The writing thread: appends to one half, reads both, swaps when the other is ready.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::checkpointer;
use super::{
    aad, checkpoint, connect, seal, sql_n, Job, DELETES_PER_COMMIT, FORCE_ROWS, HALVES,
    IDLE_DELETES, LOG_TABLE, MARK_TABLE, MAX_QUEUED_DELETES, SWAP_EVERY,
};
use crate::store::{KeyRing, SqliteSync, StoreError};
use crate::telemetry::metric;

/// Per half (see [`HALVES`]): the statements of every commit, spelled out so that a commit
/// builds no SQL.
const INSERT: [&str; 2] = [
    "INSERT INTO main.kefu_log (session, n, body_enc) VALUES (?, ?, ?)",
    "INSERT INTO alt.kefu_log (session, n, body_enc) VALUES (?, ?, ?)",
];
const DELETE: [&str; 2] = [
    "DELETE FROM main.kefu_log WHERE session = ?",
    "DELETE FROM alt.kefu_log WHERE session = ?",
];

/// After a failed group of deletes on its own, the next waits this long (or for a job).
const DELETE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The writing thread's state.
pub(super) struct Writer {
    conn: Connection,
    keys: Arc<KeyRing>,
    /// The checkpointer's handle; None when it could not start or has stopped (the writer
    /// then copies the half it writes itself before each swap, at most every
    /// [`SWAP_EVERY`]).
    pub(super) checkpoints: Option<checkpointer::Handle>,
    /// The half appended to.
    active: usize,
    /// The other half is copied whole and started over, so the halves may swap.
    other_ready: bool,
    /// Since the last swap (or the writer's own copy): when, and how many rows and deletes.
    swapped: Instant,
    written: u64,
    /// Ended sessions whose rows are still to be deleted, per half, in order...
    forget: [VecDeque<String>; 2],
    /// ...and the same as a map: session -> the halves (bits) it is still to be deleted from.
    forgetting: HashMap<String, u8>,
    /// When deleting on its own last failed: deletes then wait a while (a full or broken
    /// disk must not turn the loop into a spin).
    delete_failed: Option<Instant>,
}

impl Writer {
    pub(super) fn open(
        files: &[PathBuf; 2],
        sync: SqliteSync,
        keys: Arc<KeyRing>,
    ) -> Result<Writer, StoreError> {
        let conn = connect(files, sync)?;
        // Checkpoints are this module's (see the module doc), never a commit's side effect.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        for half in HALVES {
            conn.execute_batch(&LOG_TABLE.replace("kefu_log", &format!("{half}.kefu_log")))?;
            conn.execute_batch(
                &MARK_TABLE.replace("kefu_log_mark", &format!("{half}.kefu_log_mark")),
            )?;
        }
        Ok(Writer {
            conn,
            keys,
            checkpoints: None,
            active: 0,
            other_ready: false,
            swapped: Instant::now(),
            written: 0,
            forget: [VecDeque::new(), VecDeque::new()],
            forgetting: HashMap::new(),
            delete_failed: None,
        })
    }

    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        // The second half may hold what an earlier run wrote: ready it before the first swap.
        self.ask_ready(1);
        loop {
            let job = if !self.deletes_waiting() {
                jobs.blocking_recv()
            } else {
                match jobs.try_recv() {
                    Ok(job) => Some(job),
                    // Nothing waits: a group of deletes on its own.
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match self.commit_with_deletes(&[], IDLE_DELETES) {
                            Ok(taken) => self.wrote(taken as u64),
                            Err(err) => {
                                tracing::warn!(%err, "cannot delete ended sessions' logs");
                                self.delete_failed = Some(Instant::now());
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
        }
        self.close();
    }

    /// Deletes wait for the active half, or for the other one, which is ready to take over.
    fn deletes_waiting(&mut self) -> bool {
        if self
            .delete_failed
            .is_some_and(|at| at.elapsed() < DELETE_RETRY_AFTER)
        {
            return false;
        }
        if !self.forget[self.active].is_empty() {
            return true;
        }
        if !self.forget[1 - self.active].is_empty() && self.other_ready {
            self.swap();
            return true;
        }
        false
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Append(rows, reply) => {
                let count = rows.len() as u64;
                let result = seal(&self.keys, rows)
                    .and_then(|rows| self.commit_with_deletes(&rows, DELETES_PER_COMMIT));
                let taken = result.as_ref().ok().copied();
                let _ = reply.send(result.map(|_| ()));
                if let Some(taken) = taken {
                    self.wrote(count + taken as u64);
                }
            }
            Job::Import(rows, reply) => {
                let result = self.commit_with_deletes(&rows, 0);
                let ok = result.is_ok();
                let _ = reply.send(result.map(|_| ()));
                if ok {
                    self.wrote(rows.len() as u64);
                }
            }
            Job::Load(session, reply) => {
                let _ = reply.send(self.load(&session));
            }
            Job::Sessions(limit, reply) => {
                let _ = reply.send(self.sessions(limit));
            }
            Job::LastNumber(reply) => {
                let _ = reply.send(self.last_number());
            }
            Job::Delete(sessions, reply) => {
                if self.forgetting.len() + sessions.len() <= MAX_QUEUED_DELETES {
                    for session in sessions {
                        if !self.forgetting.contains_key(&session) {
                            self.forgetting.insert(session.clone(), 0b11);
                            self.forget[0].push_back(session.clone());
                            self.forget[1].push_back(session);
                        }
                    }
                    let _ = reply.send(Ok(()));
                } else {
                    let result = self.delete_now(&sessions);
                    let ok = result.is_ok();
                    let _ = reply.send(result);
                    if ok {
                        self.wrote(sessions.len() as u64);
                    }
                }
            }
            Job::Ready(half) => {
                if half != self.active {
                    self.other_ready = true;
                }
                self.maybe_swap();
            }
            Job::Close(reply) => {
                let _ = reply.send(Err(StoreError::WriterGone));
            }
        }
    }

    /// After a write of `count` rows and deletes: swap when the other half is ready; copy
    /// the active half itself only when nobody else does.
    fn wrote(&mut self, count: u64) {
        self.written += count;
        if self.checkpoints.is_none() {
            // Nobody readies the other half: copy this one here, and swap all the same so
            // that both halves get their deletes.
            if self.swapped.elapsed() >= SWAP_EVERY {
                self.copy_active();
                self.swap();
            }
            return;
        }
        self.maybe_swap();
        if self.written >= FORCE_ROWS {
            tracing::warn!(
                rows = self.written,
                "conversation log: the checkpointer is behind, the writer copies"
            );
            self.copy_active();
        }
    }

    fn maybe_swap(&mut self) {
        if self.other_ready && self.written > 0 && self.swapped.elapsed() >= SWAP_EVERY {
            self.swap();
        }
    }

    /// Appends go to the other half from now on; the one written so far gets readied.
    fn swap(&mut self) {
        let old = self.active;
        self.active = 1 - old;
        self.other_ready = false;
        self.swapped = Instant::now();
        self.written = 0;
        self.ask_ready(old);
    }

    /// Asks the checkpointer to ready `half`; without one the writer copies each half
    /// itself, so the other half is always ready.
    fn ask_ready(&mut self, half: usize) {
        match &self.checkpoints {
            Some(checkpoints) if checkpoints.ready(half) => {}
            Some(_) => {
                tracing::warn!("conversation log checkpointer stopped; the writer checkpoints");
                self.checkpoints = None;
                self.other_ready = true;
            }
            None => self.other_ready = true,
        }
    }

    /// The writer's own copy of the active half (it then starts over with the next write).
    fn copy_active(&mut self) {
        let started = Instant::now();
        match checkpoint(&self.conn, self.active, "PASSIVE") {
            Ok(done) => metrics::gauge!(metric::JOURNAL_WAL_FRAMES).set(done.frames as f64),
            Err(err) => tracing::warn!(%err, "conversation log checkpoint failed"),
        }
        metrics::histogram!(metric::JOURNAL_CHECKPOINT_SECONDS, "by" => "writer")
            .record(started.elapsed().as_secs_f64());
        self.swapped = Instant::now();
        self.written = 0;
    }

    /// Deletes what is still to be deleted, and leaves both halves whole and their WALs
    /// empty for the next start.
    fn close(mut self) {
        self.checkpoints = None; // its thread stops after what it is doing
        for half in 0..HALVES.len() {
            self.active = half;
            if let Err(err) = self.commit_with_deletes(&[], usize::MAX) {
                tracing::warn!(%err, "cannot delete ended sessions' logs");
            }
            if let Err(err) = checkpoint(&self.conn, half, "TRUNCATE") {
                tracing::warn!(%err, "conversation log: last checkpoint failed");
            }
        }
    }

    /// Appends `rows` to the active half and deletes up to `deletes` of the ended sessions
    /// waiting for it, in one transaction; how many were deleted. Deletes ride along a few
    /// at a time because a group of them on its own (32 sessions, 2-5 ms at a peak) held
    /// every ack behind it; a few per commit cost each commit little. On failure the
    /// deletes stay queued.
    fn commit_with_deletes(
        &mut self,
        rows: &[(Arc<str>, u64, String)],
        deletes: usize,
    ) -> Result<usize, StoreError> {
        let half = self.active;
        let take = deletes.min(self.forget[half].len());
        let tx = self.conn.transaction()?;
        {
            let mut statement = tx.prepare_cached(INSERT[half])?;
            for (session, n, body) in rows {
                statement.execute(rusqlite::params![&**session, sql_n(*n), body])?;
            }
        }
        if take > 0 {
            let started = Instant::now();
            let mut statement = tx.prepare_cached(DELETE[half])?;
            for session in self.forget[half].iter().take(take) {
                statement.execute([session])?;
            }
            metrics::histogram!(metric::JOURNAL_FORGET_SECONDS)
                .record(started.elapsed().as_secs_f64());
        }
        tx.commit()?;
        for session in self.forget[half].drain(..take) {
            if let Some(halves) = self.forgetting.get_mut(&session) {
                *halves &= !(1 << half);
                if *halves == 0 {
                    self.forgetting.remove(&session);
                }
            }
        }
        Ok(take)
    }

    fn load(&self, session: &str) -> Result<Vec<String>, StoreError> {
        if self.forgetting.contains_key(session) {
            return Ok(Vec::new()); // ended: its rows are about to go
        }
        let mut statement = self.conn.prepare_cached(
            "SELECT n, body_enc FROM main.kefu_log WHERE session = ?1 \
             UNION ALL SELECT n, body_enc FROM alt.kefu_log WHERE session = ?1 ORDER BY 1",
        )?;
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
        let mut statement = self.conn.prepare_cached(
            "SELECT session FROM main.kefu_log UNION SELECT session FROM alt.kefu_log LIMIT ?",
        )?;
        let rows = statement.query_map([sql_n(limit as u64)], |r| r.get::<_, String>(0))?;
        let mut sessions = Vec::new();
        for row in rows {
            let session = row?;
            if !self.forgetting.contains_key(&session) {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }

    fn last_number(&self) -> Result<u64, StoreError> {
        let n = self.conn.query_row(
            "SELECT MAX((SELECT COALESCE(MAX(n), 0) FROM main.kefu_log), \
             (SELECT COALESCE(MAX(n), 0) FROM alt.kefu_log))",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes from both halves at once (the queue is full).
    fn delete_now(&mut self, sessions: &[String]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for delete in DELETE {
            let mut statement = tx.prepare_cached(delete)?;
            for session in sessions {
                statement.execute([session])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
