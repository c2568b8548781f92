//! The run report: JSON for machines, a printed summary for people, and the SLO verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::faults::FaultRecord;
use crate::metrics::{Counters, Latency, Loss, LostMessage};
use crate::profile::Slo;

/// One second of the whole run (all processes summed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelinePoint {
    pub t_s: u64,
    pub arrivals: u64,
    pub active: u64,
    pub in_queue: u64,
    pub agents_online: u64,
    pub errors: u64,
    pub connect_failures: u64,
    pub greeting_p50_ms: Option<f64>,
    pub greeting_p99_ms: Option<f64>,
    pub bot_answer_p99_ms: Option<f64>,
}

/// One SLO line: the threshold, what was measured, and whether it passed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SloCheck {
    pub name: String,
    pub threshold: f64,
    pub actual: Option<f64>,
    pub pass: bool,
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub profile: String,
    pub targets: Vec<String>,
    pub workers: u32,
    pub agents: u32,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub sessions: u64,
    pub peak_concurrent: u64,
    pub greeting_ms: Latency,
    pub greeting_within_6s_ratio: f64,
    pub greeting_timeouts: u64,
    pub bot_answer_ms: Latency,
    pub ack_ms: Latency,
    pub queue_wait_ms: Latency,
    pub assign_ms: Latency,
    pub relay_ms: Latency,
    /// Agent and customer on the same gateway node.
    pub relay_same_node_ms: Latency,
    /// Agent and customer on different nodes (relayed through Redis).
    pub relay_cross_node_ms: Latency,
    pub agent_first_reply_ms: Latency,
    pub resume_ms: Latency,
    /// Faults injected during the run (`--fault`, `[faults]`), one record per node touched.
    pub faults: Vec<FaultRecord>,
    /// Customers who had to start a new session because of a fault: a resume answered with
    /// `session_expired`/`session_unknown` (and a new greeting), or a chat closed with
    /// `shutting_down`. Counted per lost session.
    pub sessions_lost: u64,
    /// Per customer reconnect caused by a fault (a socket error, a close without `closed`,
    /// close code 1012, or a `reconnect` frame): from the moment the socket was lost to the
    /// moment the session is known to be resumed on a live node. The clock stops at the first
    /// frame on the new socket if it is not an error notice (a resume the gateway refuses is
    /// not a sample: it is in `sessions_lost`); if no frame comes within 300 ms of the upgrade
    /// (nothing was missed, nothing to replay) the resume counts as done at the upgrade.
    pub failover_resume_ms: Latency,
    /// The same for agents: socket lost to the first frame on the new socket.
    pub agent_failover_ms: Latency,
    /// How late the customer processes' 10 ms timers fired: the load generator's own
    /// scheduling delay, part of every latency above (it shares the machine's cores).
    #[serde(default)]
    pub load_lag_ms: Latency,
    pub max_queue_len: u64,
    pub agent_load_spread_max: u64,
    pub agent_over_capacity: u64,
    pub assignments: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub lost_messages: u64,
    pub duplicate_messages: u64,
    pub loss: Loss,
    /// The first lost messages (at most 20), to look up in the gateway's logs.
    pub lost_examples: Vec<LostMessage>,
    pub errors: BTreeMap<String, u64>,
    pub connect_failures: u64,
    pub counters: Counters,
    pub slo: Vec<SloCheck>,
    pub slo_pass: bool,
    pub timeline: Vec<TimelinePoint>,
}

impl Report {
    fn latency(&self, name: &str) -> Option<&Latency> {
        Some(match name {
            "greeting_ms" => &self.greeting_ms,
            "bot_answer_ms" => &self.bot_answer_ms,
            "ack_ms" => &self.ack_ms,
            "queue_wait_ms" => &self.queue_wait_ms,
            "assign_ms" => &self.assign_ms,
            "relay_ms" => &self.relay_ms,
            "relay_same_node_ms" => &self.relay_same_node_ms,
            "relay_cross_node_ms" => &self.relay_cross_node_ms,
            "agent_first_reply_ms" => &self.agent_first_reply_ms,
            "failover_resume_ms" => &self.failover_resume_ms,
            _ => return None,
        })
    }

