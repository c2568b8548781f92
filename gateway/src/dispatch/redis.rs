//! The Redis backend: the same state as [`super::MemoryDispatcher`], shared by several nodes.
//!
//! # Key layout
//!
//! Every key starts with the hash tag `{<key_prefix>}` (written `{p}` below), so on Redis
//! Cluster all of them live in one slot and one Lua script can touch any of them atomically.
//! Assignment is a decision across agents, groups and queues (an agent in two groups frees a
//! slot: which queue head gets it?), so splitting the state over slots would cost atomicity; one
//! shard runs these scripts at tens of thousands per second, far above customer arrival rates.
//! Deployments that need more split by tenant, each with its own prefix.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p}:seq` | string | INCR counter: arrival order of tickets, idle order of agents |
//! | `{p}:agents` | set | connected agent ids |
//! | `{p}:agent:<id>` | hash | `groups` (JSON array), `roster`, `cap`, `status`, `node`, `idle` (seq) |
//! | `{p}:chats:<id>` | set | sessions assigned to the agent (load = SCARD) |
//! | `{p}:group:<g>` | set | agents of group `g` (roster) |
//! | `{p}:groups` | set | every group seen |
//! | `{p}:q:<g>` | zset | queued sessions of `g`, score = `queue_score` (priority, arrival) |
//! | `{p}:t:<session>` | hash | ticket: `group`, `prio`, `node`, `enq`, `seq`, `qat`, `state` (`q`/`a`), `agent`, `waited` |
//! | `{p}:node:<n>` | string, PX ttl | liveness of node `n` |
//! | `{p}:nodes` | zset | node → liveness expiry (ms), to count the grace period |
//! | `{p}:node_agents:<n>` | set | agents connected through node `n` |
//! | `{p}:disc` | zset | disconnected agent → when (ms) |
//!
//! # Scripts
//!
//! `scripts/common.lua` (helpers: `pick_agent`, `assign`, `drain`, `to_front`, `remove_agent`)
//! is prepended to each of `agent.lua` (online/ready/away/disconnected/offline), `enqueue.lua`,
//! `release.lua` (release/cancel), `transfer.lua`, `nodes.lua` (heartbeat/reap) and `view.lua`
//! (position/snapshot). Every mutation is one script: Redis runs scripts one at a time, so
//! "check capacity, then assign" cannot interleave between nodes, and idempotence checks
//! (`EXISTS {p}:t:<session>`) happen in the same atomic step. Time comes from Redis `TIME`, so
//! node clocks do not matter. Mutating scripts reply `[status, result, assignments, tickets]`.

mod conn;
pub(crate) use conn::{manager, Conn};
mod reply;

use std::sync::Arc;

use ::redis::Script;
use async_trait::async_trait;

use self::reply::{parse_enqueued, RawReply, Reply};
use super::{
    check_id, AgentSpec, Assignment, Capacity, DispatchError, Dispatcher, Enqueued, Offered,
    Requeued, Snapshot, Ticket, TransferTarget, Transferred,
};

const COMMON: &str = include_str!("scripts/common.lua");

struct Scripts {
    agent: Script,
    enqueue: Script,
    prefer: Script,
    release: Script,
    transfer: Script,
    nodes: Script,
    view: Script,
}

impl Scripts {
    fn load() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            agent: with_common(include_str!("scripts/agent.lua")),
            enqueue: with_common(include_str!("scripts/enqueue.lua")),
            prefer: with_common(include_str!("scripts/prefer.lua")),
            release: with_common(include_str!("scripts/release.lua")),
            transfer: with_common(include_str!("scripts/transfer.lua")),
            nodes: with_common(include_str!("scripts/nodes.lua")),
            view: with_common(include_str!("scripts/view.lua")),
        }
    }
}

/// Shared-state [`Dispatcher`] on Redis (single server or Cluster).
#[derive(Clone)]
pub struct RedisDispatcher {
    conn: Conn,
    /// `{<key_prefix>}`: KEYS[1] of every script.
    base: String,
    scripts: Arc<Scripts>,
}

