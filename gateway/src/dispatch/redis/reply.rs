//! Decoding of script replies. Everything from Redis is checked: a malformed reply becomes
//! [`DispatchError::Protocol`], never a panic.

use crate::dispatch::{
    AgentStatus, AgentView, Assignment, Capacity, DispatchError, Enqueued, Requeued, Snapshot,
    Ticket,
};

/// `[status, result, assignments, tickets]` as the mutating scripts return it.
pub(super) struct Reply {
    status: String,
    pub result: Vec<String>,
    pub assignments: Vec<Assignment>,
    pub tickets: Vec<Ticket>,
}

pub(super) type RawReply = (String, Vec<String>, Vec<Vec<String>>, Vec<Vec<String>>);

fn bad(what: impl std::fmt::Display) -> DispatchError {
    DispatchError::Protocol(what.to_string())
}

fn int<T: std::str::FromStr>(field: &str, s: &str) -> Result<T, DispatchError> {
    s.parse()
        .map_err(|_| bad(format!("{field}: not a number: {s:?}")))
}

fn assignment(f: &[String]) -> Result<Assignment, DispatchError> {
    match f {
        [session, agent, group, customer_node, agent_node, waited] => Ok(Assignment {
            session: session.clone(),
            agent: agent.clone(),
            group: group.clone(),
            customer_node: customer_node.clone(),
            agent_node: agent_node.clone(),
            waited_ms: int("waited_ms", waited)?,
        }),
        _ => Err(bad(format!("assignment tuple {f:?}"))),
    }
}

fn ticket(f: &[String]) -> Result<Ticket, DispatchError> {
    match f {
        [session, group, priority, node, enqueued_at] => Ok(Ticket {
            session: session.clone(),
            group: group.clone(),
            priority: int("priority", priority)?,
            node: node.clone(),
            enqueued_at_ms: int("enqueued_at_ms", enqueued_at)?,
        }),
        _ => Err(bad(format!("ticket tuple {f:?}"))),
    }
}

impl Reply {
    pub(super) fn decode(raw: RawReply) -> Result<Self, DispatchError> {
        let (status, result, assignments, tickets) = raw;
        Ok(Self {
            status,
            result,
            assignments: assignments
                .iter()
                .map(|a| assignment(a))
                .collect::<Result<_, _>>()?,
            tickets: tickets
                .iter()
                .map(|t| ticket(t))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Maps a non-`ok` status to its error.
    pub(super) fn check(self, agent: &str, session: &str) -> Result<Self, DispatchError> {
        match self.status.as_str() {
            "ok" => Ok(self),
            "unknown_agent" => Err(DispatchError::UnknownAgent(agent.to_owned())),
            "unknown_session" => Err(DispatchError::UnknownSession(session.to_owned())),
            "agent_unavailable" => Err(DispatchError::AgentUnavailable(agent.to_owned())),
            "not_assigned" => Err(DispatchError::NotAssigned {
                session: session.to_owned(),
                agent: agent.to_owned(),
            }),
            other => Err(bad(format!("status {other:?}"))),
        }
    }

    pub(super) fn requeued(self) -> Requeued {
        Requeued {
            tickets: self.tickets,
            assignments: self.assignments,
        }
    }
}

/// `['a', <assignment>]` or `['q', group, position]`.
pub(super) fn parse_enqueued(r: &[String]) -> Result<Enqueued, DispatchError> {
    match r.split_first() {
        Some((tag, rest)) if tag == "a" => Ok(Enqueued::Assigned(assignment(rest)?)),
        Some((tag, [group, position])) if tag == "q" => Ok(Enqueued::Queued {
            group: group.clone(),
            position: int("position", position)?,
        }),
        _ => Err(bad(format!("enqueue result {r:?}"))),
    }
}

/// `['busy']`, `['unavailable']`, `['known', <enqueued>]` or `['a', <assignment>]`.
pub(super) fn parse_offered(r: &[String]) -> Result<crate::dispatch::Offered, DispatchError> {
    use crate::dispatch::Offered;
    match r.split_first() {
        Some((tag, [])) if tag == "busy" => Ok(Offered::Busy),
        Some((tag, [])) if tag == "unavailable" => Ok(Offered::Unavailable),
        Some((tag, rest)) if tag == "known" => parse_enqueued(rest).map(Offered::Known),
        _ => match parse_enqueued(r)? {
            Enqueued::Assigned(a) => Ok(Offered::Assigned(a)),
            Enqueued::Queued { .. } => Err(bad(format!("offer result {r:?}"))),
        },
    }
}

/// `[]` or `[group, position]`.
pub(super) fn parse_position(r: &[String]) -> Result<Option<(String, usize)>, DispatchError> {
    match r {
        [] => Ok(None),
        [group, position] => Ok(Some((group.clone(), int("position", position)?))),
        _ => Err(bad(format!("position {r:?}"))),
    }
}

/// `[name, number, name, number, …]` as the views return counts per group.
fn counts<T: std::str::FromStr, C: FromIterator<(String, T)>>(
    what: &str,
    flat: &[String],
) -> Result<C, DispatchError> {
    flat.chunks(2)
        .map(|pair| match pair {
            [name, n] => Ok((name.clone(), int(what, n)?)),
            _ => Err(bad(format!("odd list of {what}"))),
        })
        .collect()
}

/// `{ {group, len, ...}, {group, ready capacity, ...} }` from `view.lua capacity`.
pub(super) fn parse_capacity(
    (queues, ready): (Vec<String>, Vec<String>),
) -> Result<Capacity, DispatchError> {
    Ok(Capacity {
        queues: counts("queue length", &queues)?,
        ready: counts("ready capacity", &ready)?,
    })
}

/// `([group, len, …], [[id, status, node, cap, roster, groups_json, sessions…], …])`.
pub(super) fn parse_snapshot(
    (queues, agents): (Vec<String>, Vec<Vec<String>>),
) -> Result<Snapshot, DispatchError> {
    let mut snap = Snapshot {
        queues: counts("queue length", &queues)?,
        ..Snapshot::default()
    };
    for row in agents {
        let [id, status, node, cap, roster, groups, sessions @ ..] = row.as_slice() else {
            return Err(bad(format!("agent row {row:?}")));
        };
        let mut sessions = sessions.to_vec();
        sessions.sort();
        snap.agents.push(AgentView {
            id: id.clone(),
            groups: serde_json::from_str(groups).map_err(|e| bad(format!("groups: {e}")))?,
            status: AgentStatus::parse(status).ok_or_else(|| bad(format!("status {status:?}")))?,
            node: node.clone(),
            load: u32::try_from(sessions.len()).unwrap_or(u32::MAX),
            capacity: int("capacity", cap)?,
            roster_capacity: int("roster", roster)?,
            sessions,
        });
    }
    snap.agents.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(snap)
}
