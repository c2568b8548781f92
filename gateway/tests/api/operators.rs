//! Issue #16: the operators roster. Admin calls are made with an operator's own token and
//! allowed by role; the audit names the operator; the break-glass token still works and every
//! use of it is audited.

use serde_json::Value;

use crate::helpers::{spawn_app_with, temp_store_url, TestApp};

const BREAK_GLASS: &str = "break-glass-secret-of-24-chars";

fn write_operators(ops: &[(&str, &str)]) -> std::path::PathBuf {
    let ops: Vec<(&str, &str, Option<&str>)> =
        ops.iter().map(|(id, role)| (*id, *role, None)).collect();
    crate::helpers::write_operators(&ops)
}

/// One call with `token`; returns status and body.
async fn call(app: &TestApp, method: &str, path: &str, token: &str, extra: &str) -> (u16, String) {
    let headers = format!("Authorization: Bearer {token}\r\n{extra}");
    app.request(method, path, &headers).await
}

#[tokio::test]
async fn operators_act_within_their_roles_and_are_named_in_the_audit() {
    let ops = write_operators(&[
        ("aud1", "auditor"),
        ("sup1", "supervisor"),
        ("ed1", "editor"),
        ("root1", "admin"),
    ]);
    let url = temp_store_url("operators");
    let ops = ops.to_str().unwrap().to_string();
    let app = spawn_app_with(&[
        ("KEFU__STORE__URL", &url),
        ("KEFU__SERVER__OPERATORS_FILE", &ops),
        ("KEFU__SERVER__ADMIN_TOKEN", BREAK_GLASS),
    ])
    .await;

    let cases = [
        ("GET", "/admin/conversations/none", "aud1.secret", 404),
        ("GET", "/admin/conversations/none", "sup1.secret", 403),
        ("GET", "/admin/conversations/none", "ed1.secret", 403),
        ("GET", "/admin/conversations/none", "root1.secret", 404),
        ("GET", "/admin/supervisor", "sup1.secret", 200),
        ("GET", "/admin/supervisor", "aud1.secret", 403),
        ("POST", "/admin/kb/reload", "ed1.secret", 200),
        ("POST", "/admin/kb/reload", "sup1.secret", 403),
        ("GET", "/admin/audit", "sup1.secret", 403),
        ("GET", "/admin/audit", "aud1.wrong", 401),
        ("GET", "/admin/audit", "nobody.secret", 401),
        ("GET", "/admin/audit", "", 401),
    ];
    for (method, path, token, want) in cases {
        let (status, body) = call(&app, method, path, token, "").await;
        assert_eq!(status, want, "{method} {path} as {token}: {body}");
    }
    // An operator's reads are audited under their id, whatever header they send.
    let (status, _) = call(
        &app,
        "GET",
        "/admin/conversations/c-42",
        "aud1.secret",
        "X-Kefu-Operator: someone-else\r\n",
    )
    .await;
    assert_eq!(status, 404);
    // The break-glass token still works, and is audited.
    let (status, body) = call(
        &app,
        "GET",
        "/admin/supervisor",
        BREAK_GLASS,
        "X-Kefu-Operator: oncall-li\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Audit entries of break-glass use are written off the request's path: poll for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let audit = loop {
        let (status, body) = call(&app, "GET", "/admin/audit?limit=100", "aud1.secret", "").await;
        assert_eq!(status, 200, "{body}");
        let audit: Value = serde_json::from_str(&body).unwrap();
        let glass = audit.to_string().contains("\"break_glass\"");
        if glass || std::time::Instant::now() > deadline {
            break audit;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let entries = audit["entries"].as_array().unwrap();
    let read = entries
        .iter()
        .find(|e| e["action"] == "read_conversation" && e["target"] == "c-42")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(read["operator"], "aud1");
    let glass = entries
        .iter()
        .find(|e| e["action"] == "break_glass")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(glass["operator"], "oncall-li");
    assert_eq!(glass["target"], "supervise");
}

#[tokio::test]
async fn a_bad_operators_roster_stops_the_gateway() {
    let path = std::env::temp_dir().join(format!("kefu-operators-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[operator]]\nid = \"x\"\nname = \"x\"\nrole = \"admin\"\ntoken_hash = \"plain\"\n",
    )
    .unwrap();
    let env: std::collections::HashMap<String, String> = [
        (
            "KEFU__SERVER__OPERATORS_FILE".to_string(),
            path.display().to_string(),
        ),
        ("KEFU__STORE__URL".to_string(), String::new()),
        (
            "KEFU__SERVER__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
    ]
    .into();
    let settings = gateway::Settings::load(None, &env).unwrap();
    let err = match gateway::Application::build(settings).await {
        Ok(_) => panic!("a bad roster must stop the gateway"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("token_hash"), "{err}");
}

/// The status and the `error` of the JSON answer to a break-glass `GET path`.
async fn refusal(app: &TestApp, path: &str) -> (u16, String) {
    let (status, body) = call(app, "GET", path, BREAK_GLASS, "").await;
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_string())
}

/// The admin gate's answers, pinned: what is not a route is 404/405 before any token is
/// looked at, and each refusal keeps its exact status and body.
#[tokio::test]
async fn the_admin_gate_keeps_its_answers() {
    let app = spawn_app_with(&[("KEFU__SERVER__ADMIN_TOKEN", BREAK_GLASS)]).await;
    assert_eq!(app.request("GET", "/admin/nothing-here", "").await.0, 404);
    assert_eq!(app.request("GET", "/admin/customers/v1", "").await.0, 405);
    let (status, body) = app.request("GET", "/admin/audit", "").await;
    assert_eq!((status, body.as_str()), (401, "bad or missing admin token"));
    let why = "reads of conversations must name the reader in the X-Kefu-Operator header";
    assert_eq!(
        refusal(&app, "/admin/conversations/c-1").await,
        (400, why.into())
    );

    let app = spawn_app_with(&[
        ("KEFU__SERVER__ADMIN_TOKEN", BREAK_GLASS),
        ("KEFU__STORE__URL", ""),
    ])
    .await;
    let why = "the conversation store is disabled (store.url is empty)";
    assert_eq!(refusal(&app, "/admin/audit").await, (503, why.into()));
    let why = "the knowledge-base tools need the store (store.url is empty)";
    assert_eq!(refusal(&app, "/admin/kb/misses").await, (503, why.into()));

    let app = spawn_app_with(&[("KEFU__SERVER__ADMIN_TOKEN", "")]).await;
    let (status, body) = app.request("GET", "/admin/supervisor", "").await;
    assert_eq!(status, 403);
    assert!(body.starts_with("the admin API is disabled"), "{body}");
}
