//! The glue between customer sessions, agents and the [`Dispatcher`]: hand-off to the queue,
//! assignments, relaying chat between the two sides (possibly on two nodes, through the
//! [`bus`]), the agent greeting timer, the first-response SLA, queue positions and requeues.
//!
//! Rule of thumb: whatever changes a customer session runs on the customer's node, whatever
//! changes an agent's view runs on the agent's node; the dispatcher's shared state decides.

pub mod bus;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use bus::{Bus, CustomerEvent, NodeEvent};

use crate::dispatch::{AgentStatus, Assignment, Enqueued, Ticket};
use crate::mask::mask_text;
use crate::protocol::{AgentServerFrame, CustomerInfo, Lang, ServerFrame};
use crate::server::AppState;
use crate::session::{Session, SessionState, Speaker, TranscriptEntry};

/// Puts a session that asked for a human into its group's queue (or straight to an agent).
pub async fn enqueue(app: &AppState, session: &Arc<Session>, group: &str, priority: u8) {
    let ticket = Ticket {
        session: session.id.to_string(),
        group: group.to_string(),
        priority,
        node: app.node_id.clone(),
        enqueued_at_ms: crate::session::now_ms(),
    };
    match app.dispatcher.enqueue(ticket).await {
        Ok(Enqueued::Assigned(assignment)) => {
            let node = assignment.customer_node.clone();
            app.bus
                .send(&node, NodeEvent::Assigned { assignment })
                .await;
        }
        Ok(Enqueued::Queued { group, position }) => tell_position(app, session, &group, position),
        Err(err) => {
            metrics::counter!("kefu_dispatch_errors_total").increment(1);
            tracing::error!(error = %err, "cannot enqueue for a human");
        }
    }
}

/// Sends `queued` with the estimated wait when the position changed.
fn tell_position(app: &AppState, session: &Session, group: &str, position: usize) {
    let changed = session.with_conversation(|c| {
        let changed = c.last_position != Some(position);
        c.last_position = Some(position);
        changed
    });
    if changed {
        let agents = app.group_capacity(group).max(1) as u64;
        let estimated_wait_s =
            (position as u64 * app.settings.routing.avg_handle_s).div_ceil(agents);
        session.emit(&ServerFrame::Queued {
            position,
            estimated_wait_s,
        });
    }
}

/// Handles one event on this node's event task.
pub async fn handle(app: &AppState, event: NodeEvent) {
    match event {
        NodeEvent::Assigned { assignment } => on_assigned(app, assignment).await,
        NodeEvent::Requeued { ticket, reason } => on_requeued(app, ticket, &reason),
        NodeEvent::ToCustomer { session, event } => on_customer_event(app, &session, event),
        NodeEvent::ToAgent {
            agent,
            frame,
            customer_node,
        } => crate::agent::deliver(app, &agent, frame, customer_node),
    }
}

/// On the customer's node: the session has an agent now.
async fn on_assigned(app: &AppState, a: Assignment) {
    let Some(session) = app.sessions.get(&a.session) else {
        // The customer left meanwhile: free the slot (and fill it with the next customer).
        return cancel(app, &a.session, None).await;
    };
    let name = app.agent_name(&a.agent);
    metrics::histogram!("kefu_queue_wait_seconds").record(a.waited_ms as f64 / 1000.0);
    session.set_state(SessionState::WithAgent {
        agent: a.agent.clone(),
        group: a.group.clone(),
        agent_node: a.agent_node.clone(),
    });
    session.with_conversation(|c| {
        c.last_position = None;
        c.assigned_at = Some(Instant::now());
        c.agent_replied = false;
        c.sla_warned = false;
        c.awaiting_since = None;
        c.agents.push(a.agent.clone());
    });
    session.record(
        Speaker::System,
        &format!("assigned to {name} ({})", a.group),
        None,
    );
    session.emit(&ServerFrame::AgentJoined { name: name.clone() });
    let frame = AgentServerFrame::Assigned {
        session: a.session.clone(),
        group: a.group.clone(),
        customer: CustomerInfo {
            visitor: session
                .visitor
                .as_deref()
                .map(|v| mask_text(v).into_owned()),
            channel: session.channel,
            lang: session.lang,
            complaint_level: session.with_conversation(|c| c.complaint_level),
        },
        history: masked_history(session.transcript()),
        waited_ms: a.waited_ms,
    };
    let event = NodeEvent::ToAgent {
        agent: a.agent.clone(),
        frame,
        customer_node: Some(app.node_id.clone()),
    };
    app.bus.send(&a.agent_node, event).await;
    start_greeting_timer(app.clone(), session, a.agent, name);
}

