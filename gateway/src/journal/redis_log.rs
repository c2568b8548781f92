//! The log on Redis: per session a stream and its lease, under one hash tag
//! (`{<prefix>:s:<id>}`), so one script can check the lease and append atomically, and a
//! Redis Cluster spreads sessions over its shards.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p:s:<id>}:log` | stream | entries, field `e`: `x` + sealed JSON (store key) or `p` + JSON |
//! | `{p:s:<id>}:lease` | string | `node:epoch` of the owner |
//! | `{p:s:<id>}:epoch` | string | the last epoch handed out (INCR) |
//!
//! Every key expires `LOG_TTL` after the session's last append: an abandoned log does not
//! outlive the trade's needs (its record is in the store by then).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::writer::LogGroup;
use super::{Fence, JournalError};
use crate::dispatch::redis::Conn;
use crate::dispatch::DispatchSettings;
use crate::store::crypto::Aad;
use crate::store::KeyRing;
use crate::telemetry::metric;

/// Entries sealed on the runtime thread at most per commit (see `seal_groups`).
const INLINE_SEAL: usize = 64;

/// How long a log outlives its last append.
const LOG_TTL: Duration = Duration::from_secs(24 * 3600);

/// Appends entries if the caller may: `c` creates the lease (epoch 1) if nobody holds it,
/// `o` requires the lease to be the caller's, `i` (an input from another node) requires the
/// log to exist. Replies 1 (appended), 0 (fenced), -1 (no log).
const APPEND: &str = r"
local mode = ARGV[1]
if mode == 'c' then
  local cur = redis.call('GET', KEYS[2])
  if not cur then
    redis.call('SET', KEYS[3], 1, 'PX', ARGV[3])
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  elseif cur ~= ARGV[2] then
    return 0
  end
elseif mode == 'o' then
  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
else
  if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
end
for i = 4, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
if mode == 'c' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// [`APPEND`] for many groups in one call (one Redis, not a Cluster: the keys span slots).
/// KEYS: log, lease, epoch per group; ARGV: ttl, then per group mode, owner, count, entries.
/// Replies one status per group, in order.
const APPEND_MANY: &str = r"
local ttl = ARGV[1]
local a = 2
local out = {}
for g = 0, (#KEYS / 3) - 1 do
  local log, lease, epoch = KEYS[3 * g + 1], KEYS[3 * g + 2], KEYS[3 * g + 3]
  local mode, owner, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local first = a + 3
  a = first + n
  local ok = 1
  if mode == 'c' then
    local cur = redis.call('GET', lease)
    if not cur then
      redis.call('SET', epoch, 1, 'PX', ttl)
      redis.call('SET', lease, owner, 'PX', ttl)
    elseif cur ~= owner then
      ok = 0
    end
  elseif mode == 'o' then
    if redis.call('GET', lease) ~= owner then ok = 0 end
  elseif redis.call('EXISTS', log) == 0 then
    ok = -1
  end
  if ok == 1 then
    for i = first, first + n - 1 do
      redis.call('XADD', log, '*', 'e', ARGV[i])
    end
    if mode == 'c' then redis.call('PEXPIRE', log, ttl) end
  end
  out[g + 1] = ok
end
return out
";

/// Takes the lease for `ARGV[1]` with the next epoch, if the log exists. Replies the epoch,
/// 0 when there is no log.
const TAKE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. e, 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return e
";

#[derive(Clone)]
pub(crate) struct RedisLog {
    conn: Conn,
    prefix: Arc<str>,
    keys: Option<Arc<KeyRing>>,
    append: Arc<Script>,
    append_many: Arc<Script>,
    take: Arc<Script>,
    take_from: Arc<Script>,
}

struct Keys {
    log: String,
    lease: String,
    epoch: String,
}

fn aad(session: &str) -> Aad<'_> {
    Aad {
        table: "kefu_log",
        row: session,
        field: "e",
    }
}

