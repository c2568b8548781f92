//! Issue #16, abnormal sign-in alerts, on the real gateway and store: a sign-in from an
//! address or user agent new to the account is audited and pushed to a connected supervisor
//! (`/ws/supervisor`), a repeated one is not; blocked leaks reach the supervisor too.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, temp_store_url, write_operators, write_roster, Client};

const BREAK_GLASS: &str = "break-glass-secret-of-24-chars";

/// The next `alert` frame about `account`, skipping others.
async fn alert_for(supervisor: &mut Client, account: &str) -> Value {
    loop {
        let frame = supervisor.recv().await;
        if frame["type"] == "alert" && frame["account"] == account {
            return frame;
        }
    }
}

#[tokio::test]
async fn new_sign_ins_are_audited_and_pushed_to_supervisors() {
    let roster = write_roster("alerts", &[("a01", "小王", &["pre_sale"], 3)]);
    let roster = roster.to_str().unwrap().to_string();
    let ops = write_operators(&[("sup1", "supervisor", None), ("ed1", "editor", None)]);
    let ops = ops.to_str().unwrap().to_string();
    let url = temp_store_url("alerts");
    let app = spawn_app_with(&[
        ("KEFU__AGENTS__FILE", &roster),
        ("KEFU__SERVER__OPERATORS_FILE", &ops),
        ("KEFU__SERVER__ADMIN_TOKEN", BREAK_GLASS),
        ("KEFU__STORE__URL", &url),
        ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
    ])
    .await;
    // Only supervise-permitted operators may listen.
    match app
        .socket("/ws/supervisor?token=ed1.secret", None, "t")
        .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| "a socket")),
    }
    let mut supervisor = app
        .socket("/ws/supervisor?token=sup1.secret", None, "board")
        .await
        .unwrap();

    // The account's very first sign-in: an alert marked first.
    let agent = app
        .socket("/ws/agent", Some("a01.secret"), "ua-one")
        .await
        .unwrap();
    let first = alert_for(&mut supervisor, "a01").await;
    assert_eq!(first["kind"], "new_sign_in", "{first}");
    assert_eq!(first["role"], "agent");
    assert_eq!(
        (first["first"].clone(), first["new_ip"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(first["ip"], "127.0.0.x", "the address is masked: {first}");
    drop(agent);

    // The same address and user agent again: nothing.
    let again = app
        .socket("/ws/agent", Some("a01.secret"), "ua-one")
        .await
        .unwrap();
    let quiet = supervisor.drain(Duration::from_millis(700)).await;
    assert!(
        quiet.iter().all(|f| f["account"] != "a01"),
        "no alert for a known sign-in: {quiet:?}"
    );
    drop(again);

    // A new user agent from the same address: an alert, not first.
    let mut agent = app
        .socket("/ws/agent", Some("a01.secret"), "ua-two")
        .await
        .unwrap();
    let second = alert_for(&mut supervisor, "a01").await;
    assert_eq!(second["first"], false, "{second}");
    assert_eq!(second["new_ip"], false, "{second}");
    assert_eq!(second["new_user_agent"], true, "{second}");

    // A blocked leak reaches the supervisor too: rule and chat, never the text.
    assert_eq!(agent.recv().await["type"], "welcome");
    agent.send(json!({"type":"ready"})).await;
    let (mut customer, _) = app.connect_customer("lang=zh").await;
    customer.send(json!({"type":"request_human"})).await;
    let assigned = agent.recv_type("assigned").await;
    let session = assigned["session"].as_str().unwrap();
    let text = "加我微信 kefu_private88";
    agent
        .send(json!({"type":"message","session":session,"id":"x1","text":text}))
        .await;
    assert_eq!(agent.recv_type("error").await["code"], "blocked_content");
    let leak = loop {
        let frame = supervisor.recv().await;
        if frame["kind"] == "leak_blocked" {
            break frame;
        }
    };
    assert_eq!(
        (leak["rule"].as_str(), leak["session"].as_str()),
        (Some("wechat"), Some(session))
    );
    assert!(!leak.to_string().contains("kefu_private88"), "{leak}");

    // The audit log has both sign-ins of a01, the address masked, the values only hashed.
    let glass = format!("Authorization: Bearer {BREAK_GLASS}\r\n");
    let (status, body) = app
        .request("GET", "/admin/audit?operator=agent:a01", &glass)
        .await;
    assert_eq!(status, 200, "{body}");
    let log: Value = serde_json::from_str(&body).unwrap();
    let sign_ins: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "new_sign_in")
        .collect();
    assert_eq!(sign_ins.len(), 2, "{body}");
    assert!(sign_ins
        .iter()
        .all(|e| e["peer"] == "127.0.0.x" && e["target"] == "agent:a01"));
    assert!(
        sign_ins[1]["detail"]
            .as_str()
            .unwrap()
            .contains("first=true"),
        "{body}"
    );
    assert!(
        !body.contains("ua-two") && !body.contains("127.0.0.1"),
        "{body}"
    );
    let metrics = app.get("/metrics").await.1;
    assert!(
        metrics.contains("kefu_sign_in_alerts_total"),
        "metric exported"
    );
    app.stop().await.unwrap();
}
