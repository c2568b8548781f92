//! One connection type for a single Redis and for Redis Cluster.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisFuture, Value};

use crate::dispatch::DispatchError;

/// The default command timeout (`dispatch.redis_timeout_ms`).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One server's connection manager, its commands timing out after `timeout`.
pub(crate) async fn manager(
    client: Client,
    timeout: Duration,
) -> ::redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new().set_response_timeout(Some(timeout));
    ConnectionManager::new_with_config(client, config).await
}

/// Both variants multiplex one connection and are cheap to clone per call; both reconnect on
/// their own. The Cluster variant routes each script by its first key (`{prefix}`), which is
/// why every script's KEYS[1] is the hash-tagged base.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// `redis://host:port/db` for one server; `redis://a:7000,redis://b:7001,…` for Cluster.
    pub(crate) async fn open(url: &str, timeout: Duration) -> Result<Self, DispatchError> {
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        match urls.as_slice() {
            [] => Err(DispatchError::Config("empty redis url".to_owned())),
            [one] => {
                let client = Client::open(*one)?;
                Ok(Conn::Single(manager(client, timeout).await?))
            }
            many => {
                let client = ClusterClient::builder(many.to_vec())
                    .response_timeout(timeout)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
