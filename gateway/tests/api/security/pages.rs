//! Pages and origins: a strict CSP everywhere, framing rules per page, `Origin` allow-lists
//! for the sockets.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{spawn_app_with, write_roster, TestApp, WAIT};

const SHOP: &str = "https://shop.example.com";

async fn app() -> TestApp {
    let roster = write_roster("pages", &[("a01", "小王", &["pre_sale"], 5)]);
    let roster = roster.to_str().unwrap().to_string();
    spawn_app_with(&[
        ("KEFU__AGENTS__FILE", &roster),
        (
            "KEFU__SERVER__WIDGET_ORIGINS",
            "[\"https://shop.example.com\"]",
        ),
        (
            "KEFU__SERVER__ALLOWED_ORIGINS",
            "[\"https://console.example.com\"]",
        ),
    ])
    .await
}

/// The response head of `GET path`, lowercased.
async fn head(app: &TestApp, path: &str) -> String {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    text.split("\r\n\r\n").next().unwrap().to_string()
}

fn csp(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no CSP: {head}"))
        .to_string()
}

#[tokio::test]
async fn every_page_has_a_strict_csp_and_only_the_widget_may_be_framed_by_shops() {
    let app = app().await;
    for path in [
        "/",
        "/widget/",
        "/console/",
        "/supervisor/",
        "/widget/app.js",
        "/shared/base.css",
    ] {
        let head = head(&app, path).await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        let policy = csp(&head);
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(part), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
    }
    for path in ["/console/", "/supervisor/", "/"] {
        assert!(
            csp(&head(&app, path).await).contains("frame-ancestors 'none'"),
            "{path}"
        );
    }
    let widget = csp(&head(&app, "/widget/").await);
    assert!(
        widget.contains(&format!("frame-ancestors 'self' {SHOP}")),
        "{widget}"
    );
    // No inline code left in the pages for the policy to break.
    for path in ["/", "/widget/", "/console/", "/supervisor/"] {
        let (_, body) = app.get(path).await;
        assert!(
            !body.contains("<script>") && !body.contains("<style"),
            "{path}"
        );
    }
}

async fn status_with_origin(
    app: &TestApp,
    path: &str,
    origin: Option<&str>,
    token: Option<&str>,
) -> u16 {
    let mut request = app.ws_url(path).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.headers_mut().insert("authorization", value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sockets_check_the_origin_of_browser_pages() {
    let app = app().await;
    let own = format!("http://{}", app.addr);
    let agent = |origin| status_with_origin(&app, "/ws/agent", origin, Some("a01.secret"));
    assert_eq!(agent(Some("https://evil.example.net")).await, 403);
    assert_eq!(
        agent(Some(SHOP)).await,
        403,
        "shops may not open agent sockets"
    );
    assert_eq!(agent(Some(own.as_str())).await, 101);
    assert_eq!(agent(Some("https://console.example.com")).await, 101);
    assert_eq!(agent(None).await, 101);

    let customer = |origin| status_with_origin(&app, "/ws/customer", origin, None);
    assert_eq!(customer(Some("https://evil.example.net")).await, 403);
    assert_eq!(customer(Some(SHOP)).await, 101);
    assert_eq!(customer(Some(own.as_str())).await, 101);
    assert_eq!(customer(None).await, 101);
}

#[tokio::test]
async fn without_widget_origins_customers_may_come_from_any_shop() {
    let app = spawn_app_with(&[]).await;
    let status = status_with_origin(&app, "/ws/customer", Some("https://any.shop"), None).await;
    assert_eq!(status, 101);
}

#[test]
fn an_origin_that_could_break_the_header_is_refused_at_start() {
    let env: std::collections::HashMap<String, String> = [(
        "KEFU__SERVER__WIDGET_ORIGINS".to_string(),
        "[\"https://a.com; script-src *\"]".to_string(),
    )]
    .into();
    let err = gateway::Settings::load(None, &env).unwrap_err().to_string();
    assert!(err.contains("server.widget_origins"), "{err}");
}
