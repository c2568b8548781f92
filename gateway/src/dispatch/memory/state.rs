//! The routing state and its transitions, as plain synchronous code.
//!
//! This is the reference the Lua scripts in `../scripts` mirror step by step (same selection,
//! same tie-breaks, same sequence numbering), so that both backends behave identically.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::dispatch::{queue_score, AgentSpec, AgentStatus, Assignment, Ticket};

pub(super) struct Agent {
    pub groups: Vec<String>,
    pub roster_cap: u32,
    pub cap: u32,
    pub status: AgentStatus,
    pub node: String,
    /// Sequence number of the last assignment, or of becoming ready: lower = idle longer.
    pub idle: u64,
    /// When it was marked disconnected (ms), if it is.
    pub disconnected_at: Option<u64>,
    pub chats: BTreeSet<String>,
}

pub(super) enum Where {
    Queued { score: u64 },
    Assigned { agent: String, waited_ms: u64 },
}

pub(super) struct Rec {
    pub ticket: Ticket,
    /// Arrival sequence number (kept across requeues and transfers).
    pub seq: u64,
    /// When it (re-)entered a queue, for `waited_ms`.
    pub queued_at: u64,
    pub at: Where,
}

#[derive(Default)]
pub(super) struct State {
    pub seq: u64,
    pub agents: HashMap<String, Agent>,
    /// Roster membership: group → agents.
    pub members: HashMap<String, BTreeSet<String>>,
    /// Every group seen (for the snapshot).
    pub groups: BTreeSet<String>,
    pub queues: HashMap<String, BTreeMap<u64, String>>,
    pub tickets: HashMap<String, Rec>,
    /// Node → liveness expiry (ms).
    pub nodes: HashMap<String, u64>,
}

impl State {
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Keeps a new ticket as waiting (at the back of its priority) and returns its queue
    /// score; the caller puts it in the queue or straight with an agent.
    pub fn take_ticket(&mut self, ticket: Ticket, now: u64) -> u64 {
        let seq = self.next_seq();
        let score = queue_score(ticket.priority, seq, false);
        let queued_at = if ticket.enqueued_at_ms == 0 {
            now
        } else {
            ticket.enqueued_at_ms
        };
        self.groups.insert(ticket.group.clone());
        let session = ticket.session.clone();
        let rec = Rec {
            ticket,
            seq,
            queued_at,
            at: Where::Queued { score },
        };
        self.tickets.insert(session, rec);
        score
    }

    pub fn agent_online(&mut self, spec: &AgentSpec, node: &str) {
        if let Some(old) = self.agents.get(&spec.id) {
            for g in &old.groups {
                if let Some(m) = self.members.get_mut(g) {
                    m.remove(&spec.id);
                }
            }
        }
        for g in &spec.groups {
            self.members
                .entry(g.clone())
                .or_default()
                .insert(spec.id.clone());
            self.groups.insert(g.clone());
        }
        let agent = self.agents.entry(spec.id.clone()).or_insert_with(|| Agent {
            groups: Vec::new(),
            roster_cap: 0,
            cap: 0,
            status: AgentStatus::Away,
            node: String::new(),
            idle: 0,
            disconnected_at: None,
            chats: BTreeSet::new(),
        });
        agent.groups = spec.groups.clone();
        agent.roster_cap = spec.capacity;
        agent.cap = spec.capacity;
        agent.status = AgentStatus::Away;
        agent.node = node.to_owned();
        agent.disconnected_at = None;
    }

    /// Returns false if the agent is unknown.
    pub fn agent_ready(&mut self, id: &str, cap: Option<u32>, out: &mut Vec<Assignment>) -> bool {
        let seq = self.seq + 1;
        let Some(agent) = self.agents.get_mut(id) else {
            return false;
        };
        agent.cap = cap.map_or(agent.roster_cap, |c| c.min(agent.roster_cap));
        agent.disconnected_at = None;
        if agent.status != AgentStatus::Ready {
            agent.status = AgentStatus::Ready;
            agent.idle = seq;
            self.seq = seq;
        }
        let groups = agent.groups.clone();
        self.drain(&groups, out);
        true
    }

    /// Away or disconnected; returns false if the agent is unknown.
    pub fn agent_status(&mut self, id: &str, status: AgentStatus, now: u64) -> bool {
        let Some(agent) = self.agents.get_mut(id) else {
            return false;
        };
        agent.status = status;
        agent.disconnected_at = (status == AgentStatus::Disconnected).then_some(now);
        true
    }

    /// Forgets the agent, puts its chats back at the front of their queues (pushed to
    /// `requeued` in arrival order) and returns the groups to drain.
    pub fn remove_agent(&mut self, id: &str, now: u64, requeued: &mut Vec<Ticket>) -> Vec<String> {
        let Some(agent) = self.agents.remove(id) else {
            return Vec::new();
        };
        for g in &agent.groups {
            if let Some(m) = self.members.get_mut(g) {
                m.remove(id);
            }
        }
        let mut chats: Vec<(u64, String)> = agent
            .chats
            .iter()
            .filter_map(|s| self.tickets.get(s).map(|r| (r.seq, s.clone())))
            .collect();
        chats.sort();
        let mut groups = Vec::new();
        for (_, s) in chats {
            if let Some(t) = self.requeue_front(&s, None, now) {
                groups.push(t.group.clone());
                requeued.push(t);
            }
        }
        groups
    }

