//! The relay's handle: the narrow set of parts routing works with (the dispatcher, the bus,
//! this node's sessions and agents, the log, the recorder, the customer's past), so that
//! neither socket module nor the HTTP layer is needed to hand off, assign or relay, and
//! routing can be built and driven on its own.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex, RwLock};

use crate::agents::Agents;
use crate::config::RoutingSettings;
use crate::continuity::Past;
use crate::dispatch::Dispatcher;
use crate::journal::Journal;
use crate::records::Recorder;
use crate::roster::RosterStore;
use crate::session::Sessions;

use super::Bus;

/// Cheap to clone: one per node, shared by every connection and chore.
#[derive(Clone)]
pub struct Relay(Arc<Parts>);

/// What a [`Relay`] is made of.
pub struct Parts {
    pub node_id: String,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub bus: Bus,
    pub sessions: Arc<Sessions>,
    pub agents: Arc<Agents>,
    pub journal: Journal,
    pub roster: Arc<RosterStore>,
    pub recorder: Recorder,
    pub past: Past,
    pub routing: RoutingSettings,
    /// `dispatch.agent_grace_ms`: how long a gone agent's chats wait before they are requeued.
    pub agent_grace_ms: u64,
    /// Capacity of ready agents per group, refreshed every second (for estimated waits).
    pub capacity: Capacity,
    /// Sessions whose customer may be waiting for their agent's reply (for the SLA check).
    pub awaiting: Awaiting,
}

/// Ids of sessions whose customer wrote to their agent and may still wait for the reply:
/// what the once-a-second SLA check visits instead of every session of the node. An entry
/// stays until a check finds the wait over (answered, warned, chat gone), so the set holds
/// at most the node's sessions with an agent plus those that ended since the last check.
#[derive(Default)]
pub struct Awaiting(Mutex<HashSet<Arc<str>>>);

impl Awaiting {
    /// `session`'s customer waits for the reply (again).
    pub fn insert(&self, session: Arc<str>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session);
    }

    /// Every entry, leaving the set empty.
    pub(super) fn take(&self) -> HashSet<Arc<str>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Ready capacity per group, as of the last routing tick (empty at first).
#[derive(Default)]
pub struct Capacity(RwLock<HashMap<String, u32>>);

impl Relay {
    pub fn new(parts: Parts) -> Self {
        Relay(Arc::new(parts))
    }
}

impl Deref for Relay {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Parts {
    /// The roster name of an agent (its id if unknown).
    pub fn agent_name(&self, id: &str) -> String {
        self.roster.name_of(id)
    }

    /// Capacity of the ready agents of `group`, as of the last routing tick.
    pub fn group_capacity(&self, group: &str) -> u32 {
        self.capacity
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn set_capacity(&self, capacity: HashMap<String, u32>) {
        *self.capacity.0.write().unwrap_or_else(|e| e.into_inner()) = capacity;
    }
}
