//! Measurements: latency histograms, counters, and the message ledger used for loss and
//! duplicate accounting.
//!
//! Everything here is mergeable, because one run is measured by several processes (the parent
//! with the agents, workers with the customers): histograms travel as `(value, count)` pairs of
//! their recorded buckets, the ledger as message ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch: the one clock every process of a run shares.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Highest latency a histogram records (one hour); larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        // The bounds are constants that hdrhistogram accepts; a failure here is a programming error.
        #[allow(clippy::expect_used)]
        let h = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds");
        Hist(h)
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros() as u64);
    }

    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_US));
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn merge(&mut self, other: &Hist) {
        for (v, c) in other.to_pairs() {
            self.0.saturating_record_n(v.clamp(1, MAX_US), c);
        }
    }

    /// Recorded buckets as `(value_us, count)`, the wire form between processes.
    pub fn to_pairs(&self) -> Vec<(u64, u64)> {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    pub fn from_pairs(pairs: &[(u64, u64)]) -> Hist {
        let mut h = Hist::new();
        for &(v, c) in pairs {
            h.0.saturating_record_n(v.clamp(1, MAX_US), c);
        }
        h
    }

    /// Value at quantile `q` in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// Share of samples at or below `limit`.
    pub fn ratio_within(&self, limit: Duration) -> f64 {
        if self.0.is_empty() {
            return 1.0;
        }
        let limit = limit.as_micros() as u64;
        let within: u64 = self
            .0
            .iter_recorded()
            .filter(|v| v.value_iterated_to() <= limit)
            .map(|v| v.count_at_value())
            .sum();
        within as f64 / self.0.len() as f64
    }

    pub fn summary(&self) -> Latency {
        if self.0.is_empty() {
            return Latency::default();
        }
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        Latency {
            count: self.0.len(),
            p50: r(self.quantile_ms(0.50)),
            p90: r(self.quantile_ms(0.90)),
            p99: r(self.quantile_ms(0.99)),
            max: r(self.0.max() as f64 / 1000.0),
            mean: r(self.0.mean() / 1000.0),
        }
    }
}

