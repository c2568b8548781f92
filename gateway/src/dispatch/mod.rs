//! Routing of waiting customers to human agents: the state and the decisions, not the sockets.
//!
//! The session layer tells a [`Dispatcher`] what happens (an agent connects, becomes ready, a
//! customer asks for a person, a chat ends) and gets back what it must announce (assignments,
//! requeued chats, queue positions). Two backends implement the same contract:
//!
//! * [`MemoryDispatcher`]: one `Mutex`-protected state, the embedded default for a single node.
//! * [`RedisDispatcher`]: the same state in Redis, every mutation one Lua script, so several
//!   gateway nodes can share it. See [`redis`](self::redis) for the key layout.
//!
//! The behaviour tests in `gateway/tests/dispatch.rs` run unchanged against both.
//!
//! # Rules
//!
//! * **Assignment.** Among the `ready` agents of the ticket's group whose load is below their
//!   capacity, the least loaded by `load / capacity` wins (compared exactly, by
//!   cross-multiplication); ties go to the agent idle longest, i.e. whose last assignment (or the
//!   moment it became ready, if it has had none since) is oldest; remaining ties by agent id.
//!   "Oldest" is measured with a dispatcher-wide sequence number, not a clock, so two events in the
//!   same millisecond (or on two nodes with skewed clocks) still have a strict order.
//! * **Queue order.** Higher priority first (complaint levels 1..=3 above 0, anything up to 15 is
//!   accepted), then arrival (the same sequence number). A chat that comes *back* into a queue
//!   (its agent went offline, its node died, it was transferred to a group) goes in front of every
//!   fresh arrival of its priority, ordered among such returns by original arrival: these customers
//!   have already been waiting and talking, they must not start over at the back.
//! * **Invariant.** After every operation, no group has a queued ticket while one of its `ready`
//!   agents has a free slot. Every operation that frees or adds capacity (ready, release, cancel,
//!   transfer away, requeue) drains the affected queues before returning; that is why they return
//!   the assignments they made, and why [`Dispatcher::enqueue`] may assign directly without looking
//!   at the queue (it is necessarily empty when an agent is free).
//! * **Idempotence.** Enqueuing a session that is already queued or assigned returns its current
//!   state (and records the customer's current node); releasing or cancelling an unknown session
//!   is a no-op; taking offline an unknown agent is a no-op. Retries after a timeout are safe.
//! * **Disconnects.** An agent whose socket drops is marked [`Dispatcher::agent_disconnected`]: it
//!   keeps its chats but gets no new ones. If it comes back ([`Dispatcher::agent_online`], on any
//!   node) within the grace period it keeps everything; otherwise the periodic
//!   [`Dispatcher::reap`] (run by every node, whoever comes first wins, atomically) sends its chats
//!   back to the front of their queues. The same call requeues the chats of agents attached to a
//!   node whose liveness key ([`Dispatcher::heartbeat`]) expired more than the grace period ago.
//!   Deciding this in the shared state rather than with a per-node timer means a reconnect on
//!   another node can never race with a stale timer, and a dead node's timers are not needed.
//!   [`Dispatcher::agent_offline`] is the immediate variant, for an explicit sign-out.
//! * **Transfers.** To a group: the chat leaves its agent and joins the front of the new group's
//!   queue (assigned at once if someone is free). To an agent: only if that agent is `ready` with a
//!   free slot, otherwise [`DispatchError::AgentUnavailable`] and nothing changes. The history is
//!   the session layer's; the dispatcher only moves the routing state.
//!
//! Queue positions change whenever a head is assigned or someone cancels; the session layer can
//! call [`Dispatcher::positions`] for the groups named in the returned assignments/tickets and
//! send the new positions (an estimated wait is `position × average handling time / agents`).

mod memory;
pub mod redis;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::MemoryDispatcher;
pub(crate) use redis::manager as redis_manager;
pub use redis::RedisDispatcher;
pub use settings::{connect, Backend, DispatchSettings};

/// Highest priority that is ranked separately; larger values are treated as this one.
pub const MAX_PRIORITY: u8 = 15;

/// A customer waiting for (or served by) a human agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The customer session id; at most one ticket per session exists.
    pub session: String,
    /// The skill group whose queue the ticket is in (or was routed through).
    pub group: String,
    /// 0 for a normal request; complaint levels 1..=3 rank higher.
    pub priority: u8,
    /// The gateway node holding the customer's socket.
    pub node: String,
    /// When the customer asked for a person (ms since the Unix epoch); 0 means "now".
    pub enqueued_at_ms: u64,
}

/// A customer handed to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub session: String,
    pub agent: String,
    pub group: String,
    /// Node of the customer's socket (where to send `agent_joined`).
    pub customer_node: String,
    /// Node of the agent's socket (where to send `assigned`).
    pub agent_node: String,
    /// Time spent in the queue this time round.
    pub waited_ms: u64,
}

