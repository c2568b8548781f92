//! The in-memory backend: one node, one `Mutex`.
//!
//! Every operation takes the lock once, runs a synchronous transition of [`state::State`] and
//! releases it; the lock is never held across an `.await`, so a `std::sync::Mutex` is right and
//! each operation is as atomic as a Lua script is in Redis.

mod state;

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use self::state::{Rec, State, Where};
use super::{
    check_id, now_ms, AgentSpec, AgentStatus, AgentView, Assignment, DispatchError, Dispatcher,
    Enqueued, Offered, Requeued, Snapshot, Ticket, TransferTarget, Transferred,
};

/// In-process [`Dispatcher`] (the embedded default).
#[derive(Default)]
pub struct MemoryDispatcher {
    state: Mutex<State>,
}

impl MemoryDispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a bug in a transition; the state is
        // still structurally valid (no partial unsafe updates), so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unknown_agent(id: &str) -> DispatchError {
    DispatchError::UnknownAgent(id.to_owned())
}

fn requeue_and_drain(st: &mut State, agents: &[String], now: u64) -> Requeued {
    let mut out = Requeued::default();
    let mut groups = Vec::new();
    for id in agents {
        groups.extend(st.remove_agent(id, now, &mut out.tickets));
    }
    st.drain(&groups, &mut out.assignments);
    out
}

#[async_trait]
impl Dispatcher for MemoryDispatcher {
    async fn agent_online(&self, spec: &AgentSpec, node: &str) -> Result<(), DispatchError> {
        check_id("agent", &spec.id)?;
        check_id("node", node)?;
        self.lock().agent_online(spec, node);
        Ok(())
    }

    async fn agent_ready(
        &self,
        agent: &str,
        capacity: Option<u32>,
    ) -> Result<Vec<Assignment>, DispatchError> {
        let mut out = Vec::new();
        if self.lock().agent_ready(agent, capacity, &mut out) {
            Ok(out)
        } else {
            Err(unknown_agent(agent))
        }
    }

    async fn agent_away(&self, agent: &str) -> Result<(), DispatchError> {
        if self.lock().agent_status(agent, AgentStatus::Away, now_ms()) {
            Ok(())
        } else {
            Err(unknown_agent(agent))
        }
    }

    async fn agent_disconnected(&self, agent: &str) -> Result<(), DispatchError> {
        if self
            .lock()
            .agent_status(agent, AgentStatus::Disconnected, now_ms())
        {
            Ok(())
        } else {
            Err(unknown_agent(agent))
        }
    }

    async fn agent_offline(&self, agent: &str) -> Result<Requeued, DispatchError> {
        let now = now_ms();
        Ok(requeue_and_drain(
            &mut self.lock(),
            &[agent.to_owned()],
            now,
        ))
    }

    async fn offer(&self, ticket: Ticket, agent: &str) -> Result<Offered, DispatchError> {
        check_id("session", &ticket.session)?;
        check_id("group", &ticket.group)?;
        let now = now_ms();
        let mut st = self.lock();
        if let Some(rec) = st.tickets.get_mut(&ticket.session) {
            rec.ticket.node = ticket.node;
            return current(&st, &ticket.session).map(Offered::Known);
        }
        match st.free_for(agent, &ticket.group) {
            Ok(()) => {}
            Err(true) => return Ok(Offered::Busy),
            Err(false) => return Ok(Offered::Unavailable),
        }
        let session = ticket.session.clone();
        st.take_ticket(ticket, now);
        st.assign(&session, agent, now)
            .map(Offered::Assigned)
            .ok_or_else(|| DispatchError::UnknownAgent(agent.to_owned()))
    }

    async fn enqueue(&self, ticket: Ticket) -> Result<Enqueued, DispatchError> {
        check_id("session", &ticket.session)?;
        check_id("group", &ticket.group)?;
        let now = now_ms();
        let mut st = self.lock();
        if let Some(rec) = st.tickets.get_mut(&ticket.session) {
            rec.ticket.node = ticket.node;
            return current(&st, &ticket.session);
        }
        let (session, group) = (ticket.session.clone(), ticket.group.clone());
        let score = st.take_ticket(ticket, now);
        st.queues
            .entry(group.clone())
            .or_default()
            .insert(score, session.clone());
        // By the invariant the queue is empty when an agent is free, so this ticket is the head.
        if let Some(agent) = st.pick_agent(&group) {
            if let Some(a) = st.assign(&session, &agent, now) {
                return Ok(Enqueued::Assigned(a));
            }
        }
        let position = st.rank(&group, score);
        Ok(Enqueued::Queued { group, position })
    }

    async fn release(&self, agent: &str, session: &str) -> Result<Vec<Assignment>, DispatchError> {
        let mut st = self.lock();
        let Some(rec) = st.tickets.get(session) else {
            return Ok(Vec::new());
        };
        match &rec.at {
            Where::Assigned { agent: a, .. } if a == agent => {}
            _ => {
                return Err(DispatchError::NotAssigned {
                    session: session.to_owned(),
                    agent: agent.to_owned(),
                })
            }
        }
        let groups = st.end_chat(session, agent);
        let mut out = Vec::new();
        st.drain(&groups, &mut out);
        Ok(out)
    }

