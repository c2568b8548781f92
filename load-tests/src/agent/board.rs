//! The [`Board`]: one view of every agent's load, to judge the gateway's routing.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::AgentSpec;

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

    /// Marks an agent connected or not. Its load stays: an agent whose socket was lost keeps
    /// its chats through the gateway's grace period and gets them back on reconnecting.
    pub fn set_online(&self, agent: usize, online: bool) {
        let mut b = self.lock();
        if let Some(o) = b.online.get_mut(agent) {
            *o = online;
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
