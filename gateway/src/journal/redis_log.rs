//! The log on Redis: per session a stream and its lease, under one hash tag
//! (`{<prefix>:s:<id>}`), so that a session's keys share a slot and a Redis Cluster spreads
//! sessions over its shards.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p:s:<id>}:log` | stream | entries, field `e`: `x` + sealed JSON (store key) or `p` + JSON |
//! | `{p:s:<id>}:lease` | string | `node:epoch` of the owner |
//! | `{p:s:<id>}:epoch` | string | the last epoch handed out by a takeover (INCR) |
//!
//! **Fencing lives in the stream's ids.** An owner at epoch `E` appends with the id
//! `<EPOCH_BASE + E>-*` (Redis numbers the entries within the epoch), and taking the lease
//! moves the stream's last id up to `<EPOCH_BASE + E'>-0` for the new epoch `E'` (`XSETID`, in
//! the same script that hands out `E'`). From then on Redis itself refuses every `XADD` of an
//! older epoch ("equal or smaller than the target stream top item"): the check is part of the
//! append, atomic with it, and an append is a plain `XADD` in a pipeline rather than a script
//! that reads the lease first. A script call per commit was most of Redis's time at a sale-day
//! peak. An input from another node (an agent's message) appends with `*`, which Redis numbers
//! after the top whatever the epoch is, and `NOMKSTREAM`, so it needs the log to exist.
//! `EPOCH_BASE` (2^43 ms, the year 2248) keeps every epoch's ids above time-based ones.
//!
//! A commit's groups go out as one `MULTI`/`EXEC` per call (on one Redis: many sessions per
//! call; on a Cluster: one session, i.e. one slot, per call), so a call lands whole or not at
//! all and a retried call cannot leave half a group behind.
//!
//! The log expires `LOG_TTL` after the session began (lease and epoch after its last
//! takeover): an abandoned log does not outlive the trade's needs (its record is in the store
//! by then).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::writer::LogGroup;
use super::JournalError;
use crate::dispatch::redis::Conn;
use crate::dispatch::DispatchSettings;
use crate::store::crypto::Aad;
use crate::store::KeyRing;
use crate::telemetry::metric;

/// Entries sealed on the runtime thread at most per commit (see `seal_groups`).
const INLINE_SEAL: usize = 64;

/// How long a log outlives its beginning (a lease, its last takeover).
pub(super) const LOG_TTL: Duration = Duration::from_secs(24 * 3600);

/// The millisecond part of epoch 0's stream ids: above any time-based id until the year 2248,
/// and exact in Lua's doubles for any epoch Redis can count.
pub(super) const EPOCH_BASE: u64 = 1 << 43;

/// Takes the lease for `ARGV[1]` with the next epoch, if the log exists, and moves the log's
/// last id to that epoch's first so that older epochs can no longer append. With `ARGV[4]`
/// (a dead node), only if that node or nobody holds the lease. Replies the epoch, 0 when the
/// session is not up for taking.
const TAKE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if ARGV[4] then
  local cur = redis.call('GET', KEYS[1])
  if cur and string.sub(cur, 1, string.len(ARGV[4]) + 1) ~= ARGV[4] .. ':' then return 0 end
end
local e = redis.call('INCR', KEYS[2])
local base = tonumber(ARGV[3])
local info = redis.call('XINFO', 'STREAM', KEYS[3])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    local ms = tonumber(string.match(info[i + 1], '^(%d+)-'))
    if ms and ms >= base + e then
      e = ms - base + 1
      redis.call('SET', KEYS[2], e)
    end
  end
end
redis.call('XSETID', KEYS[3], string.format('%d-0', base + e))
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. e, 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return e
";

#[derive(Clone)]
pub(crate) struct RedisLog {
    conn: Conn,
    prefix: Arc<str>,
    keys: Option<Arc<KeyRing>>,
    take: Arc<Script>,
}

pub(super) struct Keys {
    pub(super) log: String,
    pub(super) lease: String,
    pub(super) epoch: String,
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
            take: Arc::new(Script::new(TAKE)),
        })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Takes the lease for `me` (see [`TAKE`]); with `from`, only from that (dead) node or
    /// from nobody. `None` when the session is not up for taking.
    pub(super) async fn take_lease_from(
        &self,
        session: &str,
        me: &str,
        from: Option<&str>,
    ) -> Result<Option<u64>, JournalError> {
        let keys = self.keys(session);
        let mut invocation = self.take.key(&keys.lease);
        invocation
            .key(&keys.epoch)
            .key(&keys.log)
            .arg(me)
            .arg(LOG_TTL.as_millis() as u64)
            .arg(EPOCH_BASE);
        if let Some(from) = from {
            invocation.arg(from);
        }
        let mut conn = self.conn.clone();
        let epoch: u64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        Ok((epoch > 0).then_some(epoch))
    }

    pub(super) fn keys(&self, session: &str) -> Keys {
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

    /// Whether one call may carry many sessions' groups (one Redis, not a Cluster, where a
    /// call must stay within one slot, i.e. one session).
    pub(super) fn is_single(&self) -> bool {
        matches!(self.conn, Conn::Single(_))
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
        self.take_lease_from(session, node, None).await
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