/// A latency summary in milliseconds as it appears in the report.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Counters one process keeps; summed across processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    pub sessions: u64,
    pub connect_failures: u64,
    pub greetings: u64,
    pub greeting_timeouts: u64,
    /// Customer `message` frames sent (first sends only, not re-sends after a resume).
    pub customer_messages: u64,
    pub customer_acked: u64,
    pub customer_resends: u64,
    pub duplicate_acks: u64,
    pub bot_answers: u64,
    pub bot_suggestions: u64,
    pub bot_no_reply: u64,
    pub handoffs: u64,
    pub agent_joined: u64,
    pub abandoned_in_queue: u64,
    pub drops: u64,
    pub resumes: u64,
    pub resume_failures: u64,
    pub surveys_answered: u64,
    pub closed_by_agent: u64,
    pub cut_at_deadline: u64,
    pub max_queue_position: u64,
    /// Chats a survey answer of 4 or 5 reopened as a complaint.
    #[serde(default)]
    pub reopened_as_complaint: u64,
    /// Agent greetings the gateway sent for agents who had not written within 6 s.
    #[serde(default)]
    pub auto_greetings: u64,
    /// Sessions a fault cost: the resume was refused (`session_expired`/`session_unknown`,
    /// then a new greeting) or the chat was closed with `shutting_down`.
    #[serde(default)]
    pub sessions_lost: u64,
    /// Customer sockets lost without a `closed` (a fault, a `reconnect` frame, close 1012) and
    /// reconnected through the balancer; and those that found no live node in time.
    #[serde(default)]
    pub failover_reconnects: u64,
    #[serde(default)]
    pub failover_failures: u64,
    /// `reconnect` frames received (the gateway announcing a graceful stop).
    #[serde(default)]
    pub reconnect_frames: u64,
    /// Frames replayed at or below the `last_seq` the client resumed from: the gateway broke
    /// the replay contract; ignored as a widget keyed by seq would, and counted here.
    #[serde(default)]
    pub stale_frames: u64,
    /// Agent sockets lost and reconnected through the balancer.
    #[serde(default)]
    pub agent_failovers: u64,
    /// Identified returning customers who reached a person after an earlier chat with one in
    /// this run (issue #17), and how many of them got that same agent again.
    #[serde(default)]
    pub returning_served: u64,
    #[serde(default)]
    pub reached_last_agent: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.sessions += o.sessions;
        self.connect_failures += o.connect_failures;
        self.greetings += o.greetings;
        self.greeting_timeouts += o.greeting_timeouts;
        self.customer_messages += o.customer_messages;
        self.customer_acked += o.customer_acked;
        self.customer_resends += o.customer_resends;
        self.duplicate_acks += o.duplicate_acks;
        self.bot_answers += o.bot_answers;
        self.bot_suggestions += o.bot_suggestions;
        self.bot_no_reply += o.bot_no_reply;
        self.handoffs += o.handoffs;
        self.agent_joined += o.agent_joined;
        self.abandoned_in_queue += o.abandoned_in_queue;
        self.drops += o.drops;
        self.resumes += o.resumes;
        self.resume_failures += o.resume_failures;
        self.surveys_answered += o.surveys_answered;
        self.closed_by_agent += o.closed_by_agent;
        self.cut_at_deadline += o.cut_at_deadline;
        self.max_queue_position = self.max_queue_position.max(o.max_queue_position);
        self.reopened_as_complaint += o.reopened_as_complaint;
        self.auto_greetings += o.auto_greetings;
        self.sessions_lost += o.sessions_lost;
        self.failover_reconnects += o.failover_reconnects;
        self.failover_failures += o.failover_failures;
        self.reconnect_frames += o.reconnect_frames;
        self.stale_frames += o.stale_frames;
        self.agent_failovers += o.agent_failovers;
        self.returning_served += o.returning_served;
        self.reached_last_agent += o.reached_last_agent;
    }
}

/// How long before a customer's `close` an agent message may still cross it unseen: the
/// agent's node acknowledges at once and relays after, so the two can pass each other.
pub const LEAVE_RACE_US: u64 = 2_000_000;

/// An agent message as a customer saw it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Seen {
    pub count: u32,
    pub first_us: u64,
    /// When the connection that first carried it was established; a message the agent sent
    /// before that was replayed after a resume and is left out of the relay latency.
    pub conn_us: u64,
    /// The customer's gateway node (index into the run's targets).
    #[serde(default)]
    pub node: u32,
}

/// An agent message the gateway acknowledged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sent {
    pub at_us: u64,
    pub session: String,
    /// The agent's gateway node (index into the run's targets).
    #[serde(default)]
    pub node: u32,
}

/// Message ids for loss and duplicate accounting across processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// Agent messages the gateway acknowledged to the agent: id -> send time and session.
    pub agent_sent: HashMap<String, Sent>,
    /// Sessions the run's deadline cut short: what was sent to them is not judged.
    pub cut_sessions: HashSet<String>,
    /// Sessions whose customer closed while queued or with an agent -> when. An agent message
    /// sent within [`LEAVE_RACE_US`] before that (or after) may cross the customer's `close`
    /// and have nobody to reach; anything sent earlier must have arrived.
    #[serde(default)]
    pub left_sessions: HashMap<String, u64>,
    /// Agent messages customers received: id -> how often and when.
    pub agent_seen: HashMap<String, Seen>,
    /// Customer messages acknowledged while an agent was in the chat (must reach that agent).
    pub to_agent_acked: HashSet<String>,
    /// Customer message ids agents received: id -> how often.
    pub to_agent_seen: HashMap<String, u32>,
    /// Customer messages never acknowledged by the end of their session.
    pub customer_unacked: u64,
    /// Human requests: session id -> request time (customer side).
    pub requested_us: HashMap<String, u64>,
    /// Assignments: session id -> `assigned` time (agent side).
    pub assigned_us: HashMap<String, u64>,
}

