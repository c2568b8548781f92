//! The once-a-second work of every node: reaping, capacity, queue positions, SLA warnings.

use std::time::Duration;

use super::positions::tell_position;
use super::NodeEvent;
use super::Relay;
use crate::protocol::AgentServerFrame;
use crate::session::SessionState;
use crate::telemetry::metric;

impl Relay {
    /// Once a second: requeue the chats of agents (or nodes) gone past the grace period,
    /// refresh queue positions, raise first-response SLA warnings.
    pub async fn tick(&self) {
        match self.dispatcher.reap(self.agent_grace_ms).await {
            Ok(requeued) => {
                for ticket in requeued.tickets {
                    let node = ticket.node.clone();
                    let event = NodeEvent::Requeued {
                        ticket,
                        reason: "agent_disconnected".into(),
                    };
                    self.bus.send(&node, event).await;
                }
                self.announce(requeued.assignments).await;
            }
            Err(err) => tracing::error!(error = %err, "reap failed"),
        }
        let queued = refresh_capacity(self).await;
        refresh_positions(self, queued).await;
        check_sla(self).await;
    }
}

/// Ready capacity per group (for estimated waits) and queue lengths (for metrics); returns
/// the groups someone waits in.
async fn refresh_capacity(relay: &Relay) -> Vec<String> {
    let Ok(capacity) = relay.dispatcher.capacity().await else {
        return Vec::new();
    };
    for (group, len) in &capacity.queues {
        metrics::gauge!(metric::QUEUE_LENGTH, "group" => group.clone()).set(*len as f64);
    }
    relay.set_capacity(capacity.ready);
    capacity
        .queues
        .into_iter()
        .filter(|(_, len)| *len > 0)
        .map(|(group, _)| group)
        .collect()
}

/// Frames told in one go before the tick pauses (see [`refresh_positions`]).
const TELL_BATCH: usize = 32;
/// Sessions visited in one go by the SLA check before it lets other tasks run.
const SCAN_BATCH: usize = 1024;

/// Tells waiting customers their positions. At a peak that is hundreds of frames a second per
/// node; told in one burst, each woken connection's write queued ahead of every relay and
/// greeting of the node for several milliseconds. So the tick pauses a millisecond after every
/// [`TELL_BATCH`] frames: the same frames, spread over a few tens of milliseconds.
///
/// `groups` are the groups with a queue (from the capacity view), not found by visiting every
/// session of the node: with 16,000 sessions a node, such scans were a few percent of its time.
async fn refresh_positions(relay: &Relay, groups: Vec<String>) {
    for group in groups {
        match relay.dispatcher.positions(&group).await {
            Ok(positions) => {
                let mut told = 0;
                for (id, position) in positions {
                    let Some(session) = relay.sessions.get(&id) else {
                        continue;
                    };
                    if tell_position(relay, &session, &group, position) {
                        told += 1;
                        if told % TELL_BATCH == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
            }
            Err(err) => tracing::error!(error = %err, %group, "cannot read queue positions"),
        }
    }
}

/// What the SLA check found for one waiting session.
enum Waiting {
    /// Past the first-response SLA: warn its agent (once).
    Due {
        agent: String,
        agent_node: String,
        waiting: Duration,
    },
    /// Still within it: look again at the next tick.
    Within,
    /// Answered, warned already, or no longer with an agent.
    Done,
}

/// Warns agents whose customer has waited past the first-response SLA. Visits the sessions
/// in [`Parts::awaiting`](super::Parts) only (customers who wrote to an agent since the last
/// tick, or still waiting for the reply), not every session of the node.
async fn check_sla(relay: &Relay) {
    let sla = Duration::from_secs(relay.routing.first_response_sla_s);
    // Taken out first and put back while still waiting: a message that starts a wait during
    // the check puts its session in again itself, so none is forgotten.
    for (n, id) in relay.awaiting.take().into_iter().enumerate() {
        if n % SCAN_BATCH == SCAN_BATCH - 1 {
            tokio::task::yield_now().await;
        }
        let Some(session) = relay.sessions.get(&id) else {
            continue;
        };
        let waiting = session.with_state_and_service(|state, c| {
            let SessionState::WithAgent {
                agent, agent_node, ..
            } = state
            else {
                return Waiting::Done;
            };
            match c.awaiting_since {
                Some(since) if !c.sla_warned && since.elapsed() >= sla => {
                    c.sla_warned = true;
                    Waiting::Due {
                        agent: agent.clone(),
                        agent_node: agent_node.clone(),
                        waiting: since.elapsed(),
                    }
                }
                Some(_) if !c.sla_warned => Waiting::Within,
                _ => Waiting::Done,
            }
        });
        let (agent, agent_node, waiting) = match waiting {
            Waiting::Due {
                agent,
                agent_node,
                waiting,
            } => (agent, agent_node, waiting),
            Waiting::Within => {
                relay.awaiting.insert(id);
                continue;
            }
            Waiting::Done => continue,
        };
        // Only the owner warns: a node that was paused past a takeover learns it here (on a
        // task of its own: the scan does not wait for the log).
        session.checkpoint();
        let bus = relay.bus.clone();
        tokio::spawn(async move {
            if session.sync().await.is_err() {
                return;
            }
            metrics::counter!(metric::SLA_WARNINGS_TOTAL).increment(1);
            let frame = AgentServerFrame::SlaWarning {
                session: session.id.to_string(),
                waiting_s: waiting.as_secs(),
            };
            let event = NodeEvent::ToAgent {
                agent,
                frame,
                customer_node: None,
            };
            bus.send(&agent_node, event).await;
        });
    }
}
