//! The figures behind `GET /admin/supervisor` (the handler is in [`crate::admin`]).
//!
//! Queues and agents come from the dispatcher's snapshot (shared by every node on Redis). The
//! SLA figures are read back from this process's Prometheus recorder, so they need no counters
//! of their own; they are node-local (and, in tests running several gateways in one process,
//! process-wide). Oldest waits are node-local too: they come from this node's sessions.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::app::AppState;
use crate::session::{now_ms, Milestone, SessionState};

/// The whole report, as JSON.
pub async fn report(state: &AppState) -> Result<Value, crate::dispatch::DispatchError> {
    let mut snapshot = state.relay.dispatcher.snapshot().await?;
    // Groups nobody has been routed to yet still deserve a row (with an empty queue).
    for group in super::known_groups(state) {
        snapshot.queues.entry(group).or_insert(0);
    }
    let oldest = oldest_waits(state);
    let avg_handle_s = state.settings.routing.avg_handle_s;
    let queues: Vec<Value> = snapshot
        .queues
        .iter()
        .map(|(group, &length)| {
            let capacity = u64::from(state.group_capacity(group).max(1));
            json!({
                "group": group,
                "length": length,
                "estimated_wait_s": (length as u64 * avg_handle_s).div_ceil(capacity),
                "oldest_wait_s": oldest.get(group).copied(),
                "ready_capacity": state.group_capacity(group),
            })
        })
        .collect();
    let agents: Vec<Value> = snapshot
        .agents
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "name": state.agent_name(&a.id),
                "status": a.status.as_str(),
                "load": a.load,
                "capacity": a.capacity,
                "groups": a.groups,
            })
        })
        .collect();
    let metrics = Metrics::parse(&state.metrics.render());
    Ok(json!({
        "at_ms": now_ms(),
        "node": state.node_id,
        "queues": queues,
        "agents": agents,
        "sla": sla(state, &metrics),
        "continuity": continuity(state, &metrics).await,
    }))
}

/// Issue #17: returning customers who reached their last agent (this node's counters), and
/// left messages still waiting or answered late (over 24 h), from the store.
async fn continuity(state: &AppState, m: &Metrics) -> Value {
    let outcome = |o: &str| {
        m.0.iter()
            .filter(|(n, labels, _)| {
                n == "kefu_last_agent_total" && labels.iter().any(|(k, v)| k == "outcome" && v == o)
            })
            .fold(0.0, |sum, (_, _, v)| sum + v)
    };
    let tickets = match &state.store {
        Some(store) => match store.ticket_counts().await {
            Ok((waiting, late)) => json!({"waiting": waiting, "late": late}),
            Err(err) => {
                tracing::error!(error = %err, "cannot count tickets");
                Value::Null
            }
        },
        None => Value::Null,
    };
    json!({
        "last_agent_reached": outcome("assigned") + outcome("assigned_after_wait"),
        "last_agent_fallback": outcome("fallback"),
        "tickets": tickets,
    })
}

/// Seconds the longest-waiting queued customer of each group (on this node) has waited since
/// it last entered the queue (hand-off, transfer or requeue, as recorded in its transcript).
fn oldest_waits(state: &AppState) -> BTreeMap<String, u64> {
    let now = now_ms();
    let mut oldest: BTreeMap<String, u64> = BTreeMap::new();
    for session in state.sessions.all() {
        let SessionState::Queued { group } = session.state() else {
            continue;
        };
        let since = session
            .transcript()
            .iter()
            .rev()
            .find(|e| e.milestone.as_ref().is_some_and(Milestone::enters_queue))
            .map(|e| e.at_ms);
        if let Some(since) = since {
            let waited = now.saturating_sub(since) / 1000;
            let slot = oldest.entry(group).or_insert(0);
            *slot = (*slot).max(waited);
        }
    }
    oldest
}

