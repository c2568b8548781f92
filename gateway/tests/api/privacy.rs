//! Issue #16, privacy and accountability, on the real gateway: what agents see is masked
//! however the customer writes it.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, write_roster, Client, TestApp};

async fn app_with_agent(name: &str) -> (TestApp, Client) {
    let roster = write_roster(name, &[("a01", "小王", &["after_sale", "pre_sale"], 3)]);
    let roster = roster.to_str().unwrap().to_string();
    let app = spawn_app_with(&[
        ("KEFU__AGENTS__FILE", &roster),
        ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
    ])
    .await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    (app, agent)
}

/// Every digit of `v` (after NFKC-style folding of full-width digits), in order.
fn digits(v: &Value) -> String {
    v.to_string()
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '０'..='９' => char::from_u32(c as u32 - 0xFF10 + u32::from(b'0')),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn disguised_personal_data_is_masked_in_history_messages_and_customer_info() {
    let (app, mut agent) = app_with_agent("mask").await;
    // Visitor id, history and live messages, each with numbers written to dodge a pattern.
    let (mut c, _) = app
        .connect_customer("visitor=%EF%BC%91%EF%BC%93%EF%BC%98%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97%EF%BC%98")
        .await;
    c.say("h1", "我的手机１３８\u{200b}１２３４\u{feff}５６７８")
        .await;
    c.send(json!({"type":"request_human"})).await;
    let assigned = agent.recv_type("assigned").await;
    let session = assigned["session"].as_str().unwrap().to_string();
    assert_eq!(assigned["customer"]["visitor"], "138****5678", "{assigned}");
    let history = &assigned["history"];
    assert!(!digits(history).contains("1234"), "{history}");
    assert!(history.to_string().contains("138****5678"), "{history}");

    let lines = [
        ("m1", "电话 138.1234.5678"),
        ("m2", "身份证 1101 0119 9003 0712 3X"),
        ("m3", "卡号 6222-0212-3456-7890"),
        ("m4", "寄到北京市朝阳区建国\u{200d}路８８号院3栋"),
        ("m5", "1 3 8 1 2 3 4 5 6 7 8"),
    ];
    for (id, text) in lines {
        c.say(id, text).await;
    }
    let mut seen = Vec::new();
    while seen.len() < lines.len() {
        let m = agent.recv_type("message").await;
        assert_eq!(m["session"], session.as_str());
        seen.push(m["text"].as_str().unwrap().to_string());
    }
    let all = seen.join(" | ");
    for secret in ["1234", "19900307", "021234567", "88号"] {
        let d: String = all.chars().filter(char::is_ascii_digit).collect();
        assert!(
            !d.contains(secret) && !all.contains(secret),
            "{secret} in {all}"
        );
    }
    assert_eq!(seen[0], "电话 138****5678");
    assert_eq!(seen[1], "身份证 110101********123X");
    assert_eq!(seen[2], "卡号 **** **** **** 7890");
    assert!(seen[3].ends_with("路****"), "{}", seen[3]);
    assert_eq!(seen[4], "138****5678");
}

#[tokio::test]
async fn agent_messages_taking_the_customer_off_the_platform_are_blocked_and_audited() {
    let roster = write_roster("leaks", &[("a01", "小王", &["after_sale", "pre_sale"], 3)]);
    let roster = roster.to_str().unwrap().to_string();
    let app = spawn_app_with(&[
        ("KEFU__AGENTS__FILE", &roster),
        ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
        ("KEFU__SERVER__ADMIN_TOKEN", crate::records::TOKEN),
    ])
    .await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, _) = app.connect_customer("").await;
    c.send(json!({"type":"request_human"})).await;
    let session = agent.recv_type("assigned").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    c.recv_type("agent_joined").await;

    let attempts = [
        ("b1", "加我微信 abc123", "wechat"),
        ("b2", "vx: kefu_2024", "wechat"),
        ("b3", "QQ 12345678", "qq"),
        ("b4", "直接转账到支付宝，便宜点", "payment"),
        ("b5", "私下付款吧", "payment"),
        ("b6", "打我电话 138-1234-5678", "phone"),
        ("b7", "加我ｖｘ：ｗａｎｇ\u{200b}ｘｉａｏ", "wechat"),
    ];
    for (id, text, rule) in attempts {
        agent
            .send(json!({"type":"message","session":session,"id":id,"text":text}))
            .await;
        let err = agent.recv_type("error").await;
        assert_eq!(err["code"], "blocked_content", "{text}: {err}");
        assert_eq!(err["id"], id);
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{rule}`")), "{text}: {message}");
    }
    // A normal answer still goes through, and is the only agent message the customer gets.
    agent
        .send(
            json!({"type":"message","session":session,"id":"ok-1","text":"退款会原路退回到支付宝"}),
        )
        .await;
    assert_eq!(agent.recv_type("ack").await["id"], "ok-1");
    let got = c.recv_type("message").await;
    assert_eq!(got["id"], "ok-1", "{got}");

    let (_, metrics) = app.get("/metrics").await;
    for rule in ["wechat", "qq", "payment", "phone"] {
        let line = format!("kefu_leaks_blocked_total{{rule=\"{rule}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
    // Audited with the rule and the chat, never the text (written off the agent's path, so
    // give the store a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (audit, blocked) = loop {
        let audit = crate::records::admin_json(&app, "/admin/audit?operator=agent:a01").await;
        let blocked: Vec<Value> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "leak_blocked")
            .cloned()
            .collect();
        if blocked.len() >= attempts.len() || std::time::Instant::now() > deadline {
            break (audit, blocked);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(blocked.len(), attempts.len(), "{audit}");
    assert_eq!(blocked[0]["target"], format!("session:{session}"));
    assert!(blocked.iter().any(|e| e["detail"] == "rule=qq"), "{audit}");
    let text = audit.to_string();
    assert!(
        !text.contains("abc123") && !text.contains("12345678"),
        "{text}"
    );
}

#[test]
fn a_bad_leak_rule_stops_the_gateway_naming_its_key() {
    let env: std::collections::HashMap<String, String> = [(
        "KEFU__LEAKS__RULES".to_string(),
        r#"[{name = "ok", pattern = "a+"}, {name = "broken", pattern = "(unclosed"}]"#.to_string(),
    )]
    .into();
    let err = gateway::Settings::load(None, &env).unwrap_err().to_string();
    assert!(err.contains("leaks.rules[1].pattern"), "{err}");
    assert!(
        err.contains("broken") && err.contains("KEFU__LEAKS__RULES"),
        "{err}"
    );
}
