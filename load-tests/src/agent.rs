//! Simulated agents: connect with a token, say `ready`, and work the chats they are assigned.
//!
//! Agents run in the parent process (at most a few hundred), so one [`Board`] sees every agent's
//! load and can judge the routing: at each assignment it compares the chosen agent's load with
//! the least-loaded ready agent of the same group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{now_us, Sent};
use crate::net::{self, Frame, Incoming, Target, Ws};
use crate::profile::Profile;
use crate::rng::Rng;
use crate::tally::Shared;

/// One agent of the run.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub index: usize,
    /// Roster id (`a001`, …); also the prefix of the agent's message ids.
    pub id: String,
    pub token: String,
    pub groups: Vec<String>,
    pub capacity: u32,
    pub target: Target,
    /// Index of `target` among the run's targets.
    pub node: u32,
}

/// Builds the agent list from the profile's pools, spreading agents over the targets.
pub fn specs(profile: &Profile, tokens: &[String], targets: &[Target]) -> Vec<AgentSpec> {
    let mut out = Vec::new();
    for pool in &profile.agents.pools {
        for _ in 0..pool.count {
            let index = out.len();
            out.push(AgentSpec {
                index,
                id: format!("a{:03}", index + 1),
                token: tokens.get(index).cloned().unwrap_or_default(),
                groups: pool.groups.clone(),
                capacity: pool.capacity,
                target: targets[index % targets.len()],
                node: (index % targets.len()) as u32,
            });
        }
    }
    out
}

/// Every agent's current load, as the agents themselves count it.
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<BoardInner>,
}

/// How long a slot an agent just freed still counts as busy when judging an assignment: the
/// agent frees it when it sends `close`, the gateway a little later, and routing on the
/// gateway's view during that moment is not unfair.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct BoardInner {
    load: Vec<u32>,
    /// When each agent last freed slots (recent frees count as busy for [`SETTLE`]).
    freed: Vec<Vec<Instant>>,
    capacity: Vec<u32>,
    online: Vec<bool>,
    groups_of: Vec<Vec<String>>,
    members: HashMap<String, Vec<usize>>,
    spread_max: u64,
    over_capacity: u64,
    assignments: u64,
}

/// What the board concluded, for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoardSummary {
    pub spread_max: u64,
    pub over_capacity: u64,
    pub assignments: u64,
}

