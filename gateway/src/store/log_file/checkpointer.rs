//! The second connection that copies the WAL into the database (see the parent module).

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::{connect, Job, CAUGHT_UP_FRAMES, MAX_ROUNDS};
use crate::store::SqliteSync;
use crate::telemetry::metric;

/// Starts the checkpointing thread on a second connection. Each signal starts one cycle:
/// copying rounds (a passive checkpoint never holds the writer up) until a round finds
/// little new, then `CaughtUp` to the writer. None when it cannot start: the writer then
/// checkpoints itself.
pub(super) fn checkpointer(
    file: &Path,
    sync: SqliteSync,
    writer: mpsc::WeakSender<Job>,
) -> Option<std::sync::mpsc::Sender<()>> {
    let conn = match connect(file, sync) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(%err, "conversation log checkpointer cannot open; the writer checkpoints");
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let started = std::thread::Builder::new()
        .name("kefu-log-ckpt".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let frames = copy_rounds(&conn);
                let Some(writer) = writer.upgrade() else {
                    return;
                };
                if writer.blocking_send(Job::CaughtUp(frames)).is_err() {
                    return;
                }
            }
        });
    started.ok().map(|_| tx)
}

/// Copies until caught up; the WAL's length in frames (`i64::MAX` after a failure, so that
/// the writer tries itself).
fn copy_rounds(conn: &Connection) -> i64 {
    let mut last_log = 0i64;
    for _ in 0..MAX_ROUNDS {
        let started = Instant::now();
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        metrics::histogram!(metric::JOURNAL_CHECKPOINT_SECONDS, "by" => "checkpointer")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok((log, _done)) => {
                let new = log - last_log;
                last_log = log;
                if new < CAUGHT_UP_FRAMES {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "conversation log checkpoint failed");
                return i64::MAX;
            }
        }
    }
    last_log
}
