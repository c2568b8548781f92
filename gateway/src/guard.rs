//! Checks in front of every route: the sign-in failure throttle (agent socket and admin API).
//!
//! One middleware rather than a check in each handler, so no admin route can forget it, and
//! so a throttled address is refused before its token is even read.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::limits::FailureThrottle;
use crate::server::AppState;

/// Which sign-in a request is, if any.
fn throttle_for<'a>(app: &'a AppState, path: &str) -> Option<&'a FailureThrottle> {
    if path == "/ws/agent" {
        Some(&app.agent_auth_failures)
    } else if path.starts_with("/admin/") {
        Some(&app.admin_auth_failures)
    } else {
        None
    }
}

pub async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let throttle = ip.and_then(|ip| throttle_for(&app, request.uri().path()).map(|t| (t, ip)));
    if let Some((throttle, ip)) = throttle {
        if throttle.is_blocked(ip) {
            metrics::counter!("kefu_connections_rejected_total", "reason" => "auth_throttled")
                .increment(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins from this address; try again in a minute",
            )
                .into_response();
        }
    }
    let response = next.run(request).await;
    if let Some((throttle, ip)) = throttle {
        if response.status() == StatusCode::UNAUTHORIZED {
            throttle.record_failure(ip);
        }
    }
    response
}