impl RedisDispatcher {
    /// Connects to `url` (`redis://…`; several comma-separated URLs select Redis Cluster).
    /// The connection reconnects by itself; operations during an outage fail with
    /// [`DispatchError::Redis`].
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, DispatchError> {
        Self::connect_with_timeout(url, key_prefix, conn::DEFAULT_TIMEOUT).await
    }

    /// [`connect`](Self::connect), with commands failing after `timeout`.
    pub async fn connect_with_timeout(
        url: &str,
        key_prefix: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, DispatchError> {
        if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
            return Err(DispatchError::Config(format!(
                "key prefix must be non-empty without braces, got {key_prefix:?}"
            )));
        }
        Ok(Self {
            conn: Conn::open(url, timeout).await?,
            base: format!("{{{key_prefix}}}"),
            scripts: Arc::new(Scripts::load()),
        })
    }

    async fn call<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        args: &[&str],
    ) -> Result<T, DispatchError> {
        let mut inv = script.key(&self.base);
        for a in args {
            inv.arg(*a);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Runs `script` (enqueue, or the offer to `agent`) for `ticket`: the session, group,
    /// priority, node and time, then the agent if there is one.
    async fn place(
        &self,
        script: &Script,
        ticket: &Ticket,
        agent: Option<&str>,
    ) -> Result<Reply, DispatchError> {
        check_id("session", &ticket.session)?;
        check_id("group", &ticket.group)?;
        let (prio, at) = (
            ticket.priority.to_string(),
            ticket.enqueued_at_ms.to_string(),
        );
        let mut args = vec![
            ticket.session.as_str(),
            &ticket.group,
            &prio,
            &ticket.node,
            &at,
        ];
        args.extend(agent);
        self.mutate(script, &args, agent.unwrap_or(""), &ticket.session)
            .await
    }

    /// Runs a mutating script and maps its status; `agent`/`session` name the error.
    async fn mutate(
        &self,
        script: &Script,
        args: &[&str],
        agent: &str,
        session: &str,
    ) -> Result<Reply, DispatchError> {
        let raw: RawReply = self.call(script, args).await?;
        Reply::decode(raw)?.check(agent, session)
    }
}

#[async_trait]
impl Dispatcher for RedisDispatcher {
    async fn agent_online(&self, spec: &AgentSpec, node: &str) -> Result<(), DispatchError> {
        check_id("agent", &spec.id)?;
        check_id("node", node)?;
        let groups = serde_json::to_string(&spec.groups)
            .map_err(|e| DispatchError::Invalid(format!("groups: {e}")))?;
        let cap = spec.capacity.to_string();
        let args = ["online", spec.id.as_str(), node, &groups, &cap];
        self.mutate(&self.scripts.agent, &args, &spec.id, "")
            .await
            .map(drop)
    }

    async fn agent_ready(
        &self,
        agent: &str,
        capacity: Option<u32>,
    ) -> Result<Vec<Assignment>, DispatchError> {
        let cap = capacity.map(|c| c.to_string()).unwrap_or_default();
        let r = self
            .mutate(&self.scripts.agent, &["ready", agent, &cap], agent, "")
            .await?;
        Ok(r.assignments)
    }

    async fn agent_away(&self, agent: &str) -> Result<(), DispatchError> {
        let args = ["away", agent];
        self.mutate(&self.scripts.agent, &args, agent, "")
            .await
            .map(drop)
    }

    async fn agent_disconnected(&self, agent: &str) -> Result<(), DispatchError> {
        let args = ["disconnected", agent];
        self.mutate(&self.scripts.agent, &args, agent, "")
            .await
            .map(drop)
    }

    async fn agent_offline(&self, agent: &str) -> Result<Requeued, DispatchError> {
        let args = ["offline", agent];
        Ok(self
            .mutate(&self.scripts.agent, &args, agent, "")
            .await?
            .requeued())
    }

    async fn enqueue(&self, ticket: Ticket) -> Result<Enqueued, DispatchError> {
        let r = self.place(&self.scripts.enqueue, &ticket, None).await?;
        parse_enqueued(&r.result)
    }

    async fn offer(&self, ticket: Ticket, agent: &str) -> Result<Offered, DispatchError> {
        check_id("agent", agent)?;
        let r = self
            .place(&self.scripts.prefer, &ticket, Some(agent))
            .await?;
        reply::parse_offered(&r.result)
    }

    async fn release(&self, agent: &str, session: &str) -> Result<Vec<Assignment>, DispatchError> {
        let args = ["release", session, agent];
        let r = self
            .mutate(&self.scripts.release, &args, agent, session)
            .await?;
        Ok(r.assignments)
    }

    async fn transfer(
        &self,
        session: &str,
        to: TransferTarget,
    ) -> Result<Transferred, DispatchError> {
        let (kind, target) = match &to {
            TransferTarget::Group(g) => {
                check_id("group", g)?;
                ("group", g.as_str())
            }
            TransferTarget::Agent(a) => ("agent", a.as_str()),
        };
        let args = [session, kind, target];
        let r = self
            .mutate(&self.scripts.transfer, &args, target, session)
            .await?;
        Ok(Transferred {
            session: parse_enqueued(&r.result)?,
            assignments: r.assignments,
        })
    }

    async fn cancel(&self, session: &str) -> Result<Vec<Assignment>, DispatchError> {
        let args = ["cancel", session];
        let r = self
            .mutate(&self.scripts.release, &args, "", session)
            .await?;
        Ok(r.assignments)
    }

    async fn position(&self, session: &str) -> Result<Option<(String, usize)>, DispatchError> {
        let raw: Vec<String> = self
            .call(&self.scripts.view, &["position", session])
            .await?;
        reply::parse_position(&raw)
    }

    async fn positions(&self, group: &str) -> Result<Vec<(String, usize)>, DispatchError> {
        // One key: a plain command is atomic and routed to the right Cluster node by itself.
        let key = format!("{}:q:{group}", self.base);
        let sessions: Vec<String> = ::redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(sessions.into_iter().zip(1..).collect())
    }

    async fn heartbeat(&self, node: &str, ttl_ms: u64) -> Result<(), DispatchError> {
        check_id("node", node)?;
        if ttl_ms == 0 {
            return Err(DispatchError::Invalid(
                "heartbeat ttl must be > 0".to_owned(),
            ));
        }
        let ttl = ttl_ms.to_string();
        let args = ["heartbeat", node, &ttl];
        self.mutate(&self.scripts.nodes, &args, "", "")
            .await
            .map(drop)
    }

    async fn reap(&self, grace_ms: u64) -> Result<Requeued, DispatchError> {
        let grace = grace_ms.to_string();
        let r = self
            .mutate(&self.scripts.nodes, &["reap", &grace], "", "")
            .await?;
        Ok(r.requeued())
    }

    async fn agent_chats(
        &self,
        agent: &str,
    ) -> Result<(Vec<String>, Option<String>), DispatchError> {
        // Two reads of one agent's keys: the snapshot script walks every agent and queue,
        // and at a peak that blocked Redis for everyone.
        let mut conn = self.conn.clone();
        let mut sessions: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(format!("{}:chats:{agent}", self.base))
            .query_async(&mut conn)
            .await?;
        sessions.sort();
        let node: Option<String> = ::redis::cmd("HGET")
            .arg(format!("{}:agent:{agent}", self.base))
            .arg("node")
            .query_async(&mut conn)
            .await?;
        Ok((sessions, node))
    }

    async fn snapshot(&self) -> Result<Snapshot, DispatchError> {
        let raw: (Vec<String>, Vec<Vec<String>>) =
            self.call(&self.scripts.view, &["snapshot"]).await?;
        reply::parse_snapshot(raw)
    }

    /// Without the agents' chat lists: the whole snapshot blocked Redis for ~4 ms (200 agents,
    /// a thousand chats) on every node every second at a sale-day peak, and every log append
    /// and relay waited behind it.
    async fn capacity(&self) -> Result<Capacity, DispatchError> {
        let raw: (Vec<String>, Vec<String>) = self.call(&self.scripts.view, &["capacity"]).await?;
        reply::parse_capacity(raw)
    }
}
