//! Which node owns which sessions, so that the sessions of a node that died are taken over
//! by another (and end, and reach the store, there) even if their customers never come back.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p:j}:nodes` | set | nodes that have owned sessions |
//! | `{p:j}:alive:<node>` | string, PX | the node is alive (refreshed every few seconds) |
//! | `{p:j}:owned:<node>` | set | sessions the node took (an index: the lease decides) |

use std::time::Duration;

use redis::AsyncCommands;

use super::redis_log::RedisLog;
use super::JournalError;

/// How long a node counts as alive after its last refresh.
pub const ALIVE_FOR: Duration = Duration::from_secs(10);

impl RedisLog {
    fn owners_key(&self, what: &str) -> String {
        format!("{{{}:j}}:{what}", self.prefix())
    }

    /// Notes that `node` owns `sessions` now (one command).
    pub(super) async fn note_owners<S: redis::ToRedisArgs + Send + Sync>(
        &self,
        node: &str,
        sessions: &[S],
    ) {
        let mut conn = self.conn();
        let key = self.owners_key(&format!("owned:{node}"));
        let _: Result<(), _> = conn.sadd(key, sessions).await;
    }

    /// `session` ended here: no longer in `node`'s index.
    pub(super) async fn drop_owner(&self, node: &str, session: &str) {
        let mut conn = self.conn();
        let key = self.owners_key(&format!("owned:{node}"));
        let _: Result<(), _> = conn.srem(key, session).await;
    }

    /// This node is alive for [`ALIVE_FOR`] more.
    pub(super) async fn refresh_alive(&self, node: &str) -> Result<(), JournalError> {
        let mut conn = self.conn();
        let alive = self.owners_key(&format!("alive:{node}"));
        let nodes = self.owners_key("nodes");
        let _: () = conn
            .set_ex::<_, _, ()>(&alive, 1, ALIVE_FOR.as_secs())
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        let _: () = conn
            .sadd(&nodes, node)
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Nodes other than `me` that owned sessions and are no longer alive.
    pub(super) async fn dead_nodes(&self, me: &str) -> Vec<String> {
        let mut conn = self.conn();
        let nodes: Vec<String> = conn
            .smembers(self.owners_key("nodes"))
            .await
            .unwrap_or_default();
        let mut dead = Vec::new();
        for node in nodes.into_iter().filter(|n| n != me) {
            let alive: bool = conn
                .exists(self.owners_key(&format!("alive:{node}")))
                .await
                .unwrap_or(true);
            if !alive {
                dead.push(node);
            }
        }
        dead
    }

    /// Up to `count` sessions of `node`'s index; forgets the node once its index is empty.
    pub(super) async fn sessions_of(
        &self,
        node: &str,
        count: usize,
        forget_if_empty: bool,
    ) -> Vec<String> {
        let mut conn = self.conn();
        let key = self.owners_key(&format!("owned:{node}"));
        let sessions: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(&key)
            .arg(count)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if sessions.is_empty() && forget_if_empty {
            let _: Result<(), _> = conn.srem(self.owners_key("nodes"), node).await;
        }
        sessions
    }

    /// Takes `session` from dead `from` (see `RedisLog::take_lease_from`); moves it in the index.
    pub(super) async fn take_from(
        &self,
        session: &str,
        from: &str,
        me: &str,
    ) -> Result<Option<u64>, JournalError> {
        let epoch = self.take_lease_from(session, me, Some(from)).await?;
        self.drop_owner(from, session).await;
        if epoch.is_some() {
            self.note_owners(me, &[session]).await;
        }
        Ok(epoch)
    }
}
