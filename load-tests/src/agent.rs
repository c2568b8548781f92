//! Simulated agents: connect with a token, say `ready`, and work the chats they are assigned.
//!
//! Agents run in the parent process (at most a few hundred), so one [`Board`] sees every agent's
//! load and can judge the routing: at each assignment it compares the chosen agent's load with
//! the least-loaded ready agent of the same group.
//!
//! An agent whose socket is lost reconnects through the [`crate::balancer`] with its `last_seq` and
//! keeps its chats: the gateway either replays what it missed (same node) or starts it over
//! with `welcome` and one `assigned` with `"resumed": true` and the full history per chat it
//! still holds (another node). Either way the agent goes on serving those chats.

mod board;
mod conn;

pub use board::{Board, BoardSummary};
pub use conn::run;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Sent;
use crate::net::Target;
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
    /// The node it connects to first (index into the run's targets).
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
                node: (index % targets.len().max(1)) as u32,
            });
        }
    }
    out
}

/// What every agent shares.
pub struct AgentCtx {
    pub profile: Arc<Profile>,
    /// Every node, for failing over.
    pub targets: Vec<Target>,
    pub shared: Arc<Shared>,
    pub board: Arc<Board>,
    pub seed: u64,
}

#[derive(Debug, Clone)]
enum Action {
    Reply(String),
    Close(String),
    /// Re-send what the previous socket left unacknowledged (see [`RESEND_AFTER`]).
    Resend,
}

/// After a reconnect, unacknowledged messages of a chat are re-sent when its `assigned`
/// (resumed) arrives, and all that are left this long after the upgrade: on the same node
/// the replay needs no `assigned`, and the gateway deduplicates by id.
const RESEND_AFTER: Duration = Duration::from_millis(500);

struct Chat {
    to_send: u32,
    sent: u32,
    /// Customer message ids this agent has received in the chat, live or in a history: a
    /// resumed history counts only the ones not seen before.
    seen: HashSet<String>,
}

impl Chat {
    fn new(to_send: u32) -> Chat {
        Chat {
            to_send,
            sent: 0,
            seen: HashSet::new(),
        }
    }
}

/// A message the gateway has not acknowledged yet.
struct Unacked {
    sent: Sent,
    text: String,
    /// The connection it was last sent on.
    conn: u64,
}

struct Agent {
    ctx: Arc<AgentCtx>,
    spec: AgentSpec,
    rng: Rng,
    chats: HashMap<String, Chat>,
    timers: BTreeMap<(Instant, u64), Action>,
    timer_seq: u64,
    next_msg: u64,
    unacked: HashMap<String, Unacked>,
    /// The node currently connected to, and the highest `seq` seen (for `?last_seq=`).
    node: usize,
    last_seq: u64,
    /// Connections made so far.
    conn: u64,
    /// A failover socket waiting for its first frame: when the old one was lost.
    lost_at: Option<Instant>,
    /// Customer message ids this agent got live, and in a resumed history (across chats: a
    /// chat it dropped and got back is the same chat). A message counts as delivered once;
    /// only a second live copy is a duplicate (a console keys its lines by id).
    given_live: HashSet<String>,
    given_history: HashSet<String>,
}