/// Everything said so far, as an agent may see it.
fn masked_history(transcript: Vec<TranscriptEntry>) -> Vec<TranscriptEntry> {
    transcript
        .into_iter()
        .map(|mut e| {
            e.text = mask_text(&e.text).into_owned();
            e
        })
        .collect()
}

/// If the agent has not written within the greeting time, greet in their name.
fn start_greeting_timer(app: AppState, session: Arc<Session>, agent: String, name: String) {
    let after = Duration::from_secs(app.settings.routing.agent_greeting_s);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let still_theirs =
            matches!(session.state(), SessionState::WithAgent { agent: ref a, .. } if *a == agent);
        let due = still_theirs
            && session.with_conversation(|c| !std::mem::replace(&mut c.agent_replied, true));
        if !due {
            return;
        }
        let template = match session.lang {
            Lang::Zh => &app.settings.routing.agent_greeting_zh,
            Lang::En => &app.settings.routing.agent_greeting_en,
        };
        let text = template.replace("{name}", &name);
        metrics::counter!("kefu_agent_auto_greetings_total").increment(1);
        session.record(Speaker::Agent, &text, None);
        session.emit(&ServerFrame::Message {
            id: format!("auto-{}", session.last_seq() + 1),
            from: "agent".into(),
            name,
            text: text.clone(),
            auto: true,
        });
        if let SessionState::WithAgent { agent_node, .. } = session.state() {
            let frame = AgentServerFrame::AutoGreeting {
                session: session.id.to_string(),
                text,
            };
            let event = NodeEvent::ToAgent {
                agent,
                frame,
                customer_node: None,
            };
            app.bus.send(&agent_node, event).await;
        }
    });
}

/// On the customer's node: the agent is gone; the session is back at the front of the queue.
fn on_requeued(app: &AppState, ticket: Ticket, reason: &str) {
    let Some(session) = app.sessions.get(&ticket.session) else {
        return;
    };
    session.set_state(SessionState::Queued {
        group: ticket.group.clone(),
    });
    session.with_conversation(|c| c.last_position = None);
    session.record(Speaker::System, &format!("agent left: {reason}"), None);
    session.emit(&ServerFrame::AgentLeft {
        reason: reason.to_string(),
    });
    // The exact position follows with the next positions tick; the front of the queue is
    // where requeued chats go.
    tell_position(app, &session, &ticket.group, 1);
}

/// On the customer's node: something the agent did.
fn on_customer_event(app: &AppState, session_id: &str, event: CustomerEvent) {
    let Some(session) = app.sessions.get(session_id) else {
        tracing::info!(
            ?event,
            "agent event dropped: the customer session has ended"
        );
        return;
    };
    let agent_now = match session.state() {
        SessionState::WithAgent { agent, .. } => Some(agent),
        _ => None,
    };
    match event {
        CustomerEvent::AgentMessage { agent, id, text } if agent_now.as_deref() == Some(&agent) => {
            let first = session.with_conversation(|c| {
                c.awaiting_since = None;
                c.sla_warned = false;
                let first = !c.agent_replied;
                c.agent_replied = true;
                first.then_some(c.assigned_at).flatten()
            });
            if let Some(assigned_at) = first {
                metrics::histogram!("kefu_agent_first_reply_seconds")
                    .record(assigned_at.elapsed().as_secs_f64());
            }
            session.record(Speaker::Agent, &text, Some(id.clone()));
            session.emit(&ServerFrame::Message {
                id,
                from: "agent".into(),
                name: app.agent_name(&agent),
                text,
                auto: false,
            });
        }
        CustomerEvent::AgentTyping { agent } if agent_now.as_deref() == Some(&agent) => {
            session.emit(&ServerFrame::Typing {});
        }
        CustomerEvent::ChatClosed { agent } if agent_now.as_deref() == Some(&agent) => {
            session.record(Speaker::System, "chat closed by the agent", None);
            session.set_state(SessionState::Survey);
            session.emit(&ServerFrame::Closed {
                reason: "agent_closed".into(),
            });
            session.emit(&ServerFrame::Survey {});
        }
        CustomerEvent::Transferred {
            agent,
            group,
            position,
        } if agent_now.as_deref() == Some(&agent) => {
            session.record(Speaker::System, &format!("transferred to {group}"), None);
            session.set_state(SessionState::Queued {
                group: group.clone(),
            });
            session.with_conversation(|c| c.last_position = None);
            session.emit(&ServerFrame::Handoff {
                group: group.clone(),
                reason: "transfer".into(),
                level: None,
            });
            tell_position(app, &session, &group, position);
        }
        stale => tracing::info!(
            ?stale,
            state = ?session.state(),
            "agent event dropped: the session is no longer with that agent"
        ),
    }
}