/// The outcome of [`Dispatcher::enqueue`] for the session itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Assigned(Assignment),
    /// Waiting; `position` is 1-based within the group's queue.
    Queued {
        group: String,
        position: usize,
    },
}

/// The outcome of [`Dispatcher::offer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offered {
    /// The preferred agent has the chat now.
    Assigned(Assignment),
    /// The session was known already (queued or assigned): where it is; nothing changed.
    Known(Enqueued),
    /// The agent is ready but at capacity; nothing changed.
    Busy,
    /// The agent is not ready (or not of the group); nothing changed.
    Unavailable,
}

/// The outcome of [`Dispatcher::transfer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transferred {
    /// Where the transferred session is now.
    pub session: Enqueued,
    /// Other sessions assigned because the previous agent's slot was freed.
    pub assignments: Vec<Assignment>,
}

/// Chats sent back to their queues, and what the following drain assigned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requeued {
    /// The requeued tickets, in queue order; tell these customers their agent left.
    pub tickets: Vec<Ticket>,
    /// Assignments made right after (possibly of some of `tickets`, to another agent).
    pub assignments: Vec<Assignment>,
}

/// Roster entry of an agent, given when it connects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub id: String,
    pub groups: Vec<String>,
    /// Maximum concurrent chats; `ready` may lower it, never raise it.
    pub capacity: u32,
}

/// Where a chat is transferred to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    Group(String),
    Agent(String),
}

/// Availability of a connected agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Connected, not taking new chats (the state right after connecting).
    Away,
    /// Taking new chats up to its capacity.
    Ready,
    /// Socket gone, within the grace period: keeps its chats, gets no new ones.
    Disconnected,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Away => "away",
            AgentStatus::Ready => "ready",
            AgentStatus::Disconnected => "disconnected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "away" => Some(AgentStatus::Away),
            "ready" => Some(AgentStatus::Ready),
            "disconnected" => Some(AgentStatus::Disconnected),
            _ => None,
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One agent in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: String,
    pub groups: Vec<String>,
    pub status: AgentStatus,
    pub node: String,
    /// Current chats (`sessions.len()`).
    pub load: u32,
    /// Effective capacity (the roster's, possibly lowered by `ready`).
    pub capacity: u32,
    pub roster_capacity: u32,
    /// Sessions assigned to the agent, sorted.
    pub sessions: Vec<String>,
}

/// The whole routing state, for the supervisor view, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Queue length of every group seen so far (roster or tickets).
    pub queues: BTreeMap<String, usize>,
    /// Connected agents, sorted by id.
    pub agents: Vec<AgentView>,
}

/// What the once-a-second estimate of waits needs: queue lengths, and per group the summed
/// capacity of its ready agents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Queue length of every group seen so far, as in [`Snapshot::queues`].
    pub queues: BTreeMap<String, usize>,
    /// Group -> capacity of the group's ready agents (groups without one are absent).
    pub ready: HashMap<String, u32>,
}

impl Capacity {
    /// The capacity a snapshot shows.
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut ready: HashMap<String, u32> = HashMap::new();
        for agent in snapshot
            .agents
            .iter()
            .filter(|a| a.status == AgentStatus::Ready)
        {
            for group in &agent.groups {
                let sum = ready.entry(group.clone()).or_insert(0);
                *sum = sum.saturating_add(agent.capacity);
            }
        }
        Self {
            queues: snapshot.queues.clone(),
            ready,
        }
    }
}

/// Why a dispatch operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    #[error("unknown session {0:?}")]
    UnknownSession(String),
    #[error("session {session:?} is not assigned to agent {agent:?}")]
    NotAssigned { session: String, agent: String },
    #[error("agent {0:?} is not ready or has no free slot")]
    AgentUnavailable(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("invalid dispatch settings: {0}")]
    Config(String),
    #[error("unexpected reply from the dispatch store: {0}")]
    Protocol(String),
}

