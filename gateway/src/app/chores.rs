//! The node's background work: its routing events in order, and the periodic chores.

use std::time::Duration;

use super::AppState;
use crate::records;
use crate::routing::NodeEvent;
use crate::telemetry::metric;

/// This node's routing events, one at a time, in arrival order.
pub(super) async fn run_events(
    state: AppState,
    mut events: tokio::sync::mpsc::Receiver<NodeEvent>,
) {
    while let Some(event) = events.recv().await {
        let kind = event.kind();
        let started = std::time::Instant::now();
        state.relay.handle(event).await;
        metrics::histogram!(metric::NODE_EVENT_SECONDS, "kind" => kind)
            .record(started.elapsed().as_secs_f64());
    }
}

/// Periodic work: forget sessions past their grace period (leaving queues and agents),
/// routing upkeep, liveness, noticing knowledge-base and roster edits, tidy histograms.
pub(super) async fn run_chores(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ttl = state.settings.dispatch.node_ttl_ms;
    let heartbeat_every = Duration::from_millis((ttl / 3).max(100));
    let mut last_heartbeat: Option<tokio::time::Instant> = None;
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        if last_heartbeat.is_none_or(|t| t.elapsed() >= heartbeat_every) {
            last_heartbeat = Some(tokio::time::Instant::now());
            if let Err(err) = state.relay.dispatcher.heartbeat(&state.node_id, ttl).await {
                tracing::error!(error = %err, "heartbeat failed");
            }
        }
        if n.is_multiple_of(5) {
            let app = state.clone();
            tokio::spawn(async move { app.journal.forget_due(app.store.as_deref()).await });
        }
        if n.is_multiple_of(3) && state.journal.is_shared() {
            let app = state.clone();
            tokio::spawn(async move { app.relay.take_orphans(false).await });
        }
        for session in state.sessions.reap_expired() {
            state.relay.end_chat(&session, "expired", false).await;
        }
        state.relay.tick().await;
        state.agents.reap(Duration::from_millis(
            state.settings.dispatch.agent_grace_ms,
        ));
        if n.is_multiple_of(5) {
            state.roster.reload_if_changed().await;
        }
        if n.is_multiple_of(5) {
            state.metrics.run_upkeep();
        }
        let retention_every = state.settings.store.retention_interval_s.max(1);
        if n == 1 || n.is_multiple_of(retention_every) {
            let app = state.clone();
            tokio::spawn(async move {
                if let Some(store) = &app.store {
                    records::retention::run_once(store, app.settings.store.retention_days).await;
                }
                app.sign_in.prune().await;
            });
        }
        let watch = state.settings.kb.watch_interval_s;
        if watch > 0 && n.is_multiple_of(watch) {
            state.bot.reload_if_changed().await;
        }
    }
}