/// A customer message or typing while with an agent: forward it.
pub async fn forward_to_agent(app: &AppState, session: &Session, frame: AgentServerFrame) {
    let SessionState::WithAgent {
        agent, agent_node, ..
    } = session.state()
    else {
        return;
    };
    if matches!(frame, AgentServerFrame::Message { .. }) {
        session.with_conversation(|c| {
            c.awaiting_since.get_or_insert_with(Instant::now);
        });
    }
    let event = NodeEvent::ToAgent {
        agent,
        frame,
        customer_node: None,
    };
    app.bus.send(&agent_node, event).await;
}

/// The customer is gone (closed, or expired): leave the queue or free the agent.
pub async fn cancel(app: &AppState, session_id: &str, state: Option<SessionState>) {
    if let Some(SessionState::WithAgent {
        agent, agent_node, ..
    }) = state
    {
        let frame = AgentServerFrame::CustomerLeft {
            session: session_id.to_string(),
        };
        let event = NodeEvent::ToAgent {
            agent,
            frame,
            customer_node: None,
        };
        app.bus.send(&agent_node, event).await;
    }
    match app.dispatcher.cancel(session_id).await {
        Ok(assignments) => announce(app, assignments).await,
        Err(err) => tracing::error!(error = %err, "cannot cancel a chat"),
    }
}

/// Sends each assignment to its customer's node.
pub async fn announce(app: &AppState, assignments: Vec<Assignment>) {
    for assignment in assignments {
        let node = assignment.customer_node.clone();
        app.bus
            .send(&node, NodeEvent::Assigned { assignment })
            .await;
    }
}

/// Once a second: requeue the chats of agents (or nodes) gone past the grace period,
/// refresh queue positions, raise first-response SLA warnings.
pub async fn tick(app: &AppState) {
    match app
        .dispatcher
        .reap(app.settings.dispatch.agent_grace_ms)
        .await
    {
        Ok(requeued) => {
            for ticket in requeued.tickets {
                let node = ticket.node.clone();
                let event = NodeEvent::Requeued {
                    ticket,
                    reason: "agent_disconnected".into(),
                };
                app.bus.send(&node, event).await;
            }
            announce(app, requeued.assignments).await;
        }
        Err(err) => tracing::error!(error = %err, "reap failed"),
    }
    refresh_capacity(app).await;
    refresh_positions(app).await;
    check_sla(app).await;
}

/// Ready capacity per group (for estimated waits) and queue lengths (for metrics).
async fn refresh_capacity(app: &AppState) {
    let Ok(snapshot) = app.dispatcher.snapshot().await else {
        return;
    };
    let mut capacity = std::collections::HashMap::new();
    for agent in snapshot
        .agents
        .iter()
        .filter(|a| a.status == AgentStatus::Ready)
    {
        for group in &agent.groups {
            *capacity.entry(group.clone()).or_insert(0) += agent.capacity;
        }
    }
    for (group, len) in &snapshot.queues {
        metrics::gauge!("kefu_queue_length", "group" => group.clone()).set(*len as f64);
    }
    *app.ready_capacity
        .write()
        .unwrap_or_else(|e| e.into_inner()) = capacity;
}

async fn refresh_positions(app: &AppState) {
    let mut groups = std::collections::BTreeSet::new();
    for session in app.sessions.all() {
        if let SessionState::Queued { group } = session.state() {
            groups.insert(group);
        }
    }
    for group in groups {
        match app.dispatcher.positions(&group).await {
            Ok(positions) => {
                for (id, position) in positions {
                    if let Some(session) = app.sessions.get(&id) {
                        tell_position(app, &session, &group, position);
                    }
                }
            }
            Err(err) => tracing::error!(error = %err, %group, "cannot read queue positions"),
        }
    }
}

async fn check_sla(app: &AppState) {
    let sla = Duration::from_secs(app.settings.routing.first_response_sla_s);
    for session in app.sessions.all() {
        let SessionState::WithAgent {
            agent, agent_node, ..
        } = session.state()
        else {
            continue;
        };
        let waiting = session.with_conversation(|c| match c.awaiting_since {
            Some(since) if !c.sla_warned && since.elapsed() >= sla => {
                c.sla_warned = true;
                Some(since.elapsed())
            }
            _ => None,
        });
        if let Some(waiting) = waiting {
            metrics::counter!("kefu_sla_warnings_total").increment(1);
            let frame = AgentServerFrame::SlaWarning {
                session: session.id.to_string(),
                waiting_s: waiting.as_secs(),
            };
            let event = NodeEvent::ToAgent {
                agent,
                frame,
                customer_node: None,
            };
            app.bus.send(&agent_node, event).await;
        }
    }
}
