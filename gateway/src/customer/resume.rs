//! Resuming a session this node does not hold: rebuilt from the durable log after its node
//! crashed, was deployed, or lost it (this node restarted; another node took it over).

use std::sync::Arc;

use crate::app::AppState;
use crate::session::{rebuild, RebuildError, Session, SessionLog};
use crate::telemetry::metric;

pub enum FromLog {
    /// Rebuilt (or found live here after all) and owned by this node now.
    Resumed(Arc<Session>),
    /// The log says the session ended.
    Closed,
    /// No log, or not this token: answered like any unknown session.
    Unknown,
    /// No log to look in.
    NotTried,
}

/// Checks the token against the log, takes the lease (fencing the previous owner), reads the
/// log again (everything the old owner wrote before the fence) and rebuilds the session.
pub async fn from_log(app: &AppState, id: &str, token: &str) -> FromLog {
    let probe = SessionLog {
        journal: app.journal.clone(),
        epoch: 0,
    };
    let limits = app.sessions.limits().clone();
    match load(app, id).await {
        Some(loaded) => {
            if let Err(err) = rebuild(id, loaded.entries, limits.clone(), probe, Some(token)) {
                return match err {
                    RebuildError::Closed => FromLog::Closed,
                    RebuildError::Unknown => FromLog::Unknown,
                };
            }
        }
        None => return FromLog::Unknown,
    }
    let epoch = match app.journal.take_lease(id).await {
        Ok(Some(epoch)) => epoch,
        Ok(None) => return FromLog::Unknown,
        Err(err) => {
            tracing::error!(%err, "cannot take a session's lease");
            return FromLog::Unknown;
        }
    };
    let Some(loaded) = load(app, id).await else {
        return FromLog::Unknown;
    };
    let log = SessionLog {
        journal: app.journal.clone(),
        epoch,
    };
    let rebuilt = match rebuild(id, loaded.entries, limits, log, Some(token)) {
        Ok(r) => r,
        Err(RebuildError::Closed) => return FromLog::Closed,
        Err(RebuildError::Unknown) => return FromLog::Unknown,
    };
    let (session, adopted) = app.sessions.adopt(rebuilt.session);
    if adopted {
        metrics::counter!(metric::SESSIONS_RESUMED_FROM_LOG_TOTAL).increment(1);
        tracing::info!(epoch, "session rebuilt from the conversation log");
        app.relay
            .adopt(&session, rebuilt.undelivered, loaded.cursor)
            .await;
    }
    FromLog::Resumed(session)
}

async fn load(app: &AppState, id: &str) -> Option<crate::journal::Loaded> {
    match app.journal.load(id).await {
        Ok(loaded) => loaded,
        Err(err) => {
            tracing::error!(%err, "cannot read a session's log");
            None
        }
    }
}
