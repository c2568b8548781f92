//! Retention: conversations older than `store.retention_days` are deleted by a periodic job,
//! and every run that deletes something says so in the log.

use crate::session::now_ms;
use crate::store::Store;
use crate::telemetry::metric;

/// Deletes what is past retention (`store.retention_days`); returns how many conversations
/// went.
pub async fn run_once(store: &Store, days: u64) -> u64 {
    let cutoff = now_ms().saturating_sub(days.saturating_mul(86_400_000));
    // Questions the bot missed are kept under the same rule as the conversations they came from.
    match store.purge_misses_before(cutoff).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "retention: old missed questions deleted"),
        Ok(_) => {}
        Err(err) => tracing::error!(error = %err, "retention of missed questions failed"),
    }
    // Uploads a node never finished (it stopped mid-way) after an hour.
    match store
        .purge_unfinished_uploads(now_ms().saturating_sub(3_600_000))
        .await
    {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "unfinished uploads deleted"),
        Ok(_) => {}
        Err(err) => tracing::error!(error = %err, "cleaning unfinished uploads failed"),
    }
    match store.purge_older_than(cutoff).await {
        Ok(deleted) => {
            metrics::counter!(metric::RETENTION_DELETED_TOTAL).increment(deleted);
            if deleted > 0 {
                tracing::info!(
                    deleted,
                    retention_days = days,
                    "retention: old conversations deleted"
                );
            } else {
                tracing::debug!(retention_days = days, "retention: nothing to delete");
            }
            deleted
        }
        Err(err) => {
            tracing::error!(error = %err, "retention job failed");
            0
        }
    }
}
