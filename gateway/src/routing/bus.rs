//! Delivery of routing events to the node that holds a customer's or an agent's socket.
//!
//! Every node handles its events on one task, in arrival order: events for itself go through
//! a local bounded channel, events for another node are published on that node's Redis
//! channel (`{prefix}:node:<id>`) and its subscriber feeds them into the same channel there.
//! Pub/sub keeps the order of one publisher's messages, so a chat's frames arrive in order
//! while both nodes are up.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::dispatch::{Assignment, Backend, DispatchSettings, Ticket};
use crate::protocol::AgentServerFrame;
use crate::telemetry::metric;

/// How long an event nobody received is published again, and how often.
const REPUBLISH_FOR: Duration = Duration::from_secs(6);
const REPUBLISH_EVERY: Duration = Duration::from_millis(200);

/// How many events may wait for a node's event task.
const EVENT_QUEUE: usize = 65_536;

/// An event for the node that holds the socket concerned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeEvent {
    /// For the customer's node: the session now has an agent.
    Assigned { assignment: Assignment },
    /// For the customer's node: the session went back to its queue.
    Requeued { ticket: Ticket, reason: String },
    /// For the customer's node.
    ToCustomer {
        session: String,
        event: CustomerEvent,
    },
    /// For the agent's node; `customer_node` comes with an assignment.
    ToAgent {
        agent: String,
        frame: AgentServerFrame,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_node: Option<String>,
    },
}

impl NodeEvent {
    /// What the event is, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeEvent::Assigned { .. } => "assigned",
            NodeEvent::Requeued { .. } => "requeued",
            NodeEvent::ToCustomer { event, .. } => event.kind(),
            NodeEvent::ToAgent { .. } => "to_agent",
        }
    }
}

/// What an agent did, for the customer's session. Its `Debug` hides the text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CustomerEvent {
    AgentMessage {
        agent: String,
        id: String,
        text: String,
        #[serde(flatten, default)]
        rich: crate::protocol::Rich,
    },
    AgentTyping {
        agent: String,
    },
    ChatClosed {
        agent: String,
    },
    /// The agent reconnected and its replay had a gap: send the chat's full state again
    /// (`assigned` with `resumed`) to `agent_node`.
    Resync {
        agent: String,
        agent_node: String,
    },
    /// The agent's socket is on `agent_node` now (it reconnected to another node).
    AgentMoved {
        agent: String,
        agent_node: String,
    },
    /// Transferred into `group`'s queue at `position`.
    Transferred {
        agent: String,
        group: String,
        position: usize,
    },
}

crate::redacted_debug!(CustomerEvent);

