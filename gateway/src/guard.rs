//! Checks in front of every route: the `Origin` allow-lists of the sockets, and the sign-in
//! failure throttle (agent socket and admin API).
//!
//! One middleware rather than a check in each handler, so no admin route can forget it, and
//! so a throttled address is refused before its token is even read.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::limits::FailureThrottle;
use crate::telemetry::metric;

tokio::task_local! {
    /// The client address of the request being handled, for handlers that take only headers
    /// (the admin API's sign-in history): set here, so a client cannot supply it.
    static PEER: std::net::IpAddr;
}

/// The address of the client whose request this task is handling, if any.
pub fn peer_ip() -> Option<std::net::IpAddr> {
    PEER.try_with(|ip| *ip).ok()
}

/// Which sign-in a request is, if any.
fn throttle_for<'a>(app: &'a AppState, path: &str) -> Option<&'a FailureThrottle> {
    if path == "/ws/agent" {
        Some(&app.agent_auth_failures)
    } else if path.starts_with("/admin/") || path == "/ws/supervisor" {
        Some(&app.admin_auth_failures)
    } else {
        None
    }
}

/// Whether a browser page from the request's `Origin` may open this socket. No `Origin`: not
/// a browser (apps, tools), which a header check cannot stop anyway, so allowed. The
/// gateway's own pages are always allowed; others only if listed.
fn origin_allowed(request: &Request, listed: &[String]) -> bool {
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    let own = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    if own.is_some_and(|h| origin_host.is_some_and(|o| o.eq_ignore_ascii_case(h))) {
        return true;
    }
    listed.iter().any(|l| l.eq_ignore_ascii_case(origin))
}

pub async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let server = &app.settings.server;
    let origin_ok = match request.uri().path() {
        "/ws/agent" | "/ws/supervisor" => origin_allowed(&request, &server.allowed_origins),
        "/ws/customer" if !server.widget_origins.is_empty() => {
            origin_allowed(&request, &server.widget_origins)
        }
        _ => true,
    };
    if !origin_ok {
        metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => "origin").increment(1);
        return (
            StatusCode::FORBIDDEN,
            "this origin may not open this socket",
        )
            .into_response();
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let throttle = ip.and_then(|ip| throttle_for(&app, request.uri().path()).map(|t| (t, ip)));
    if let Some((throttle, ip)) = throttle {
        if throttle.is_blocked(ip) {
            metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => "auth_throttled")
                .increment(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins from this address; try again in a minute",
            )
                .into_response();
        }
    }
    let response = match ip {
        Some(ip) => PEER.scope(ip, next.run(request)).await,
        None => next.run(request).await,
    };
    if let Some((throttle, ip)) = throttle {
        if response.status() == StatusCode::UNAUTHORIZED {
            throttle.record_failure(ip);
        }
    }
    response
}
