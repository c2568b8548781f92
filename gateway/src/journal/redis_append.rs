//! Appending to the Redis log: a commit's groups as one `MULTI`/`EXEC` of plain `XADD`s, and
//! what the replies mean. The fence is the stream id (see `redis_log`): an owner at epoch `E`
//! appends `<EPOCH_BASE + E>-*`, which Redis refuses once a takeover moved the stream past
//! that epoch; an input appends `*` with `NOMKSTREAM`.

use std::time::Duration;

use redis::Value;

use super::redis_log::{RedisLog, EPOCH_BASE, LOG_TTL};
use super::{Fence, JournalError};
use crate::telemetry::metric;

/// How one group's appends came back.
enum Answer {
    Appended,
    /// Another epoch owns the log (or, for the owner, the log is gone).
    Fenced,
    /// An input for a session without a log.
    NoLog,
    /// A reply that cannot be: the key is not a stream, an unknown error.
    Odd(String),
}

impl RedisLog {
    /// Appends `groups` (session, fence, sealed bodies) in one `MULTI`/`EXEC`, retrying
    /// until Redis answers: a connection lost before `EXEC` applied nothing (Redis drops the
    /// transaction), and a call lands whole or not at all. (A reply lost after `EXEC` repeats
    /// the call's entries; a rebuild keeps each frame `seq` and agent message id once.)
    /// One outcome per group. On a Cluster every group must be of one session.
    pub(super) async fn append_call(
        &self,
        node: &str,
        groups: &[(&str, Fence, &[String])],
    ) -> Vec<Result<(), JournalError>> {
        let ttl = LOG_TTL.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        for (session, fence, bodies) in groups {
            let keys = self.keys(session);
            let id = match fence {
                Fence::Create => format!("{}-*", EPOCH_BASE + 1),
                Fence::Owner(epoch) => format!("{}-*", EPOCH_BASE.saturating_add(*epoch)),
                Fence::Input => "*".to_string(),
            };
            for body in bodies.iter() {
                let xadd = pipe.cmd("XADD").arg(&keys.log);
                if *fence != Fence::Create {
                    xadd.arg("NOMKSTREAM");
                }
                xadd.arg(&id).arg("e").arg(body);
            }
            if *fence == Fence::Create {
                // No epoch counter yet: a takeover's INCR starts it, and `TAKE` (redis_log) moves it
                // past the log's own epoch.
                let owner = format!("{node}:1");
                pipe.cmd("SET")
                    .arg(&keys.lease)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .ignore();
                pipe.pexpire(&keys.log, ttl as i64).ignore();
            }
        }
        let mut delay = Duration::from_millis(20);
        loop {
            let mut conn = self.conn();
            match pipe.query_async::<Vec<Value>>(&mut conn).await {
                Ok(replies) => return outcomes(groups, replies),
                Err(err) => {
                    metrics::counter!(metric::JOURNAL_ERRORS_TOTAL).increment(1);
                    tracing::warn!(%err, "conversation log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// One outcome per group from a call's replies (one per `XADD`, in order).
fn outcomes(
    groups: &[(&str, Fence, &[String])],
    replies: Vec<Value>,
) -> Vec<Result<(), JournalError>> {
    let expected: usize = groups.iter().map(|(_, _, bodies)| bodies.len()).sum();
    if replies.len() != expected {
        tracing::error!("conversation log answered the wrong count");
        return groups
            .iter()
            .map(|_| Err(JournalError::Unavailable("bad answer".into())))
            .collect();
    }
    let mut replies = replies.into_iter();
    groups
        .iter()
        .map(|(_, fence, bodies)| {
            // Every reply is read, so the next group starts at its own.
            let answers: Vec<Answer> = replies
                .by_ref()
                .take(bodies.len())
                .map(|reply| answer(*fence, reply))
                .collect();
            match answers.into_iter().find(|a| !matches!(a, Answer::Appended)) {
                None => Ok(()),
                Some(Answer::Fenced) => {
                    metrics::counter!(metric::JOURNAL_FENCED_TOTAL).increment(1);
                    Err(JournalError::Fenced)
                }
                Some(Answer::NoLog) => Err(JournalError::NoLog),
                Some(Answer::Odd(what)) => {
                    metrics::counter!(metric::JOURNAL_ERRORS_TOTAL).increment(1);
                    tracing::error!(%what, "conversation log append refused");
                    Err(JournalError::Unavailable(what))
                }
                Some(Answer::Appended) => Ok(()),
            }
        })
        .collect()
}

/// What one `XADD`'s reply means for an append under `fence`.
fn answer(fence: Fence, reply: Value) -> Answer {
    match reply {
        Value::BulkString(_) | Value::SimpleString(_) => Answer::Appended,
        // NOMKSTREAM and no stream: the session's log is gone (ended, or expired).
        Value::Nil if fence == Fence::Input => Answer::NoLog,
        Value::Nil => Answer::Fenced,
        Value::ServerError(err) if err.details().is_some_and(is_older_id) => Answer::Fenced,
        Value::ServerError(err) => Answer::Odd(format!("{err:?}")),
        other => Answer::Odd(format!("unexpected reply {other:?}")),
    }
}

/// Redis's refusal of an id at or below the stream's top: an append of an older epoch.
fn is_older_id(details: &str) -> bool {
    details.contains("equal or smaller")
}