impl CustomerEvent {
    /// What the event is, for logs (which never carry the text).
    pub fn kind(&self) -> &'static str {
        match self {
            CustomerEvent::AgentMessage { .. } => "agent_message",
            CustomerEvent::AgentTyping { .. } => "agent_typing",
            CustomerEvent::ChatClosed { .. } => "chat_closed",
            CustomerEvent::Resync { .. } => "resync",
            CustomerEvent::AgentMoved { .. } => "agent_moved",
            CustomerEvent::Transferred { .. } => "transferred",
        }
    }

    /// The agent who did it.
    pub fn agent(&self) -> &str {
        match self {
            CustomerEvent::AgentMessage { agent, .. }
            | CustomerEvent::AgentTyping { agent }
            | CustomerEvent::ChatClosed { agent }
            | CustomerEvent::Resync { agent, .. }
            | CustomerEvent::AgentMoved { agent, .. }
            | CustomerEvent::Transferred { agent, .. } => agent,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis bus: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis bus needs dispatch.redis_url")]
    NoUrl,
}

#[derive(Clone)]
pub struct Bus {
    node: Arc<str>,
    local: mpsc::Sender<NodeEvent>,
    /// The multiplexed connection that publishes to other nodes, and the channel prefix
    /// (`{prefix}<node>`).
    remote: Option<(ConnectionManager, Arc<str>)>,
}

impl Bus {
    /// Starts the bus of `node`; returns it and the receiver its event task drains.
    pub async fn start(
        settings: &DispatchSettings,
        node: &str,
    ) -> Result<(Bus, mpsc::Receiver<NodeEvent>), BusError> {
        let (local, rx) = mpsc::channel(EVENT_QUEUE);
        let remote = match settings.backend {
            Backend::Memory => None,
            Backend::Redis => {
                let url = settings
                    .redis_url
                    .as_deref()
                    .and_then(|u| u.split(',').next())
                    .filter(|u| !u.trim().is_empty())
                    .ok_or(BusError::NoUrl)?
                    .trim()
                    .to_string();
                let client = redis::Client::open(url.as_str())?;
                let timeout = Duration::from_millis(settings.redis_timeout_ms);
                let publisher = crate::dispatch::redis_manager(client.clone(), timeout).await?;
                let prefix = format!("{{{}}}:node:", settings.key_prefix);
                tokio::spawn(subscribe(client, format!("{prefix}{node}"), local.clone()));
                Some((publisher, prefix.into()))
            }
        };
        Ok((
            Bus {
                node: node.into(),
                local,
                remote,
            },
            rx,
        ))
    }

    /// Sends `event` to `node`'s event task. An event for another node is published on the
    /// multiplexed connection without waiting for Redis's answer: the command is queued on the
    /// connection here, so events keep their order, and the answer (an error, or nobody
    /// subscribed because the node is down) is awaited on a task of its own. Waiting here held
    /// up the caller (the node's one event task, an agent's socket) for a Redis round trip per
    /// event, and every relay queued behind it at a peak. (A single publisher task with one
    /// pipeline in flight was tried before: every event then waited for the batch before it.)
    pub async fn send(&self, node: &str, event: NodeEvent) {
        let Some(mut published) = self.publish(node, event, REPUBLISH_FOR) else {
            return;
        };
        // The first poll puts the command in the connection's queue (or in line for it: the
        // queue serves waiting senders in order); the rest only waits for the answer.
        if futures_util::future::poll_immediate(&mut published)
            .await
            .is_none()
        {
            tokio::spawn(published);
        }
    }

    /// Like [`Bus::send`], but returns once Redis has the event, i.e. once it is on its way to
    /// the other node's subscriber ahead of anything the caller does next on another
    /// connection. An agent must hear that a customer left before the freed slot's next chat
    /// reaches it (that goes through the dispatcher and the new customer's node).
    pub async fn send_confirmed(&self, node: &str, event: NodeEvent) {
        // Awaited by its caller: no republishing (it would hold the caller for seconds).
        if let Some(published) = self.publish(node, event, Duration::ZERO) {
            published.await;
        }
    }

    /// Delivers a local event at once; for another node, the PUBLISH to run.
    fn publish(
        &self,
        node: &str,
        event: NodeEvent,
        republish_for: Duration,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        if node == &*self.node || self.remote.is_none() {
            self.send_local(event);
            return None;
        }
        let (publisher, prefix) = self.remote.as_ref()?;
        let payload = match serde_json::to_string(&event) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(%err, "unserialisable node event");
                return None;
            }
        };
        let mut conn = publisher.clone();
        let channel = format!("{prefix}{node}");
        let node = node.to_string();
        Some(Box::pin(async move {
            // Nobody listening is a node restarting or its subscriber reconnecting (Redis
            // restarted): try again for a few seconds rather than lose the event; the
            // receivers drop what they already have (message ids).
            let deadline = tokio::time::Instant::now() + republish_for;
            loop {
                let answer: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async(&mut conn)
                    .await;
                let delivered = matches!(answer, Ok(n) if n > 0);
                if delivered || tokio::time::Instant::now() >= deadline {
                    return check_published(&node, answer);
                }
                metrics::counter!(metric::BUS_REPUBLISHED_TOTAL).increment(1);
                tokio::time::sleep(REPUBLISH_EVERY).await;
            }
        }))
    }

    fn send_local(&self, event: NodeEvent) {
        if let Err(err) = self.local.try_send(event) {
            // The event task is far behind: hand the event to a task that waits for room
            // rather than blocking (the event task itself may be the sender).
            metrics::counter!(metric::BUS_BACKPRESSURE_TOTAL).increment(1);
            let local = self.local.clone();
            let event = err.into_inner();
            tokio::spawn(async move {
                let _ = local.send(event).await;
            });
        }
    }
}

/// Counts what a PUBLISH answered: a node with no subscriber is down (or not yet up).
fn check_published(node: &str, answer: Result<i64, redis::RedisError>) {
    match answer {
        Ok(0) => {
            metrics::counter!(metric::BUS_UNDELIVERED_TOTAL).increment(1);
            tracing::warn!(node, "no subscriber for node event (node down?)");
        }
        Ok(_) => {}
        Err(err) => {
            metrics::counter!(metric::BUS_ERRORS_TOTAL).increment(1);
            tracing::error!(%err, node, "cannot publish node event");
        }
    }
}

/// Feeds this node's Redis channel into its event queue; reconnects after failures.
async fn subscribe(client: redis::Client, channel: String, local: mpsc::Sender<NodeEvent>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(err) = pubsub.subscribe(&channel).await {
                    tracing::error!(%err, "cannot subscribe to the node channel");
                } else {
                    tracing::info!(%channel, "subscribed to node events");
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<NodeEvent>(&payload) {
                            Ok(event) => {
                                if local.send(event).await.is_err() {
                                    return; // the node is gone
                                }
                            }
                            // A serde error may quote the payload: log where, not what.
                            Err(err) => tracing::error!(
                                category = ?err.classify(),
                                line = err.line(),
                                column = err.column(),
                                "bad node event"
                            ),
                        }
                    }
                    tracing::warn!("node event subscription ended; reconnecting");
                }
            }
            Err(err) => tracing::error!(%err, "cannot connect the node event subscriber"),
        }
        if local.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