    /// Puts a ticket (queued or assigned) at the front of `group` (default: its own group).
    /// Does not touch the previous agent's chat set.
    pub fn requeue_front(&mut self, s: &str, group: Option<&str>, now: u64) -> Option<Ticket> {
        let rec = self.tickets.get_mut(s)?;
        if let Where::Queued { score } = rec.at {
            if let Some(q) = self.queues.get_mut(&rec.ticket.group) {
                q.remove(&score);
            }
        }
        if let Some(g) = group {
            rec.ticket.group = g.to_owned();
            self.groups.insert(g.to_owned());
        }
        let score = queue_score(rec.ticket.priority, rec.seq, true);
        rec.at = Where::Queued { score };
        rec.queued_at = now;
        self.queues
            .entry(rec.ticket.group.clone())
            .or_default()
            .insert(score, s.to_owned());
        Some(rec.ticket.clone())
    }

    /// The free `ready` agent of `group` that should get the next chat.
    pub fn pick_agent(&self, group: &str) -> Option<String> {
        let members = self.members.get(group)?;
        let mut best: Option<(&String, u64, u64, u64)> = None;
        for id in members {
            let Some(a) = self.agents.get(id) else {
                continue;
            };
            let (load, cap) = (a.chats.len() as u64, u64::from(a.cap));
            if a.status != AgentStatus::Ready || load >= cap {
                continue;
            }
            let better = match best {
                None => true,
                Some((bid, bl, bc, bi)) => {
                    load * bc < bl * cap
                        || (load * bc == bl * cap && (a.idle < bi || (a.idle == bi && id < bid)))
                }
            };
            if better {
                best = Some((id, load, cap, a.idle));
            }
        }
        best.map(|(id, ..)| id.clone())
    }

    /// Whether agent `id` may take a chat of `group` now: `Ok` if free, `Err(true)` if ready
    /// but full, `Err(false)` if not ready or not of the group.
    pub fn free_for(&self, id: &str, group: &str) -> Result<(), bool> {
        let member = self.members.get(group).is_some_and(|m| m.contains(id));
        match self.agents.get(id) {
            Some(a) if member && a.status == AgentStatus::Ready => {
                if (a.chats.len() as u64) < u64::from(a.cap) {
                    Ok(())
                } else {
                    Err(true)
                }
            }
            _ => Err(false),
        }
    }

    /// Hands ticket `s` to agent `id` (removing it from its queue).
    pub fn assign(&mut self, s: &str, id: &str, now: u64) -> Option<Assignment> {
        let seq = self.next_seq();
        let rec = self.tickets.get_mut(s)?;
        let agent = self.agents.get_mut(id)?;
        if let Where::Queued { score } = rec.at {
            if let Some(q) = self.queues.get_mut(&rec.ticket.group) {
                q.remove(&score);
            }
        }
        let waited_ms = now.saturating_sub(rec.queued_at);
        rec.at = Where::Assigned {
            agent: id.to_owned(),
            waited_ms,
        };
        agent.chats.insert(s.to_owned());
        agent.idle = seq;
        Some(Assignment {
            session: s.to_owned(),
            agent: id.to_owned(),
            group: rec.ticket.group.clone(),
            customer_node: rec.ticket.node.clone(),
            agent_node: agent.node.clone(),
            waited_ms,
        })
    }

    /// Assigns queue heads of `groups` until each is empty or has no free agent; among several
    /// groups the head with the lowest score goes first.
    pub fn drain(&mut self, groups: &[String], out: &mut Vec<Assignment>) {
        let now = super::super::now_ms();
        let mut pending: BTreeSet<String> = groups.iter().cloned().collect();
        loop {
            let mut best: Option<(u64, String, String)> = None;
            for g in &pending {
                if let Some((&score, s)) = self.queues.get(g).and_then(|q| q.iter().next()) {
                    if best
                        .as_ref()
                        .is_none_or(|(bs, bg, _)| (score, g) < (*bs, bg))
                    {
                        best = Some((score, g.clone(), s.clone()));
                    }
                }
            }
            let Some((_, g, s)) = best else {
                return;
            };
            match self.pick_agent(&g) {
                Some(id) => out.extend(self.assign(&s, &id, now)),
                None => {
                    pending.remove(&g);
                }
            }
        }
    }

    /// 1-based rank of `s` in its queue.
    pub fn rank(&self, group: &str, score: u64) -> usize {
        self.queues
            .get(group)
            .map_or(0, |q| q.range(..score).count())
            + 1
    }

    /// Frees the agent's slot for `s` and forgets the ticket; returns the agent's groups.
    pub fn end_chat(&mut self, s: &str, agent: &str) -> Vec<String> {
        self.tickets.remove(s);
        match self.agents.get_mut(agent) {
            Some(a) => {
                a.chats.remove(s);
                a.groups.clone()
            }
            None => Vec::new(),
        }
    }
}
