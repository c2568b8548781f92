//! The browser pages, embedded in the binary so the gateway serves them from anywhere:
//!
//! - `/widget/` (a demo shop page) and `/widget.js`, the one-tag embed for a shop's own pages;
//! - `/console/`, the agent console, and `/console/config.json` (canned replies, groups);
//! - `/supervisor/`, the live view over `GET /admin/supervisor` (see [`supervisor`]);
//! - `/kb/`, the knowledge-base page over `/admin/kb/*` (misses, entries, figures, try box);
//! - `/`, a page linking the three.
//!
//! The files live under `gateway/web/` as plain HTML/CSS/JS (no build step). They are sent with
//! `Cache-Control: no-cache` (revalidated, so an upgrade is picked up at once) and, for the
//! scripts and styles, `Access-Control-Allow-Origin: *`, because `/widget.js` on a shop's own
//! domain loads its modules from the gateway's origin. Nothing here is secret.

pub mod supervisor;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// One embedded file and the URL path it is served at.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../web/", $file)),
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/favicon.svg", "favicon.svg", SVG),
    asset!("/widget.js", "widget.js", JS),
    asset!("/widget/", "widget/index.html", HTML),
    asset!("/widget/app.js", "widget/app.js", JS),
    asset!("/widget/view.js", "widget/view.js", JS),
    asset!("/widget/i18n.js", "widget/i18n.js", JS),
    asset!("/widget/attach.js", "widget/attach.js", JS),
    asset!("/widget/widget.css", "widget/widget.css", CSS),
    asset!("/widget/demo.js", "widget/demo.js", JS),
    asset!("/widget/demo.css", "widget/demo.css", CSS),
    asset!("/index.css", "index.css", CSS),
    asset!("/console/", "console/index.html", HTML),
    asset!("/console/app.js", "console/app.js", JS),
    asset!("/console/chat.js", "console/chat.js", JS),
    asset!("/console/console.css", "console/console.css", CSS),
    asset!("/supervisor/", "supervisor/index.html", HTML),
    asset!("/supervisor/app.js", "supervisor/app.js", JS),
    asset!(
        "/supervisor/supervisor.css",
        "supervisor/supervisor.css",
        CSS
    ),
    asset!("/kb/", "kb/index.html", HTML),
    asset!("/kb/app.js", "kb/app.js", JS),
    asset!("/kb/kb.css", "kb/kb.css", CSS),
    asset!("/shared/socket.js", "shared/socket.js", JS),
    asset!("/shared/journal.js", "shared/journal.js", JS),
    asset!("/shared/dom.js", "shared/dom.js", JS),
    asset!("/shared/rich.js", "shared/rich.js", JS),
    asset!("/shared/base.css", "shared/base.css", CSS),
];

/// The page routes, merged into the gateway's router.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for asset in ASSETS {
        router = router.route(
            asset.path,
            get(
                move |State(state): State<AppState>, headers: HeaderMap| async move {
                    serve(asset, &state, &headers)
                },
            ),
        );
    }
    for dir in ["/widget", "/console", "/supervisor", "/kb"] {
        let to: &'static str = match dir {
            "/widget" => "/widget/",
            "/console" => "/console/",
            "/kb" => "/kb/",
            _ => "/supervisor/",
        };
        router = router.route(dir, get(move || async move { Redirect::permanent(to) }));
    }
    router.route("/console/config.json", get(console_config))
}

fn serve(asset: &'static Asset, state: &AppState, headers: &HeaderMap) -> Response {
    let csp = content_security_policy(asset.path, state, headers);
    (
        [
            (header::CONTENT_TYPE, asset.content_type.to_string()),
            (header::CACHE_CONTROL, "no-cache".into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::REFERRER_POLICY, "no-referrer".into()),
        ],
        asset.body,
    )
        .into_response()
}

/// A strict policy for every page and asset: only the gateway's own scripts and styles (no
/// inline code, so an injected message text cannot run), sockets only to the gateway itself.
/// The console and supervisor may not be framed at all (clickjacking an agent or a
/// supervisor); the widget page only by the shops of `server.widget_origins`.
fn content_security_policy(path: &str, state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let sockets = host
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    let ancestors = if path == "/widget/" || path == "/widget.js" || path.starts_with("/widget/") {
        let mut list = vec!["'self'".to_string()];
        list.extend(state.settings.server.widget_origins.iter().cloned());
        list.join(" ")
    } else {
        "'none'".to_string()
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         font-src 'self'; connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; \
         frame-ancestors {ancestors}"
    )
}

/// `GET /console/config.json`: what the console needs besides the socket: the canned replies
/// (`console.canned_replies`) and the groups a chat can be transferred to. No secrets.
async fn console_config(State(state): State<AppState>) -> Response {
    let body = Json(json!({
        "canned_replies": state.settings.console.canned_replies,
        "groups": known_groups(&state),
        "first_response_sla_s": state.settings.routing.first_response_sla_s,
        "agent_grace_ms": state.settings.dispatch.agent_grace_ms,
    }));
    ([(header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Every skill group the configuration names: the roster's and the hand-off targets.
pub(crate) fn known_groups(state: &AppState) -> Vec<String> {
    let mut groups: Vec<String> = state
        .roster
        .current()
        .agents()
        .iter()
        .flat_map(|a| a.groups.iter().cloned())
        .collect();
    groups.extend(state.settings.handoff.category_groups.values().cloned());
    groups.push(state.settings.handoff.complaint_group.clone());
    groups.push(state.settings.handoff.default_group.clone());
    groups.sort();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_path_is_unique_and_typed() {
        let mut paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            let js = asset.path.ends_with(".js");
            assert_eq!(js, asset.content_type == JS, "{}", asset.path);
        }
    }
}