/// Greeting, first-response and hand-off figures.
fn sla(state: &AppState, m: &Metrics) -> Value {
    let greetings = m.sum("kefu_greeting_latency_seconds_count");
    let greeting_target_s = state.settings.routing.agent_greeting_s as f64;
    let greeted_in_time = m.bucket("kefu_greeting_latency_seconds", greeting_target_s);
    let assignments = m.sum("kefu_queue_wait_seconds_count");
    let first_replies = m.sum("kefu_agent_first_reply_seconds_count");
    let sla_s = state.settings.routing.first_response_sla_s as f64;
    let handoffs = m.sum("kefu_handoffs_total");
    json!({
        "sessions_active": m.sum("kefu_sessions_active"),
        "greetings": greetings,
        "greeting_avg_ms": ratio(m.sum("kefu_greeting_latency_seconds_sum") * 1000.0, greetings),
        "greeting_target_s": greeting_target_s,
        "greeted_within_target": ratio(greeted_in_time, greetings),
        "assignments": assignments,
        "queue_wait_avg_s": ratio(m.sum("kefu_queue_wait_seconds_sum"), assignments),
        "agent_auto_greetings": m.sum("kefu_agent_auto_greetings_total"),
        "first_replies": first_replies,
        "first_reply_avg_s": ratio(m.sum("kefu_agent_first_reply_seconds_sum"), first_replies),
        "first_response_sla_s": sla_s,
        "first_replies_within_sla": ratio(
            m.bucket("kefu_agent_first_reply_seconds", sla_s),
            first_replies
        ),
        "sla_warnings": m.sum("kefu_sla_warnings_total"),
        "bot_answers": m.sum("kefu_bot_answers_total"),
        "handoffs": handoffs,
        "handoff_rate": ratio(handoffs, greetings),
        "handoffs_by_trigger": m.by_label("kefu_handoffs_total", "trigger"),
    })
}

/// `a / b`, or `null` when there is nothing to divide by yet.
fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 {
        json!((a / b * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// One sample of a Prometheus text exposition: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a Prometheus text exposition.
struct Metrics(Vec<Sample>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let value: f64 = value.trim().parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                Some((name.to_string(), labels, value))
            })
            .collect();
        Self(samples)
    }

    /// Sum of every series of `name` (over all label values).
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .fold(0.0, |sum, (_, _, v)| sum + v)
    }

    /// Observations of histogram `name` at or below `le` (the largest bucket bound ≤ `le`).
    fn bucket(&self, name: &str, le: f64) -> f64 {
        let bucket = format!("{name}_bucket");
        let mut by_bound: BTreeMap<u64, f64> = BTreeMap::new();
        for (n, labels, v) in &self.0 {
            if *n != bucket {
                continue;
            }
            let bound = labels
                .iter()
                .find(|(k, _)| k == "le")
                .and_then(|(_, b)| b.parse::<f64>().ok());
            if let Some(bound) = bound.filter(|b| *b <= le) {
                *by_bound.entry(bound.to_bits()).or_insert(0.0) += v;
            }
        }
        // Bounds are non-negative, so their bit patterns sort like the numbers.
        by_bound.values().next_back().copied().unwrap_or(0.0)
    }

    /// `name` summed per value of `label`.
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.0 {
            if n != name {
                continue;
            }
            if let Some((_, value)) = labels.iter().find(|(k, _)| k == label) {
                *out.entry(value.clone()).or_insert(0.0) += v;
            }
        }
        out
    }
}

/// `a="x",b="y"` (values in this gateway's metrics never contain quotes or commas).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE x counter\n\
        kefu_handoffs_total{trigger=\"customer_request\"} 3\n\
        kefu_handoffs_total{trigger=\"not_helpful\"} 1\n\
        kefu_greeting_latency_seconds_bucket{le=\"1\"} 4\n\
        kefu_greeting_latency_seconds_bucket{le=\"6\"} 9\n\
        kefu_greeting_latency_seconds_bucket{le=\"+Inf\"} 10\n\
        kefu_greeting_latency_seconds_count 10\n";

    #[test]
    fn reads_counters_labels_and_buckets() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.sum("kefu_handoffs_total"), 4.0);
        assert_eq!(
            m.by_label("kefu_handoffs_total", "trigger")["not_helpful"],
            1.0
        );
        assert_eq!(m.bucket("kefu_greeting_latency_seconds", 6.0), 9.0);
        assert_eq!(m.bucket("kefu_greeting_latency_seconds", 3.0), 4.0);
        assert_eq!(m.bucket("kefu_greeting_latency_seconds", 0.5), 0.0);
        assert_eq!(ratio(4.0, 10.0), json!(0.4));
        assert_eq!(ratio(1.0, 0.0), Value::Null);
    }
}
