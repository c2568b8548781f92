//! The Redis backend (in progress).

use async_trait::async_trait;

use super::*;

/// Shared-state [`Dispatcher`] on Redis.
pub struct RedisDispatcher {}

impl RedisDispatcher {
    pub async fn connect(_url: &str, _prefix: &str) -> Result<Self, DispatchError> {
        Err(DispatchError::Config(
            "redis backend not implemented yet".into(),
        ))
    }
}

#[async_trait]
impl Dispatcher for RedisDispatcher {
    async fn agent_online(&self, _: &AgentSpec, _: &str) -> Result<(), DispatchError> {
        todo!()
    }
    async fn agent_ready(&self, _: &str, _: Option<u32>) -> Result<Vec<Assignment>, DispatchError> {
        todo!()
    }
    async fn agent_away(&self, _: &str) -> Result<(), DispatchError> {
        todo!()
    }
    async fn agent_disconnected(&self, _: &str) -> Result<(), DispatchError> {
        todo!()
    }
    async fn agent_offline(&self, _: &str) -> Result<Requeued, DispatchError> {
        todo!()
    }
    async fn enqueue(&self, _: Ticket) -> Result<Enqueued, DispatchError> {
        todo!()
    }
    async fn release(&self, _: &str, _: &str) -> Result<Vec<Assignment>, DispatchError> {
        todo!()
    }
    async fn transfer(&self, _: &str, _: TransferTarget) -> Result<Transferred, DispatchError> {
        todo!()
    }
    async fn cancel(&self, _: &str) -> Result<Vec<Assignment>, DispatchError> {
        todo!()
    }
    async fn position(&self, _: &str) -> Result<Option<(String, usize)>, DispatchError> {
        todo!()
    }
    async fn positions(&self, _: &str) -> Result<Vec<(String, usize)>, DispatchError> {
        todo!()
    }
    async fn heartbeat(&self, _: &str, _: u64) -> Result<(), DispatchError> {
        todo!()
    }
    async fn reap(&self, _: u64) -> Result<Requeued, DispatchError> {
        todo!()
    }
    async fn snapshot(&self) -> Result<Snapshot, DispatchError> {
        todo!()
    }
}