/// Relay latencies, split by whether the message crossed gateway nodes.
#[derive(Debug, Clone, Default)]
pub struct Relay {
    pub all: Hist,
    pub same_node: Hist,
    pub cross_node: Hist,
}

/// The outcome of joining what was sent with what arrived.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Loss {
    pub agent_to_customer_lost: u64,
    /// Not received, but sent as the customer was leaving (not counted as lost).
    #[serde(default)]
    pub agent_to_customer_crossed_close: u64,
    pub agent_to_customer_duplicated: u64,
    pub customer_to_agent_lost: u64,
    pub customer_to_agent_duplicated: u64,
    pub customer_unacked: u64,
}

/// A message counted as lost, for the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LostMessage {
    pub direction: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_unix_us: Option<u64>,
}

impl Loss {
    pub fn lost(&self) -> u64 {
        self.agent_to_customer_lost + self.customer_to_agent_lost + self.customer_unacked
    }
    pub fn duplicated(&self) -> u64 {
        self.agent_to_customer_duplicated + self.customer_to_agent_duplicated
    }
}

impl Ledger {
    pub fn merge(&mut self, o: Ledger) {
        self.agent_sent.extend(o.agent_sent);
        self.cut_sessions.extend(o.cut_sessions);
        self.left_sessions.extend(o.left_sessions);
        for (id, s) in o.agent_seen {
            let e = self.agent_seen.entry(id).or_default();
            if e.count == 0 || s.first_us < e.first_us {
                e.first_us = s.first_us;
                e.conn_us = s.conn_us;
            }
            e.count += s.count;
        }
        self.to_agent_acked.extend(o.to_agent_acked);
        for (id, n) in o.to_agent_seen {
            *self.to_agent_seen.entry(id).or_default() += n;
        }
        self.customer_unacked += o.customer_unacked;
        self.requested_us.extend(o.requested_us);
        self.assigned_us.extend(o.assigned_us);
    }

    /// Whether `sent` went out so close to (or after) its customer leaving that it may have
    /// crossed the `close`.
    fn crossed_leave(&self, sent: &Sent) -> bool {
        self.left_sessions
            .get(&sent.session)
            .is_some_and(|&left| sent.at_us + LEAVE_RACE_US >= left)
    }

    fn was_seen(&self, id: &str) -> bool {
        self.agent_seen.get(id).is_some_and(|s| s.count > 0)
    }

    /// Agent messages the gateway acknowledged that their customer should have received
    /// and did not.
    fn unseen_agent_messages(&self) -> impl Iterator<Item = (&String, &Sent)> {
        self.agent_sent.iter().filter(|(id, s)| {
            !self.cut_sessions.contains(&s.session) && !self.crossed_leave(s) && !self.was_seen(id)
        })
    }

    /// Lost = sent and acknowledged but never received; duplicated = every receipt after the first.
    pub fn loss(&self) -> Loss {
        let dup =
            |m: &mut dyn Iterator<Item = u32>| m.map(|n| u64::from(n.saturating_sub(1))).sum();
        Loss {
            agent_to_customer_lost: self.unseen_agent_messages().count() as u64,
            agent_to_customer_crossed_close: self
                .agent_sent
                .iter()
                .filter(|(id, s)| self.crossed_leave(s) && !self.was_seen(id))
                .count() as u64,
            agent_to_customer_duplicated: dup(&mut self.agent_seen.values().map(|s| s.count)),
            customer_to_agent_lost: self
                .to_agent_acked
                .iter()
                .filter(|id| !self.to_agent_seen.contains_key(*id))
                .count() as u64,
            customer_to_agent_duplicated: dup(&mut self.to_agent_seen.values().copied()),
            customer_unacked: self.customer_unacked,
        }
    }

