//! The second connection, on a thread of its own, that readies the half nobody writes (see
//! the parent module): copies its WAL into its database whole, then rewrites the half's
//! mark row, the write that starts the WAL over and flushes its new header, so that the
//! writer's first commit to it after the swap flushes nothing.

use std::path::PathBuf;
use std::sync::mpsc::{self, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc as tokio_mpsc;

use super::{checkpoint, connect, Job, HALVES};
use crate::store::SqliteSync;
use crate::telemetry::metric;

/// A round that could not copy the WAL whole (a read holds an older snapshot) waits this
/// long before the next.
const RETRY_PAUSE: Duration = Duration::from_millis(2);
/// Rounds at most for one half; then it is handed over as it is (the next readying copies
/// what is left).
const MAX_ROUNDS: usize = 50;

/// The writer's side: asks for a half to be readied.
pub(super) struct Handle {
    halves: mpsc::SyncSender<usize>,
}

impl Handle {
    /// Ready `half` (the writer no longer writes it). False once the checkpointer stopped.
    pub(super) fn ready(&self, half: usize) -> bool {
        !matches!(
            self.halves.try_send(half),
            Err(TrySendError::Disconnected(_))
        )
    }
}

/// Starts the checkpointing thread on a second connection; None when it cannot start (the
/// writer then checkpoints itself).
pub(super) fn start(
    files: &[PathBuf; 2],
    sync: SqliteSync,
    writer: tokio_mpsc::WeakSender<Job>,
) -> Option<Handle> {
    let conn = match connect(files, sync) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(%err, "conversation log checkpointer cannot open; the writer checkpoints");
            return None;
        }
    };
    // The writer asks for one half at a time (it swaps only to a ready half).
    let (halves, rx) = mpsc::sync_channel::<usize>(2);
    let started = std::thread::Builder::new()
        .name("kefu-log-ckpt".into())
        .spawn(move || {
            while let Ok(half) = rx.recv() {
                let started = Instant::now();
                ready_half(&conn, half);
                metrics::histogram!(metric::JOURNAL_CHECKPOINT_SECONDS, "by" => "checkpointer")
                    .record(started.elapsed().as_secs_f64());
                let Some(writer) = writer.upgrade() else {
                    return;
                };
                if writer.blocking_send(Job::Ready(half)).is_err() {
                    return;
                }
            }
        });
    match started {
        Ok(_) => Some(Handle { halves }),
        Err(err) => {
            tracing::warn!(%err, "conversation log checkpointer cannot start; the writer checkpoints");
            None
        }
    }
}

/// Copies the half whole (in rounds while a read stands in the way), then starts its WAL
/// over. A failure is logged; the half is handed over all the same (the writer never
/// needs it copied, only its WAL kept short).
fn ready_half(conn: &Connection, half: usize) {
    for _ in 0..MAX_ROUNDS {
        match checkpoint(conn, half, "PASSIVE") {
            Ok(done) if done.whole() => {
                metrics::gauge!(metric::JOURNAL_WAL_FRAMES).set(done.frames as f64);
                break;
            }
            Ok(_) => std::thread::sleep(RETRY_PAUSE),
            Err(err) => {
                tracing::warn!(%err, "conversation log checkpoint failed");
                return;
            }
        }
    }
    let mark = format!(
        "INSERT INTO {}.kefu_log_mark (k, restarts) VALUES (1, 1) \
         ON CONFLICT (k) DO UPDATE SET restarts = restarts + 1",
        HALVES[half]
    );
    if let Err(err) = conn.execute(&mark, []) {
        tracing::warn!(%err, "conversation log: cannot start a WAL over");
    }
}
