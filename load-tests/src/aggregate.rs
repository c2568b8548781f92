//! Merging what the run's processes measured: ticks into the timeline, results into the report.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::metrics::{self, Counters, Hist, Ledger};
use crate::net::Target;
use crate::profile::Profile;
use crate::report::{Report, TimelinePoint};
use crate::tally::{Hists, Results, Tick};

#[derive(Default)]
struct Point {
    p: TimelinePoint,
    greeting: Hist,
    bot: Hist,
}

/// Merges ticks into the timeline and results into the report.
#[derive(Default)]
pub(crate) struct Aggregate {
    timeline: BTreeMap<u64, Point>,
    latest: HashMap<usize, Tick>,
    pub(crate) results: Vec<Results>,
}

impl Aggregate {
    pub(crate) fn tick(&mut self, src: usize, t: Tick) {
        let pt = self.timeline.entry(t.t_s).or_default();
        pt.p.t_s = t.t_s;
        pt.p.arrivals += t.arrivals;
        pt.p.active += t.active;
        pt.p.in_queue += t.in_queue;
        pt.p.agents_online += t.agents_online;
        pt.p.errors += t.errors;
        pt.p.connect_failures += t.connect_failures;
        pt.greeting.merge(&Hist::from_pairs(&t.greeting));
        pt.bot.merge(&Hist::from_pairs(&t.bot_answer));
        self.latest.insert(src, t);
    }

    pub(crate) fn progress(&self, t_s: u64) -> String {
        let sum = |f: fn(&Tick) -> u64| self.latest.values().map(f).sum::<u64>();
        let errors: u64 = self.timeline.values().map(|p| p.p.errors).sum();
        let fails: u64 = self.timeline.values().map(|p| p.p.connect_failures).sum();
        format!(
            "[{t_s:>5}s] sessions {} (+{}/s) active {} queue {} agents {} errors {errors} connect_failures {fails}",
            sum(|t| t.sessions),
            sum(|t| t.arrivals),
            sum(|t| t.active),
            sum(|t| t.in_queue),
            sum(|t| t.agents_online),
        )
    }

    pub(crate) fn report(
        &mut self,
        profile: &Profile,
        targets: &[Target],
        workers: u32,
        agents: u32,
        start_us: u64,
    ) -> Report {
        let mut counters = Counters::default();
        let mut errors = BTreeMap::new();
        let mut hists = Hists::default();
        let mut ledger = Ledger::default();
        for r in self.results.drain(..) {
            counters.add(&r.counters);
            metrics::add_errors(&mut errors, &r.errors);
            for (name, pairs) in &r.hists {
                if let Some(h) = hists.named_mut(name) {
                    h.merge(&Hist::from_pairs(pairs));
                }
            }
            ledger.merge(r.ledger);
        }
        let timeline: Vec<TimelinePoint> = self
            .timeline
            .values_mut()
            .map(|pt| {
                let q = |h: &Hist, x: f64| (!h.is_empty()).then(|| h.quantile_ms(x));
                pt.p.greeting_p50_ms = q(&pt.greeting, 0.5);
                pt.p.greeting_p99_ms = q(&pt.greeting, 0.99);
                pt.p.bot_answer_p99_ms = q(&pt.bot, 0.99);
                pt.p.clone()
            })
            .collect();
        let loss = ledger.loss();
        let relay = ledger.relay();
        let within =
            hists.greeting.ratio_within(Duration::from_secs(6)) * hists.greeting.len() as f64;
        let agent_delivered = ledger
            .agent_sent
            .keys()
            .filter(|id| ledger.agent_seen.contains_key(*id))
            .count() as u64;
        Report {
            profile: profile.name.clone(),
            targets: targets.iter().map(ToString::to_string).collect(),
            workers,
            agents,
            started_unix_ms: start_us / 1000,
            sessions: counters.sessions,
            peak_concurrent: timeline.iter().map(|p| p.active).max().unwrap_or(0),
            greeting_ms: hists.greeting.summary(),
            greeting_within_6s_ratio: if counters.sessions == 0 {
                0.0
            } else {
                (within.round() / counters.sessions as f64).min(1.0)
            },
            greeting_timeouts: counters.greeting_timeouts,
            bot_answer_ms: hists.bot_answer.summary(),
            ack_ms: hists.ack.summary(),
            queue_wait_ms: hists.queue_wait.summary(),
            assign_ms: ledger.assign().summary(),
            relay_ms: relay.all.summary(),
            relay_same_node_ms: relay.same_node.summary(),
            relay_cross_node_ms: relay.cross_node.summary(),
            agent_first_reply_ms: hists.agent_first_reply.summary(),
            resume_ms: hists.resume.summary(),
            failover_resume_ms: hists.failover_resume.summary(),
            agent_failover_ms: hists.agent_failover.summary(),
            sessions_lost: counters.sessions_lost,
            load_lag_ms: hists.lag.summary(),
            max_queue_len: timeline
                .iter()
                .map(|p| p.in_queue)
                .max()
                .unwrap_or(0)
                .max(counters.max_queue_position),
            messages_sent: counters.customer_messages + ledger.agent_sent.len() as u64,
            messages_delivered: counters.customer_acked + agent_delivered,
            lost_messages: loss.lost(),
            duplicate_messages: loss.duplicated(),
            loss,
            lost_examples: ledger.lost_examples(20),
            errors,
            connect_failures: counters.connect_failures,
            counters,
            timeline,
            ..Report::default()
        }
    }
}