impl Board {
    pub fn new(specs: &[AgentSpec]) -> Board {
        let mut b = BoardInner::default();
        for s in specs {
            b.load.push(0);
            b.freed.push(Vec::new());
            b.capacity.push(s.capacity);
            b.online.push(false);
            b.groups_of.push(s.groups.clone());
            for g in &s.groups {
                b.members.entry(g.clone()).or_default().push(s.index);
            }
        }
        Board {
            inner: Mutex::new(b),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_online(&self, agent: usize, online: bool) {
        let mut b = self.lock();
        if let Some(o) = b.online.get_mut(agent) {
            *o = online;
        }
        if !online {
            if let Some(l) = b.load.get_mut(agent) {
                *l = 0;
            }
        }
    }

    /// Records an assignment in `group` and returns the spread it produced: the chosen agent's
    /// load afterwards minus the lowest load among the group's ready agents (slots freed within
    /// [`SETTLE`] still count). Least-loaded routing keeps it at 1 or less.
    pub fn assign(&self, agent: usize, group: Option<&str>) -> u64 {
        let mut b = self.lock();
        let now = Instant::now();
        for f in b.freed.iter_mut() {
            f.retain(|t| now.duration_since(*t) < SETTLE);
        }
        let Some(load) = b.load.get_mut(agent) else {
            return 0;
        };
        *load += 1;
        let load = *load;
        b.assignments += 1;
        if load > b.capacity[agent] {
            b.over_capacity += 1;
        }
        let groups: Vec<String> = match group {
            Some(g) if b.members.contains_key(g) => vec![g.to_owned()],
            _ => b.groups_of[agent].clone(),
        };
        let mut spread = 0;
        for g in &groups {
            let min = b.members[g]
                .iter()
                .filter(|&&i| b.online[i] || i == agent)
                .map(|&i| b.load[i] + b.freed[i].len() as u32)
                .min()
                .unwrap_or(load);
            spread = spread.max(u64::from(load.saturating_sub(min)));
        }
        b.spread_max = b.spread_max.max(spread);
        spread
    }

    pub fn release(&self, agent: usize) {
        let mut b = self.lock();
        if let Some(l) = b.load.get_mut(agent) {
            *l = l.saturating_sub(1);
            b.freed[agent].push(Instant::now());
        }
    }

    pub fn summary(&self) -> BoardSummary {
        let b = self.lock();
        BoardSummary {
            spread_max: b.spread_max,
            over_capacity: b.over_capacity,
            assignments: b.assignments,
        }
    }
}

/// What every agent shares.
pub struct AgentCtx {
    pub profile: Arc<Profile>,
    pub shared: Arc<Shared>,
    pub board: Arc<Board>,
    pub seed: u64,
}

#[derive(Debug, Clone)]
enum Action {
    Reply(String),
    Close(String),
}

struct Chat {
    to_send: u32,
    sent: u32,
}

struct Agent {
    ctx: Arc<AgentCtx>,
    spec: AgentSpec,
    rng: Rng,
    chats: HashMap<String, Chat>,
    timers: BTreeMap<(Instant, u64), Action>,
    timer_seq: u64,
    next_msg: u64,
    unacked: HashMap<String, Sent>,
}

/// Runs one agent until `stop` turns true; reconnects after a dropped socket.
pub async fn run(ctx: Arc<AgentCtx>, spec: AgentSpec, mut stop: watch::Receiver<bool>) {
    let rng = Rng::derive(ctx.seed, 2, spec.index as u64);
    let mut a = Agent {
        ctx,
        spec,
        rng,
        chats: HashMap::new(),
        timers: BTreeMap::new(),
        timer_seq: 0,
        next_msg: 0,
        unacked: HashMap::new(),
    };
    let mut failures = 0u32;
    while !*stop.borrow() {
        let path = format!("/ws/agent?token={}", net::enc(&a.spec.token));
        match net::connect(a.spec.target, None, &path, Duration::from_secs(10)).await {
            Ok(ws) => {
                failures = 0;
                a.session(ws, &mut stop).await;
            }
            Err(e) => {
                failures += 1;
                a.ctx.shared.tally().error("agent_connect_failed");
                crate::warn_limited(&format!(
                    "agent {} connect to {}: {e}",
                    a.spec.id, a.spec.target
                ));
                if failures >= 5 {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
    let n = a.unacked.len() as u64;
    if n > 0 {
        *a.ctx
            .shared
            .tally()
            .errors
            .entry("agent_message_unacked".into())
            .or_default() += n;
    }
}

impl Agent {
    async fn session(&mut self, mut ws: Ws, stop: &mut watch::Receiver<bool>) {
        if !net::send(
            &mut ws,
            &json!({"type":"ready","capacity":self.spec.capacity}),
        )
        .await
        {
            return;
        }
        let shared = self.ctx.shared.clone();
        shared.agents_online.fetch_add(1, Ordering::Relaxed);
        self.ctx.board.set_online(self.spec.index, true);
        loop {
            let next = self.timers.keys().next().map(|k| k.0);
            let sleep_to = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        break;
                    }
                }
                _ = tokio::time::sleep_until(sleep_to), if next.is_some() => {
                    if let Some((_, action)) = self.timers.pop_first() {
                        if !self.act(&mut ws, action).await {
                            break;
                        }
                    }
                }
                incoming = net::recv(&mut ws) => match incoming {
                    Incoming::Frame(f) => self.on_frame(*f),
                    Incoming::Garbage => shared.tally().error("agent_bad_frame"),
                    Incoming::Closed => {
                        shared.tally().error("agent_disconnected");
                        break;
                    }
                },
            }
        }
        shared.agents_online.fetch_sub(1, Ordering::Relaxed);
        self.ctx.board.set_online(self.spec.index, false);
        self.chats.clear();
        self.timers.clear();
    }

    fn schedule(&mut self, action: Action) {
        let d = self.ctx.profile.agents.reply.sample(&mut self.rng);
        self.timer_seq += 1;
        self.timers
            .insert((Instant::now() + d, self.timer_seq), action);
    }

    async fn act(&mut self, ws: &mut Ws, action: Action) -> bool {
        match action {
            Action::Reply(session) => {
                let Some(chat) = self.chats.get_mut(&session) else {
                    return true;
                };
                chat.sent += 1;
                let last = chat.sent >= chat.to_send;
                self.next_msg += 1;
                let id = format!("{}-{}", self.spec.id, self.next_msg);
                let text = format!("您好，这边帮您查询一下（{}）", chat.sent);
                let at_us = now_us();
                self.unacked.insert(
                    id.clone(),
                    Sent {
                        at_us,
                        session: session.clone(),
                        node: self.spec.node,
                    },
                );
                let frame = json!({"type":"message","session":session,"id":id,"text":text});
                if !net::send(ws, &frame).await {
                    return false;
                }
                self.schedule(if last {
                    Action::Close(session)
                } else {
                    Action::Reply(session)
                });
                true
            }
            Action::Close(session) => {
                if self.chats.remove(&session).is_none() {
                    return true;
                }
                self.ctx.board.release(self.spec.index);
                net::send(ws, &json!({"type":"close","session":session})).await
            }
        }
    }

    fn on_frame(&mut self, f: Frame) {
        match f.kind.as_str() {
            "assigned" => {
                let Some(session) = f.session else { return };
                if self.chats.contains_key(&session) {
                    return;
                }
                let mut t = self.ctx.shared.tally();
                t.ledger.assigned_us.insert(session.clone(), now_us());
                drop(t);
                self.ctx.board.assign(self.spec.index, f.group.as_deref());
                let [lo, hi] = self.ctx.profile.agents.exchanges_per_chat;
                let to_send = self.rng.range_u64(lo.into(), hi.into()) as u32;
                self.chats
                    .insert(session.clone(), Chat { to_send, sent: 0 });
                self.schedule(Action::Reply(session));
            }
            "message" => {
                if let Some(id) = f.id {
                    *self
                        .ctx
                        .shared
                        .tally()
                        .ledger
                        .to_agent_seen
                        .entry(id)
                        .or_default() += 1;
                }
            }
            "ack" => {
                if let Some(sent) = f.id.and_then(|id| self.unacked.remove_entry(&id)) {
                    self.ctx
                        .shared
                        .tally()
                        .ledger
                        .agent_sent
                        .insert(sent.0, sent.1);
                }
            }
            "customer_left" => {
                if let Some(s) = f.session {
                    if self.chats.remove(&s).is_some() {
                        self.ctx.board.release(self.spec.index);
                    }
                }
            }
            "error" => {
                let code = f.code.unwrap_or_else(|| "error_without_code".into());
                self.ctx.shared.tally().error(&format!("agent:{code}"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(index: usize, groups: &[&str]) -> AgentSpec {
        AgentSpec {
            index,
            id: format!("a{index}"),
            token: String::new(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            capacity: 2,
            target: Target("127.0.0.1:1".parse().unwrap()),
            node: 0,
        }
    }

    #[test]
    fn least_loaded_assignments_keep_spread_at_one() {
        let specs = [spec(0, &["pre"]), spec(1, &["pre"]), spec(2, &["after"])];
        let b = Board::new(&specs);
        for i in 0..3 {
            b.set_online(i, true);
        }
        assert_eq!(b.assign(0, Some("pre")), 1);
        assert_eq!(b.assign(1, Some("pre")), 0);
        assert_eq!(b.assign(0, Some("pre")), 1);
        b.release(1);
        // Agent 1 has just freed its slot; while that settles it still counts as 1, not 0.
        assert_eq!(b.assign(0, Some("pre")), 2);
        assert_eq!(b.summary().spread_max, 2);
        b.lock().freed[1].clear();
        // Once settled, agent 1 has 0 and agent 0 has 3: assigning to 0 again is unfair (4 - 0).
        assert_eq!(b.assign(0, Some("pre")), 4);
        let s = b.summary();
        assert_eq!(s.spread_max, 4);
        assert_eq!(s.over_capacity, 2);
        assert_eq!(s.assignments, 5);
    }

    #[test]
    fn offline_agents_do_not_count_and_unknown_group_uses_agent_groups() {
        let specs = [spec(0, &["pre"]), spec(1, &["pre"])];
        let b = Board::new(&specs);
        b.set_online(0, true);
        assert_eq!(b.assign(0, None), 0);
        assert_eq!(b.assign(0, Some("nope")), 0);
    }
}