impl RedisLog {
    pub(super) async fn open(
        url: &str,
        settings: &DispatchSettings,
        keys: Option<Arc<KeyRing>>,
    ) -> Result<Self, JournalError> {
        let timeout = Duration::from_millis(settings.redis_timeout_ms);
        let conn = Conn::open(url, timeout)
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        Ok(Self {
            conn,
            prefix: settings.key_prefix.as_str().into(),
            keys,
            append: Arc::new(Script::new(APPEND)),
            append_many: Arc::new(Script::new(APPEND_MANY)),
            take: Arc::new(Script::new(TAKE)),
            take_from: Arc::new(Script::new(super::owners::TAKE_FROM)),
        })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub(super) async fn take_from_script(
        &self,
        session: &str,
        from: &str,
        me: &str,
    ) -> Result<Option<u64>, JournalError> {
        let keys = self.keys(session);
        let mut conn = self.conn.clone();
        let epoch: u64 = self
            .take_from
            .key(&keys.lease)
            .key(&keys.epoch)
            .key(&keys.log)
            .arg(me)
            .arg(from)
            .arg(LOG_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        Ok((epoch > 0).then_some(epoch))
    }

    fn keys(&self, session: &str) -> Keys {
        let tag = format!("{{{}:s:{session}}}", self.prefix);
        Keys {
            log: format!("{tag}:log"),
            lease: format!("{tag}:lease"),
            epoch: format!("{tag}:epoch"),
        }
    }

    /// Encrypts every group's entries on the blocking pool (when the store key is there).
    pub(super) async fn seal_groups<'a>(
        &self,
        order: &[&'a str],
        groups: &mut HashMap<&'a str, Vec<LogGroup>>,
    ) -> Result<(), JournalError> {
        let Some(ring) = self.keys.clone() else {
            for list in groups.values_mut() {
                for g in list {
                    for b in &mut g.bodies {
                        b.insert(0, 'p');
                    }
                }
            }
            return Ok(());
        };
        let work: Vec<(String, Vec<Vec<String>>)> = order
            .iter()
            .map(|s| {
                let bodies = groups
                    .get_mut(s)
                    .map(|list| {
                        list.iter_mut()
                            .map(|g| std::mem::take(&mut g.bodies))
                            .collect()
                    })
                    .unwrap_or_default();
                (s.to_string(), bodies)
            })
            .collect();
        let entries: usize = work.iter().flat_map(|(_, l)| l.iter().map(Vec::len)).sum();
        let seal = move || {
            work.into_iter()
                .map(|(session, lists)| {
                    let lists = lists
                        .into_iter()
                        .map(|bodies| {
                            bodies
                                .into_iter()
                                .map(|b| {
                                    ring.encrypt_field(&b, aad(&session))
                                        .map(|s| format!("x{s}"))
                                })
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .collect::<Result<Vec<_>, _>>();
                    lists.map(|l| (session, l))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        // AES-GCM of a few small entries takes microseconds: a trip to the blocking pool per
        // commit cost more (a thread hand-off each time, and at a peak a crowd of pool threads
        // competing with the runtime for two cores). Large commits still go to the pool.
        let sealed = if entries <= INLINE_SEAL {
            seal()
        } else {
            tokio::task::spawn_blocking(seal)
                .await
                .map_err(|_| JournalError::Unavailable("blocking pool closed".into()))?
        }
        .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        for (session, lists) in sealed {
            if let Some(list) = groups.get_mut(session.as_str()) {
                for (g, bodies) in list.iter_mut().zip(lists) {
                    g.bodies = bodies;
                }
            }
        }
        Ok(())
    }

    fn open_body(&self, session: &str, stored: &str) -> Option<String> {
        if let Some(plain) = stored.strip_prefix('p') {
            return Some(plain.to_string());
        }
        let sealed = stored.strip_prefix('x')?;
        self.keys.as_ref()?.decrypt_field(sealed, aad(session)).ok()
    }

    /// Appends one group, retrying Redis errors (a restart, a failover) until it answers.
    pub(super) async fn append_with_retry(
        &self,
        session: &str,
        node: &str,
        fence: Fence,
        bodies: &[String],
    ) -> Result<(), JournalError> {
        let keys = self.keys(session);
        let (mode, owner) = match fence {
            Fence::Create => ("c", format!("{node}:1")),
            Fence::Owner(epoch) => ("o", format!("{node}:{epoch}")),
            Fence::Input => ("i", String::new()),
        };
        let mut delay = Duration::from_millis(20);
        loop {
            let mut invocation = self.append.key(&keys.log);
            invocation
                .key(&keys.lease)
                .key(&keys.epoch)
                .arg(mode)
                .arg(&owner)
                .arg(LOG_TTL.as_millis() as u64);
            for b in bodies {
                invocation.arg(b);
            }
            let mut conn = self.conn.clone();
            match invocation.invoke_async::<i64>(&mut conn).await {
                Ok(1) => return Ok(()),
                Ok(0) => {
                    metrics::counter!(metric::JOURNAL_FENCED_TOTAL).increment(1);
                    return Err(JournalError::Fenced);
                }
                Ok(_) => return Err(JournalError::NoLog),
                Err(err) => {
                    metrics::counter!(metric::JOURNAL_ERRORS_TOTAL).increment(1);
                    tracing::warn!(%err, "conversation log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Whether one script may touch every session's keys (one Redis, not a Cluster).
    pub(super) fn is_single(&self) -> bool {
        matches!(self.conn, Conn::Single(_))
    }

    /// Appends many groups in one script call (see [`APPEND_MANY`]), retrying Redis errors.
    /// On one Redis this costs one call per commit instead of one per session: the per-call
    /// overhead of a script, not the appends, was most of Redis's time at a sale-day peak.
    pub(super) async fn append_many_with_retry(
        &self,
        node: &str,
        groups: &[(&str, Fence, &[String])],
    ) -> Vec<Result<(), JournalError>> {
        let mut delay = Duration::from_millis(20);
        loop {
            let mut invocation = self.append_many.prepare_invoke();
            invocation.arg(LOG_TTL.as_millis() as u64);
            for (session, fence, bodies) in groups {
                let keys = self.keys(session);
                let (mode, owner) = match fence {
                    Fence::Create => ("c", format!("{node}:1")),
                    Fence::Owner(epoch) => ("o", format!("{node}:{epoch}")),
                    Fence::Input => ("i", String::new()),
                };
                invocation
                    .key(&keys.log)
                    .key(&keys.lease)
                    .key(&keys.epoch)
                    .arg(mode)
                    .arg(owner)
                    .arg(bodies.len());
                for b in bodies.iter() {
                    invocation.arg(b);
                }
            }
            let mut conn = self.conn.clone();
            match invocation.invoke_async::<Vec<i64>>(&mut conn).await {
                Ok(answers) if answers.len() == groups.len() => {
                    return answers
                        .into_iter()
                        .map(|a| match a {
                            1 => Ok(()),
                            0 => {
                                metrics::counter!(metric::JOURNAL_FENCED_TOTAL).increment(1);
                                Err(JournalError::Fenced)
                            }
                            _ => Err(JournalError::NoLog),
                        })
                        .collect();
                }
                Ok(_) => {
                    tracing::error!("conversation log script answered the wrong count");
                    return groups
                        .iter()
                        .map(|_| Err(JournalError::Unavailable("bad answer".into())))
                        .collect();
                }
                Err(err) => {
                    metrics::counter!(metric::JOURNAL_ERRORS_TOTAL).increment(1);
                    tracing::warn!(%err, "conversation log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// The entries after `after` (all of them without), opened, and the last stream id.
    pub(super) async fn load(
        &self,
        session: &str,
        after: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), JournalError> {
        let keys = self.keys(session);
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn
            .xrange(&keys.log, start, "+")
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        let mut bodies = Vec::with_capacity(reply.ids.len());
        let mut last = None;
        let mut unreadable = 0usize;
        for id in reply.ids {
            let stored: Option<String> = id.get("e");
            match stored.as_deref().and_then(|s| self.open_body(session, s)) {
                Some(body) => bodies.push(body),
                None => unreadable += 1,
            }
            last = Some(id.id);
        }
        if unreadable > 0 {
            metrics::counter!(metric::JOURNAL_BAD_ENTRIES_TOTAL).increment(unreadable as u64);
            tracing::error!(
                unreadable,
                "log entries that cannot be opened (key?) were skipped"
            );
        }
        Ok((bodies, last))
    }

    pub(super) async fn take_lease(
        &self,
        session: &str,
        node: &str,
    ) -> Result<Option<u64>, JournalError> {
        let keys = self.keys(session);
        let mut conn = self.conn.clone();
        let epoch: u64 = self
            .take
            .key(&keys.lease)
            .key(&keys.epoch)
            .key(&keys.log)
            .arg(node)
            .arg(LOG_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        Ok((epoch > 0).then_some(epoch))
    }

    pub(super) async fn owner(&self, session: &str) -> Option<String> {
        let keys = self.keys(session);
        let mut conn = self.conn.clone();
        let lease: Option<String> = conn.get(&keys.lease).await.ok()?;
        let lease = lease?;
        let (node, _epoch) = lease.rsplit_once(':')?;
        Some(node.to_string())
    }

    pub(super) async fn delete(&self, session: &str) -> Result<(), JournalError> {
        let keys = self.keys(session);
        let mut conn = self.conn.clone();
        // One command: the keys share the session's hash tag, so one slot on a Cluster too.
        let _: () = conn
            .del(&[&keys.log, &keys.lease, &keys.epoch])
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        Ok(())
    }
}