/// The routing core. Object safe: the gateway holds an `Arc<dyn Dispatcher>`.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// An agent connected on `node`: it is `away` until it says `ready`. A known agent (a
    /// reconnect within the grace period, possibly on another node) keeps its chats; its roster
    /// entry (groups, capacity) is replaced.
    async fn agent_online(&self, spec: &AgentSpec, node: &str) -> Result<(), DispatchError>;
    /// The agent takes chats, up to `capacity` if given and lower than the roster's (otherwise
    /// the roster's). Drains the queues of its groups into its free slots at once.
    async fn agent_ready(
        &self,
        agent: &str,
        capacity: Option<u32>,
    ) -> Result<Vec<Assignment>, DispatchError>;
    /// Keeps its chats, gets no new ones.
    async fn agent_away(&self, agent: &str) -> Result<(), DispatchError>;
    /// The agent's socket dropped: like away, and [`Dispatcher::reap`] requeues its chats once
    /// the grace period has passed without an [`Dispatcher::agent_online`].
    async fn agent_disconnected(&self, agent: &str) -> Result<(), DispatchError>;
    /// The agent leaves now (sign-out): its chats go back to the front of their queues, the
    /// agent is forgotten, and the queues are drained into other agents. Unknown agent: no-op.
    async fn agent_offline(&self, agent: &str) -> Result<Requeued, DispatchError>;
    /// A customer asks for a person: assigned at once if an agent is free, else queued.
    /// Idempotent per session.
    async fn enqueue(&self, ticket: Ticket) -> Result<Enqueued, DispatchError>;
    /// A returning customer offered to their last agent first (issue #17): assigned to
    /// `agent` if it is a `ready` member of the ticket's group with a free slot, in one atomic
    /// step (never over capacity); otherwise nothing changes, and the caller may wait for a
    /// slot ([`Offered::Busy`]) or [`Dispatcher::enqueue`] as usual.
    async fn offer(&self, ticket: Ticket, agent: &str) -> Result<Offered, DispatchError>;
    /// The chat ended (closed by either side): frees the agent's slot and assigns queue heads.
    /// Unknown session: no-op; a session not assigned to `agent`: [`DispatchError::NotAssigned`].
    async fn release(&self, agent: &str, session: &str) -> Result<Vec<Assignment>, DispatchError>;
    /// Moves a queued or assigned chat to another group or agent; see the module docs.
    async fn transfer(
        &self,
        session: &str,
        to: TransferTarget,
    ) -> Result<Transferred, DispatchError>;
    /// The customer left: removes the session wherever it is (a queued ticket, or an assigned
    /// chat, whose slot is then freed and refilled). Unknown session: no-op.
    async fn cancel(&self, session: &str) -> Result<Vec<Assignment>, DispatchError>;
    /// Group and 1-based position of a queued session; `None` if assigned or unknown.
    async fn position(&self, session: &str) -> Result<Option<(String, usize)>, DispatchError>;
    /// Every queued session of `group` with its 1-based position, in queue order.
    async fn positions(&self, group: &str) -> Result<Vec<(String, usize)>, DispatchError>;
    /// `node` is alive for `ttl_ms` more milliseconds.
    async fn heartbeat(&self, node: &str, ttl_ms: u64) -> Result<(), DispatchError>;
    /// Requeues (to the front) the chats of agents disconnected for more than `grace_ms`, and of
    /// agents on nodes whose liveness expired more than `grace_ms` ago; forgets those agents and
    /// nodes, then drains. Nodes that never sent a heartbeat are never reaped.
    async fn reap(&self, grace_ms: u64) -> Result<Requeued, DispatchError>;
    /// Queue lengths and agents.
    async fn snapshot(&self) -> Result<Snapshot, DispatchError>;
    /// Queue lengths and ready capacity per group: what every node asks once a second, so
    /// a backend may answer it more cheaply than with a whole [`Dispatcher::snapshot`].
    async fn capacity(&self) -> Result<Capacity, DispatchError> {
        Ok(Capacity::of(&self.snapshot().await?))
    }
    /// The sessions assigned to `agent` and the node of its socket, without a whole
    /// [`Dispatcher::snapshot`] (an agent connecting on a node that has not served it; a frame
    /// for an agent that moved). Unknown agent: nothing.
    async fn agent_chats(
        &self,
        agent: &str,
    ) -> Result<(Vec<String>, Option<String>), DispatchError> {
        let snapshot = self.snapshot().await?;
        Ok(snapshot
            .agents
            .into_iter()
            .find(|a| a.id == agent)
            .map(|a| (a.sessions, Some(a.node)))
            .unwrap_or_default())
    }
}

/// The queue sort key shared by both backends (a Redis ZSET score, exact below 2^53).
///
/// Layout: `band · 2^42 + [2^41 if fresh] + seq`, where `band = MAX_PRIORITY - priority` (so
/// higher priorities sort first) and `seq` is the ticket's arrival number. Returned tickets
/// (requeue, transfer) drop the 2^41 offset and so sort before every fresh ticket of their band,
/// in original arrival order.
pub(crate) fn queue_score(priority: u8, seq: u64, front: bool) -> u64 {
    const BAND: u64 = 1 << 42;
    const FRESH: u64 = 1 << 41;
    let band = u64::from(MAX_PRIORITY - priority.min(MAX_PRIORITY));
    band * BAND + if front { 0 } else { FRESH } + seq
}

/// Rejects ids that would be ambiguous in keys or logs.
pub(crate) fn check_id(kind: &str, id: &str) -> Result<(), DispatchError> {
    if id.is_empty() || id.len() > 256 {
        return Err(DispatchError::Invalid(format!(
            "{kind} id must be 1..=256 bytes, got {:?}",
            id
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (the memory backend's clock; Redis uses `TIME`).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