    async fn transfer(
        &self,
        session: &str,
        to: TransferTarget,
    ) -> Result<Transferred, DispatchError> {
        let now = now_ms();
        let mut st = self.lock();
        let Some(rec) = st.tickets.get(session) else {
            return Err(DispatchError::UnknownSession(session.to_owned()));
        };
        let from = match &rec.at {
            Where::Assigned { agent, .. } => Some(agent.clone()),
            Where::Queued { .. } => None,
        };
        let mut freed = Vec::new();
        let mut assignments = Vec::new();
        let result = match to {
            TransferTarget::Group(g) => {
                check_id("group", &g)?;
                if let Some(a) = &from {
                    if let Some(agent) = st.agents.get_mut(a) {
                        agent.chats.remove(session);
                        freed = agent.groups.clone();
                    }
                }
                st.requeue_front(session, Some(&g), now);
                freed.push(g.clone());
                st.drain(&freed, &mut assignments);
                match assignments.iter().position(|a| a.session == session) {
                    Some(i) => Enqueued::Assigned(assignments.remove(i)),
                    None => match st.tickets.get(session).map(|r| &r.at) {
                        Some(Where::Queued { score }) => Enqueued::Queued {
                            position: st.rank(&g, *score),
                            group: g,
                        },
                        _ => return Err(DispatchError::Protocol("transfer lost".to_owned())),
                    },
                }
            }
            TransferTarget::Agent(b) => {
                let target = st.agents.get(&b).ok_or_else(|| unknown_agent(&b))?;
                if from.as_deref() == Some(b.as_str()) {
                    current(&st, session)?
                } else if target.status != AgentStatus::Ready
                    || target.chats.len() as u64 >= u64::from(target.cap)
                {
                    return Err(DispatchError::AgentUnavailable(b));
                } else {
                    if let Some(agent) = from.as_deref().and_then(|a| st.agents.get_mut(a)) {
                        agent.chats.remove(session);
                        freed = agent.groups.clone();
                    }
                    let a = st
                        .assign(session, &b, now)
                        .ok_or_else(|| unknown_agent(&b))?;
                    st.drain(&freed, &mut assignments);
                    Enqueued::Assigned(a)
                }
            }
        };
        Ok(Transferred {
            session: result,
            assignments,
        })
    }

    async fn cancel(&self, session: &str) -> Result<Vec<Assignment>, DispatchError> {
        let mut st = self.lock();
        let Some(rec) = st.tickets.remove(session) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match rec.at {
            Where::Queued { score } => {
                if let Some(q) = st.queues.get_mut(&rec.ticket.group) {
                    q.remove(&score);
                }
            }
            Where::Assigned { agent, .. } => {
                let groups = st.end_chat(session, &agent);
                st.drain(&groups, &mut out);
            }
        }
        Ok(out)
    }

    async fn position(&self, session: &str) -> Result<Option<(String, usize)>, DispatchError> {
        let st = self.lock();
        Ok(match st.tickets.get(session) {
            Some(Rec {
                ticket,
                at: Where::Queued { score },
                ..
            }) => Some((ticket.group.clone(), st.rank(&ticket.group, *score))),
            _ => None,
        })
    }

    async fn positions(&self, group: &str) -> Result<Vec<(String, usize)>, DispatchError> {
        let st = self.lock();
        Ok(st.queues.get(group).map_or_else(Vec::new, |q| {
            q.values().cloned().zip(1..).collect::<Vec<_>>()
        }))
    }

    async fn heartbeat(&self, node: &str, ttl_ms: u64) -> Result<(), DispatchError> {
        check_id("node", node)?;
        if ttl_ms == 0 {
            return Err(DispatchError::Invalid(
                "heartbeat ttl must be > 0".to_owned(),
            ));
        }
        let expires = now_ms().saturating_add(ttl_ms);
        self.lock().nodes.insert(node.to_owned(), expires);
        Ok(())
    }

    async fn reap(&self, grace_ms: u64) -> Result<Requeued, DispatchError> {
        let now = now_ms();
        let mut st = self.lock();
        let dead: Vec<String> = st
            .nodes
            .iter()
            .filter(|(_, &exp)| exp.saturating_add(grace_ms) <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &dead {
            st.nodes.remove(n);
        }
        let mut gone: Vec<String> = st
            .agents
            .iter()
            .filter(|(_, a)| {
                dead.contains(&a.node)
                    || a.disconnected_at
                        .is_some_and(|t| t.saturating_add(grace_ms) <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        gone.sort();
        Ok(requeue_and_drain(&mut st, &gone, now))
    }

    async fn snapshot(&self) -> Result<Snapshot, DispatchError> {
        let st = self.lock();
        let queues = st
            .groups
            .iter()
            .map(|g| (g.clone(), st.queues.get(g).map_or(0, |q| q.len())))
            .collect();
        let mut agents: Vec<AgentView> = st
            .agents
            .iter()
            .map(|(id, a)| AgentView {
                id: id.clone(),
                groups: a.groups.clone(),
                status: a.status,
                node: a.node.clone(),
                load: u32::try_from(a.chats.len()).unwrap_or(u32::MAX),
                capacity: a.cap,
                roster_capacity: a.roster_cap,
                sessions: a.chats.iter().cloned().collect(),
            })
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Snapshot { queues, agents })
    }
}

/// Where a known session is, as [`Dispatcher::enqueue`] reports it.
fn current(st: &State, session: &str) -> Result<Enqueued, DispatchError> {
    let rec = st
        .tickets
        .get(session)
        .ok_or_else(|| DispatchError::UnknownSession(session.to_owned()))?;
    Ok(match &rec.at {
        Where::Queued { score } => Enqueued::Queued {
            group: rec.ticket.group.clone(),
            position: st.rank(&rec.ticket.group, *score),
        },
        Where::Assigned { agent, waited_ms } => Enqueued::Assigned(Assignment {
            session: rec.ticket.session.clone(),
            agent: agent.clone(),
            group: rec.ticket.group.clone(),
            customer_node: rec.ticket.node.clone(),
            agent_node: st
                .agents
                .get(agent)
                .map(|a| a.node.clone())
                .unwrap_or_default(),
            waited_ms: *waited_ms,
        }),
    })
}