    /// Judges the report against the profile's SLOs and stores the verdict in it.
    pub fn judge(&mut self, slo: &Slo) {
        let mut checks = Vec::new();
        let mut covered: Vec<&str> = Vec::new();
        let p99 = [
            ("greeting_p99_ms", "greeting_ms", slo.greeting_p99_ms),
            ("bot_answer_p99_ms", "bot_answer_ms", slo.bot_answer_p99_ms),
            ("relay_p99_ms", "relay_ms", slo.relay_p99_ms),
            (
                "relay_same_node_p99_ms",
                "relay_same_node_ms",
                slo.relay_same_node_p99_ms,
            ),
            (
                "relay_cross_node_p99_ms",
                "relay_cross_node_ms",
                slo.relay_cross_node_p99_ms,
            ),
            ("queue_wait_p99_ms", "queue_wait_ms", slo.queue_wait_p99_ms),
            ("assign_p99_ms", "assign_ms", slo.assign_p99_ms),
            (
                "failover_resume_p99_ms",
                "failover_resume_ms",
                slo.failover_resume_p99_ms,
            ),
        ];
        for (name, metric, limit) in p99 {
            let Some(limit) = limit else { continue };
            let Some(l) = self.latency(metric) else {
                continue;
            };
            covered.push(metric);
            checks.push(if l.count == 0 {
                let required = slo.require.iter().any(|r| r == metric);
                SloCheck {
                    name: name.into(),
                    threshold: limit,
                    actual: None,
                    pass: !required,
                    note: if required {
                        "no samples (required)".into()
                    } else {
                        "no samples".into()
                    },
                }
            } else {
                at_most(name, limit, l.p99)
            });
        }
        for metric in &slo.require {
            let has = self.latency(metric).is_some_and(|l| l.count > 0);
            if !has && !covered.contains(&metric.as_str()) {
                checks.push(SloCheck {
                    name: format!("{metric} has samples"),
                    threshold: 1.0,
                    actual: Some(0.0),
                    pass: false,
                    note: "no samples (required)".into(),
                });
            }
        }
        if let Some(min) = slo.greeting_within_6s_ratio {
            let mut c = at_most(
                "greeting_within_6s_ratio",
                min,
                self.greeting_within_6s_ratio,
            );
            c.pass = self.greeting_within_6s_ratio >= min && self.sessions > 0;
            c.note = format!(">= {min}");
            checks.push(c);
        }
        let counts = [
            ("lost_messages", slo.lost_messages, self.lost_messages),
            (
                "duplicate_messages",
                slo.duplicate_messages,
                self.duplicate_messages,
            ),
            (
                "agent_load_spread_max",
                slo.agent_load_spread_max,
                self.agent_load_spread_max,
            ),
            ("sessions_lost", slo.sessions_lost, self.sessions_lost),
        ];
        for (name, limit, actual) in counts {
            if let Some(limit) = limit {
                checks.push(at_most(name, limit as f64, actual as f64));
            }
        }
        if let Some(limit) = slo.connect_failure_ratio {
            let ratio = self.connect_failures as f64 / self.sessions.max(1) as f64;
            checks.push(at_most("connect_failure_ratio", limit, ratio));
        }
        if let Some(min) = slo.min_peak_concurrent {
            let mut c = at_most(
                "min_peak_concurrent",
                min as f64,
                self.peak_concurrent as f64,
            );
            c.pass = self.peak_concurrent >= min;
            c.note = format!(">= {min}");
            checks.push(c);
        }
        if let Some(allowed) = &slo.max_errors {
            for (code, n) in &self.errors {
                let limit = allowed.get(code).copied().unwrap_or(0);
                checks.push(at_most(&format!("errors[{code}]"), limit as f64, *n as f64));
            }
        }
        self.slo_pass = checks.iter().all(|c| c.pass);
        self.slo = checks;
    }