    /// Up to `n` lost messages, oldest first, so a failed run says where to look in the
    /// gateway's logs.
    pub fn lost_examples(&self, n: usize) -> Vec<LostMessage> {
        let mut out: Vec<LostMessage> = self
            .unseen_agent_messages()
            .map(|(id, s)| LostMessage {
                direction: "agent_to_customer".into(),
                id: id.clone(),
                session: Some(s.session.clone()),
                sent_unix_us: Some(s.at_us),
            })
            .collect();
        out.sort_by_key(|m| m.sent_unix_us);
        let mut to_agent: Vec<&String> = self
            .to_agent_acked
            .iter()
            .filter(|id| !self.to_agent_seen.contains_key(*id))
            .collect();
        to_agent.sort();
        out.extend(to_agent.into_iter().map(|id| LostMessage {
            direction: "customer_to_agent".into(),
            id: id.clone(),
            session: None,
            sent_unix_us: None,
        }));
        out.truncate(n);
        out
    }

    /// Agent send -> customer receipt, for messages delivered live (not replayed on a resume):
    /// all of them, those where agent and customer were on the same node, and those relayed
    /// from one node to another.
    pub fn relay(&self) -> Relay {
        let mut r = Relay::default();
        for (id, sent) in &self.agent_sent {
            if let Some(s) = self.agent_seen.get(id) {
                if s.count > 0 && sent.at_us >= s.conn_us {
                    let us = s.first_us.saturating_sub(sent.at_us);
                    r.all.record_us(us);
                    if s.node == sent.node {
                        r.same_node.record_us(us);
                    } else {
                        r.cross_node.record_us(us);
                    }
                }
            }
        }
        r
    }

    /// Customer's human request -> `assigned` at the agent.
    pub fn assign(&self) -> Hist {
        let mut h = Hist::new();
        for (session, req) in &self.requested_us {
            if let Some(at) = self.assigned_us.get(session) {
                h.record_us(at.saturating_sub(*req));
            }
        }
        h
    }
}

