//! Fixtures for the dispatcher tests: one behaviour test body, run on both backends.

use std::sync::Arc;

use gateway::dispatch::{
    AgentSpec, Dispatcher, Enqueued, MemoryDispatcher, RedisDispatcher, Snapshot, Ticket,
};

use super::redis_server::{unique_prefix, RedisServer};

/// A dispatcher under test plus what is needed to open a second "node" on the same state.
pub struct Env {
    pub d: Arc<dyn Dispatcher>,
    backend: Kind,
}

enum Kind {
    Memory,
    Redis { server: RedisServer, prefix: String },
}

impl Env {
    pub fn memory() -> Self {
        Self {
            d: Arc::new(MemoryDispatcher::new()),
            backend: Kind::Memory,
        }
    }

    /// A Redis dispatcher on a fresh server (or `REDIS_URL`) with a unique key prefix.
    pub async fn redis() -> Self {
        let server = RedisServer::start();
        let prefix = unique_prefix("dispatch");
        let d = RedisDispatcher::connect(server.url(), &prefix)
            .await
            .expect("connect to the test redis");
        Self {
            d: Arc::new(d),
            backend: Kind::Redis { server, prefix },
        }
    }

    /// Another node on the same state: a separately connected Redis dispatcher, or (memory, a
    /// single-node backend) the same instance.
    pub async fn second_node(&self) -> Arc<dyn Dispatcher> {
        match &self.backend {
            Kind::Memory => self.d.clone(),
            Kind::Redis { server, prefix } => Arc::new(
                RedisDispatcher::connect(server.url(), prefix)
                    .await
                    .expect("connect the second node"),
            ),
        }
    }
}

/// Runs `async fn $name(env: Env)` as `$name::memory` and `$name::redis`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::support::dispatch_env::Env::memory()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::support::dispatch_env::Env::redis().await).await
            }
        }
    )*};
}

pub fn spec(id: &str, groups: &[&str], capacity: u32) -> AgentSpec {
    AgentSpec {
        id: id.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        capacity,
    }
}

pub fn ticket(session: &str, group: &str, priority: u8) -> Ticket {
    Ticket {
        session: session.to_owned(),
        group: group.to_owned(),
        priority,
        node: "n1".to_owned(),
        enqueued_at_ms: 0,
    }
}

/// Agent of an `Assigned`, panicking on `Queued`.
pub fn agent_of(e: &Enqueued) -> &str {
    match e {
        Enqueued::Assigned(a) => &a.agent,
        Enqueued::Queued { .. } => panic!("expected an assignment, got {e:?}"),
    }
}

/// Position of a `Queued`, panicking on `Assigned`.
pub fn position_of(e: &Enqueued) -> usize {
    match e {
        Enqueued::Queued { position, .. } => *position,
        Enqueued::Assigned(a) => panic!("expected to queue, got assigned to {a:?}"),
    }
}

/// Load of one agent in a snapshot.
pub fn load(s: &Snapshot, agent: &str) -> u32 {
    s.agents
        .iter()
        .find(|a| a.id == agent)
        .map_or_else(|| panic!("no agent {agent} in {s:?}"), |a| a.load)
}