    /// The human-readable summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let l = |x: &Latency| {
            if x.count == 0 {
                "no samples".to_owned()
            } else {
                format!(
                    "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
                    x.p50, x.p99, x.max, x.count
                )
            }
        };
        let _ = writeln!(
            s,
            "kefu-load: profile {} against {}",
            self.profile,
            self.targets.join(", ")
        );
        let _ = writeln!(
            s,
            "  sessions {}  peak concurrent {}  connect failures {}  workers {}  agents {}",
            self.sessions, self.peak_concurrent, self.connect_failures, self.workers, self.agents
        );
        let _ = writeln!(s, "  greeting      {}", l(&self.greeting_ms));
        let _ = writeln!(
            s,
            "                within 6 s {:.4}  timeouts {}",
            self.greeting_within_6s_ratio, self.greeting_timeouts
        );
        let _ = writeln!(s, "  ack           {}", l(&self.ack_ms));
        let _ = writeln!(s, "  bot answer    {}", l(&self.bot_answer_ms));
        let _ = writeln!(s, "  queue wait    {}", l(&self.queue_wait_ms));
        let _ = writeln!(s, "  assign        {}", l(&self.assign_ms));
        let _ = writeln!(s, "  relay         {}", l(&self.relay_ms));
        if self.relay_cross_node_ms.count > 0 {
            let _ = writeln!(s, "    same node   {}", l(&self.relay_same_node_ms));
            let _ = writeln!(s, "    cross node  {}", l(&self.relay_cross_node_ms));
        }
        let _ = writeln!(s, "  first reply   {}", l(&self.agent_first_reply_ms));
        if self.counters.returning_served > 0 {
            let c = &self.counters;
            let _ = writeln!(
                s,
                "  returning     served again {}  reached their last agent {} ({:.1}%)",
                c.returning_served,
                c.reached_last_agent,
                100.0 * c.reached_last_agent as f64 / c.returning_served as f64
            );
        }
        let _ = writeln!(s, "  resume        {}", l(&self.resume_ms));
        if !self.faults.is_empty() || self.failover_resume_ms.count > 0 {
            let _ = writeln!(s, "  failover      {}", l(&self.failover_resume_ms));
            let _ = writeln!(s, "  agent failover {}", l(&self.agent_failover_ms));
            let _ = writeln!(
                s,
                "                reconnects {}  no live node {}  sessions lost {}  reconnect frames {}  stale frames {}",
                self.counters.failover_reconnects,
                self.counters.failover_failures,
                self.sessions_lost,
                self.counters.reconnect_frames,
                self.counters.stale_frames
            );
        }
        for f in &self.faults {
            let t = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1} s"));
            let _ = writeln!(
                s,
                "  fault {:<22} node {:<3} planned {:.1} s  done {}  back {}{}",
                f.fault,
                f.node.map_or("-".to_owned(), |n| n.to_string()),
                f.at_s,
                t(f.done_at_s),
                t(f.back_at_s),
                f.error
                    .as_deref()
                    .map(|e| format!("  error: {e}"))
                    .unwrap_or_default()
            );
        }
        if self.load_lag_ms.count > 0 {
            let _ = writeln!(s, "  load lag      {}", l(&self.load_lag_ms));
        }
        let _ = writeln!(
            s,
            "  max queue {}  agent load spread max {}  over capacity {}  assignments {}",
            self.max_queue_len,
            self.agent_load_spread_max,
            self.agent_over_capacity,
            self.assignments
        );
        let _ = writeln!(
            s,
            "  messages sent {}  delivered {}  lost {}  duplicated {}",
            self.messages_sent,
            self.messages_delivered,
            self.lost_messages,
            self.duplicate_messages
        );
        if self.loss.agent_to_customer_crossed_close > 0 {
            let _ = writeln!(
                s,
                "                (not counted: {} agent messages sent as their customer left)",
                self.loss.agent_to_customer_crossed_close
            );
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "  errors {}",
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(" ")
            }
        );
        for c in &self.slo {
            let actual = c.actual.map_or("-".to_owned(), |a| format!("{a:.3}"));
            let verdict = if c.pass { "ok  " } else { "FAIL" };
            let _ = writeln!(
                s,
                "  SLO {verdict} {:<28} {actual:>12} vs {:<10} {}",
                c.name, c.threshold, c.note
            );
        }
        let _ = writeln!(
            s,
            "  SLO verdict: {}",
            if self.slo_pass { "PASS" } else { "FAIL" }
        );
        s
    }
}

fn at_most(name: &str, limit: f64, actual: f64) -> SloCheck {
    SloCheck {
        name: name.to_owned(),
        threshold: limit,
        actual: Some(actual),
        pass: actual <= limit,
        note: format!("<= {limit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p99: f64, count: u64) -> Latency {
        Latency {
            count,
            p50: p99 / 2.0,
            p90: p99,
            p99,
            max: p99,
            mean: p99 / 2.0,
        }
    }

    #[test]
    fn slo_passes_and_fails_on_thresholds() {
        let mut r = Report {
            sessions: 100,
            greeting_ms: lat(80.0, 100),
            greeting_within_6s_ratio: 1.0,
            ..Report::default()
        };
        let slo = Slo {
            greeting_p99_ms: Some(100.0),
            greeting_within_6s_ratio: Some(1.0),
            lost_messages: Some(0),
            ..Slo::default()
        };
        r.judge(&slo);
        assert!(r.slo_pass, "{:?}", r.slo);
        r.lost_messages = 1;
        r.judge(&slo);
        assert!(!r.slo_pass);
        assert!(r.slo.iter().any(|c| c.name == "lost_messages" && !c.pass));
    }

    #[test]
    fn missing_samples_pass_unless_required() {
        let mut r = Report {
            sessions: 5,
            greeting_within_6s_ratio: 1.0,
            ..Report::default()
        };
        let mut slo = Slo {
            bot_answer_p99_ms: Some(50.0),
            ..Slo::default()
        };
        r.judge(&slo);
        assert!(r.slo_pass);
        assert_eq!(r.slo[0].note, "no samples");
        slo.require = vec!["bot_answer_ms".into()];
        r.judge(&slo);
        assert!(!r.slo_pass);
        assert!(r.summary().contains("no samples (required)"));
    }

    #[test]
    fn zero_sessions_fail_the_greeting_ratio() {
        let mut r = Report {
            greeting_within_6s_ratio: 1.0,
            ..Report::default()
        };
        r.judge(&Slo {
            greeting_within_6s_ratio: Some(1.0),
            ..Slo::default()
        });
        assert!(!r.slo_pass);
    }

    #[test]
    fn error_budget_by_code() {
        let mut r = Report {
            sessions: 1,
            ..Report::default()
        };
        r.errors.insert("rate_limited".into(), 3);
        let mut allowed = BTreeMap::new();
        allowed.insert("rate_limited".to_owned(), 5);
        r.judge(&Slo {
            max_errors: Some(allowed.clone()),
            ..Slo::default()
        });
        assert!(r.slo_pass);
        r.errors.insert("bad_json".into(), 1);
        r.judge(&Slo {
            max_errors: Some(allowed),
            ..Slo::default()
        });
        assert!(!r.slo_pass);
    }
}