/// Error frames by code, merged across processes.
pub fn add_errors(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let mut h = Hist::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 500.0).abs() <= 0.5, "{s:?}");
        assert!((s.p99 - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() <= 1.0, "{s:?}");
        assert!((h.ratio_within(Duration::from_millis(100)) - 0.1).abs() < 0.002);
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        let h = Hist::new();
        assert_eq!(h.summary(), Latency::default());
        assert_eq!(h.ratio_within(Duration::from_secs(6)), 1.0);
    }

    #[test]
    fn pairs_round_trip_and_merge() {
        let mut a = Hist::new();
        let mut b = Hist::new();
        for us in [10, 20, 20, 5_000_000] {
            a.record_us(us);
        }
        b.record_us(300);
        let mut m = Hist::from_pairs(&a.to_pairs());
        m.merge(&b);
        assert_eq!(m.len(), 5);
        assert_eq!(m.summary().max, a.summary().max);
        assert!((m.quantile_ms(0.5) - 0.02).abs() < 0.001);
    }

    fn seen(count: u32, first_us: u64, conn_us: u64) -> Seen {
        Seen {
            count,
            first_us,
            conn_us,
            node: 0,
        }
    }

    fn sent(at_us: u64) -> Sent {
        Sent {
            at_us,
            session: "s".into(),
            node: 0,
        }
    }

    #[test]
    fn loss_and_duplicates_are_counted_by_id() {
        let mut l = Ledger::default();
        l.agent_sent.insert("a1".into(), sent(100));
        l.agent_sent.insert("a2".into(), sent(100));
        l.agent_sent.insert("a3".into(), sent(100));
        l.agent_seen.insert("a1".into(), seen(1, 150, 0));
        l.agent_seen.insert("a2".into(), seen(2, 400, 0));
        l.to_agent_acked.insert("c1".into());
        l.to_agent_acked.insert("c2".into());
        l.to_agent_seen.insert("c1".into(), 1);
        l.customer_unacked = 1;
        let loss = l.loss();
        assert_eq!(loss.agent_to_customer_lost, 1); // a3
        assert_eq!(loss.agent_to_customer_duplicated, 1); // a2 twice
        assert_eq!(loss.customer_to_agent_lost, 1); // c2
        assert_eq!(loss.lost(), 3);
        assert_eq!(loss.duplicated(), 1);
        let examples = l.lost_examples(10);
        let ids: Vec<&str> = examples.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a3", "c2"]);
        assert_eq!(l.lost_examples(1).len(), 1);
    }

    #[test]
    fn ledgers_from_two_processes_merge_before_accounting() {
        // The agent (parent) sent; the customer (a worker) received across a resume: the
        // message is neither lost nor duplicated, and the replayed copy is not a relay sample.
        let mut parent = Ledger::default();
        parent.agent_sent.insert("a9".into(), sent(1_000));
        parent.agent_sent.insert("a10".into(), sent(5_000));
        let mut worker = Ledger::default();
        worker.agent_seen.insert("a9".into(), seen(1, 9_000, 8_000)); // replayed after resume
        worker
            .agent_seen
            .insert("a10".into(), seen(1, 5_700, 8_000 - 8_000));
        parent.merge(worker);
        assert_eq!(parent.loss(), Loss::default());
        let relay = parent.relay().all;
        assert_eq!(relay.len(), 1);
        assert!((relay.quantile_ms(0.5) - 0.7).abs() < 0.01);
    }

    #[test]
    fn same_id_seen_by_two_workers_is_a_duplicate() {
        let mut a = Ledger::default();
        a.agent_sent.insert("x".into(), sent(1));
        let mut w1 = Ledger::default();
        w1.agent_seen.insert("x".into(), seen(1, 10, 0));
        let mut w2 = Ledger::default();
        w2.agent_seen.insert("x".into(), seen(1, 5, 0));
        a.merge(w1);
        a.merge(w2);
        assert_eq!(a.loss().agent_to_customer_duplicated, 1);
        assert_eq!(a.agent_seen["x"].first_us, 5);
    }

    #[test]
    fn messages_to_sessions_cut_by_the_deadline_are_not_lost() {
        let mut l = Ledger::default();
        l.agent_sent.insert(
            "late".into(),
            Sent {
                at_us: 1,
                session: "cut".into(),
                node: 0,
            },
        );
        l.cut_sessions.insert("cut".into());
        assert_eq!(l.loss().lost(), 0);
    }

    #[test]
    fn relay_is_split_by_node() {
        let mut l = Ledger::default();
        for (id, agent_node, customer_node, delay) in
            [("x", 0, 0, 1_000), ("y", 1, 0, 5_000), ("z", 2, 2, 2_000)]
        {
            l.agent_sent.insert(
                id.into(),
                Sent {
                    at_us: 10,
                    session: "s".into(),
                    node: agent_node,
                },
            );
            let mut s = seen(1, 10 + delay, 0);
            s.node = customer_node;
            l.agent_seen.insert(id.into(), s);
        }
        let r = l.relay();
        assert_eq!(
            (r.all.len(), r.same_node.len(), r.cross_node.len()),
            (3, 2, 1)
        );
        assert!((r.cross_node.quantile_ms(1.0) - 5.0).abs() < 0.01);
    }

    #[test]
    fn only_messages_crossing_the_customers_close_are_excused() {
        let mut l = Ledger::default();
        let left = 10_000_000;
        l.left_sessions.insert("s".into(), left);
        l.agent_sent
            .insert("early".into(), sent(left - LEAVE_RACE_US - 1));
        l.agent_sent.insert("crossing".into(), sent(left - 500_000));
        l.agent_sent.insert("after".into(), sent(left + 1));
        let lost: Vec<String> = l.lost_examples(10).into_iter().map(|m| m.id).collect();
        assert_eq!(lost, ["early"]);
        assert_eq!(l.loss().agent_to_customer_lost, 1);
        assert_eq!(l.loss().agent_to_customer_crossed_close, 2);
    }

    #[test]
    fn assign_latency_joins_sessions() {
        let mut l = Ledger::default();
        l.requested_us.insert("s1".into(), 1_000);
        l.requested_us.insert("s2".into(), 1_000); // never assigned (abandoned)
        l.assigned_us.insert("s1".into(), 4_000);
        let h = l.assign();
        assert_eq!(h.len(), 1);
        assert!((h.quantile_ms(0.5) - 3.0).abs() < 0.01);
    }
}
