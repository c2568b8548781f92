//! The `[dispatch]` configuration section and the backend constructor.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DispatchError, Dispatcher, MemoryDispatcher, RedisDispatcher};

/// Which store holds the routing state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-process state: one gateway node, nothing to run beside it.
    #[default]
    Memory,
    /// Shared state in Redis (`redis_url` required): several nodes.
    Redis,
}

/// `[dispatch]`: overridable as `KEFU__DISPATCH__BACKEND=redis`,
/// `KEFU__DISPATCH__REDIS_URL=redis://…`, etc.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchSettings {
    pub backend: Backend,
    /// `redis://host:port/db` (or `rediss://`); a comma-separated list of nodes selects a
    /// Redis Cluster.
    pub redis_url: Option<String>,
    /// Every key is `{<key_prefix>}:…`: the prefix is the Redis Cluster hash tag, so all the
    /// routing state of one deployment lives in one slot and each Lua script stays atomic.
    /// Must not contain `{` or `}`.
    pub key_prefix: String,
    /// How long an agent's chats wait for it after its socket drops (phones drop sockets).
    pub agent_grace_ms: u64,
    /// Lifetime of a node's liveness key; a node heartbeats well within it (e.g. every third).
    pub node_ttl_ms: u64,
    /// How long a Redis command may take before it fails. A busy Redis at a sale-day peak
    /// answers late rather than not at all; a short timeout turns that into lost hand-offs.
    pub redis_timeout_ms: u64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            redis_url: None,
            key_prefix: "kefu".to_owned(),
            agent_grace_ms: 30_000,
            node_ttl_ms: 10_000,
            redis_timeout_ms: 5_000,
        }
    }
}

impl DispatchSettings {
    /// Checks what serde cannot: a Redis backend has a URL, the prefix is a valid hash tag.
    pub fn validate(&self) -> Result<(), DispatchError> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(DispatchError::Config(format!(
                "dispatch.key_prefix must be non-empty without braces, got {:?}",
                self.key_prefix
            )));
        }
        if self.backend == Backend::Redis
            && self
                .redis_url
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
        {
            return Err(DispatchError::Config(
                "dispatch.redis_url is required when dispatch.backend = \"redis\"".to_owned(),
            ));
        }
        if self.redis_timeout_ms == 0 {
            return Err(DispatchError::Config(
                "dispatch.redis_timeout_ms must be > 0".to_owned(),
            ));
        }
        if self.node_ttl_ms == 0 {
            return Err(DispatchError::Config(
                "dispatch.node_ttl_ms must be > 0".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Builds the configured backend (connecting to Redis if needed).
pub async fn connect(settings: &DispatchSettings) -> Result<Arc<dyn Dispatcher>, DispatchError> {
    settings.validate()?;
    match settings.backend {
        Backend::Memory => Ok(Arc::new(MemoryDispatcher::new())),
        Backend::Redis => {
            let url = settings.redis_url.as_deref().unwrap_or_default();
            Ok(Arc::new(
                RedisDispatcher::connect_with_timeout(
                    url,
                    &settings.key_prefix,
                    std::time::Duration::from_millis(settings.redis_timeout_ms),
                )
                .await?,
            ))
        }
    }
}
