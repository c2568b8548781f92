//! One process's running totals, and the two messages it sends to the parent: a [`Tick`] every
//! second (progress and the timeline) and a [`Results`] at the end.
//!
//! A single mutex guards the tally: events arrive at a few thousand per second at most and each
//! update is a handful of additions, so a lock is cheaper than the machinery to avoid it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{Counters, Hist, Ledger};

/// Latency histograms measured where they happen.
#[derive(Debug, Clone, Default)]
pub struct Hists {
    pub greeting: Hist,
    pub bot_answer: Hist,
    pub ack: Hist,
    pub queue_wait: Hist,
    pub agent_first_reply: Hist,
    pub resume: Hist,
    /// Customer sockets lost to a fault: lost -> resumed on a live node (see
    /// `Report::failover_resume_ms` for where the clock stops).
    pub failover_resume: Hist,
    /// Agent sockets lost to a fault: lost -> the first frame on the new socket.
    pub agent_failover: Hist,
    /// How late a 10 ms timer of the load process fires: the generator's own scheduling
    /// delay, which every latency it measures includes.
    pub lag: Hist,
}

impl Hists {
    pub fn named(&self) -> [(&'static str, &Hist); 9] {
        [
            ("greeting_ms", &self.greeting),
            ("bot_answer_ms", &self.bot_answer),
            ("ack_ms", &self.ack),
            ("queue_wait_ms", &self.queue_wait),
            ("agent_first_reply_ms", &self.agent_first_reply),
            ("resume_ms", &self.resume),
            ("failover_resume_ms", &self.failover_resume),
            ("agent_failover_ms", &self.agent_failover),
            ("load_lag_ms", &self.lag),
        ]
    }

    pub fn named_mut(&mut self, name: &str) -> Option<&mut Hist> {
        Some(match name {
            "greeting_ms" => &mut self.greeting,
            "bot_answer_ms" => &mut self.bot_answer,
            "ack_ms" => &mut self.ack,
            "queue_wait_ms" => &mut self.queue_wait,
            "agent_first_reply_ms" => &mut self.agent_first_reply,
            "resume_ms" => &mut self.resume,
            "failover_resume_ms" => &mut self.failover_resume,
            "agent_failover_ms" => &mut self.agent_failover,
            "load_lag_ms" => &mut self.lag,
            _ => return None,
        })
    }
}

/// What happened in the current second, for the timeline.
#[derive(Debug, Default)]
struct Window {
    arrivals: u64,
    greeting: Hist,
    bot_answer: Hist,
    errors: u64,
    connect_failures: u64,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub counters: Counters,
    pub errors: BTreeMap<String, u64>,
    pub hists: Hists,
    pub ledger: Ledger,
    /// Returning customers (identity `sub`) → the agent name of their last chat in this run.
    pub last_agent: std::collections::HashMap<String, String>,
    window: Window,
}

impl Tally {
    pub fn arrival(&mut self) {
        self.counters.sessions += 1;
        self.window.arrivals += 1;
    }
    pub fn greeting(&mut self, d: Duration) {
        self.counters.greetings += 1;
        self.hists.greeting.record(d);
        self.window.greeting.record(d);
    }
    pub fn bot_answer(&mut self, d: Duration) {
        self.hists.bot_answer.record(d);
        self.window.bot_answer.record(d);
    }
    pub fn error(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
        self.window.errors += 1;
    }
    pub fn connect_failure(&mut self) {
        self.counters.connect_failures += 1;
        self.window.connect_failures += 1;
    }
}

/// State shared by every simulated client in one process.
#[derive(Debug, Default)]
pub struct Shared {
    tally: Mutex<Tally>,
    /// Customer sessions currently open.
    pub active: AtomicU64,
    /// Customers between `handoff`/`queued` and `agent_joined`.
    pub in_queue: AtomicI64,
    /// Agents currently connected.
    pub agents_online: AtomicU64,
}

impl Shared {
    /// The tally; a panic elsewhere while holding it leaves numbers that are still worth reporting.
    pub fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the current second and returns its tick.
    pub fn tick(&self, t_s: u64) -> Tick {
        let mut t = self.tally();
        let w = std::mem::take(&mut t.window);
        Tick {
            t_s,
            arrivals: w.arrivals,
            sessions: t.counters.sessions,
            active: self.active.load(Ordering::Relaxed),
            in_queue: self.in_queue.load(Ordering::Relaxed).max(0) as u64,
            agents_online: self.agents_online.load(Ordering::Relaxed),
            errors: w.errors,
            connect_failures: w.connect_failures,
            greeting: w.greeting.to_pairs(),
            bot_answer: w.bot_answer.to_pairs(),
        }
    }

    pub fn results(&self) -> Results {
        let t = self.tally();
        Results {
            counters: t.counters.clone(),
            errors: t.errors.clone(),
            hists: t
                .hists
                .named()
                .iter()
                .map(|(n, h)| ((*n).to_owned(), h.to_pairs()))
                .collect(),
            ledger: t.ledger.clone(),
        }
    }
}

/// One second of one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tick {
    /// Whole seconds since the run's start.
    pub t_s: u64,
    pub arrivals: u64,
    /// Sessions started so far (cumulative).
    pub sessions: u64,
    pub active: u64,
    pub in_queue: u64,
    pub agents_online: u64,
    pub errors: u64,
    pub connect_failures: u64,
    pub greeting: Vec<(u64, u64)>,
    pub bot_answer: Vec<(u64, u64)>,
}

/// A process's totals at the end of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub counters: Counters,
    pub errors: BTreeMap<String, u64>,
    pub hists: BTreeMap<String, Vec<(u64, u64)>>,
    pub ledger: Ledger,
}

/// A line a worker writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerLine {
    Tick(Tick),
    Done(Box<Results>),
}
