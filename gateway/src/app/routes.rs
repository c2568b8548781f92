//! The node's HTTP routes: the sockets, uploads and files, health, readiness and metrics,
//! the admin API and the embedded pages, all behind the origin and sign-in guard.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::telemetry::metric;
use crate::{admin, agent, customer};

pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws/customer", get(customer::upgrade))
        .route("/ws/agent", get(agent::upgrade))
        .route("/ws/supervisor", get(crate::signin::alerts::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/upload",
            axum::routing::post(crate::attachments::upload::upload)
                .options(crate::attachments::upload::preflight),
        )
        .route("/files/{id}", get(crate::attachments::files::file))
        .merge(admin::routes(&state))
        .merge(crate::web::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!(metric::PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
    }
    metrics::gauge!(metric::CONNECTIONS_ACTIVE).set(state.limits.in_use() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The process's resident memory from `/proc/self/status` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
