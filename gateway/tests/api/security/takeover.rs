//! Session takeover: a session id alone (which agents, logs and load balancers see) must not
//! be enough to resume a session.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{resume_query, spawn_app, spawn_app_with, write_roster, Client, Event};

/// A resume attempt that must be refused: `session_unknown` at seq 0, then a new greeting.
async fn refused(mut attacker: Client, real: &Value) -> Client {
    let error = attacker.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "session_unknown", "{error}");
    assert_eq!(error["seq"], 0);
    let message = error["message"].as_str().unwrap();
    assert!(!message.contains(real["session_id"].as_str().unwrap()));
    let greeting = attacker.recv().await;
    assert_eq!(greeting["type"], "greeting", "{greeting}");
    assert_eq!(greeting["seq"], 1);
    assert_ne!(greeting["session_id"], real["session_id"]);
    assert_ne!(greeting["resume_token"], real["resume_token"]);
    attacker
}

#[tokio::test]
async fn the_greeting_carries_a_random_128_bit_resume_token() {
    let app = spawn_app().await;
    let (_a, ga) = app.connect_customer("").await;
    let (_b, gb) = app.connect_customer("").await;
    let token = ga["resume_token"].as_str().unwrap();
    assert_eq!(token.len(), 32, "{ga}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(ga["resume_token"], gb["resume_token"]);
}

#[tokio::test]
async fn a_resume_without_the_right_token_is_refused_and_the_real_session_is_not_kicked() {
    // The bot's first-miss clarification would add a hand-off frame mid-test; not what this
    // test is about.
    let app = spawn_app_with(&[("KEFU__HANDOFF__FIRST_MISS", "handoff")]).await;
    let (mut real, greeting) = app.connect_customer("").await;
    let id = greeting["session_id"].as_str().unwrap().to_string();
    real.say("r1", "我的订单").await;
    real.recv_type("ack").await;

    let attempts = [
        format!("/ws/customer?session={id}&last_seq=0"),
        format!("/ws/customer?session={id}&last_seq=0&resume_token="),
        format!(
            "/ws/customer?session={id}&last_seq=0&resume_token={}",
            "0".repeat(32)
        ),
        format!(
            "/ws/customer?session={id}&last_seq=0&resume_token={}",
            "f".repeat(500)
        ),
    ];
    for query in &attempts {
        let attacker = app.try_connect(query).await.unwrap();
        let mut attacker = refused(attacker, &greeting).await;
        // The attacker got a session of its own and nothing of the real one.
        attacker.say("x1", "hello").await;
        let ack = attacker.recv_type("ack").await;
        assert_eq!(ack["seq"], 2, "{ack}");
    }
    // An id that never existed gets exactly the same answer.
    let unknown = app
        .try_connect("/ws/customer?session=0123456789abcdef&last_seq=0&resume_token=abc")
        .await
        .unwrap();
    refused(unknown, &greeting).await;

    // The real customer was never kicked: the socket is live and its seq continues.
    let before = real.last_seq;
    real.drain(Duration::from_millis(200)).await;
    real.say("r2", "还在吗").await;
    let ack = real.recv_type("ack").await;
    assert!(ack["seq"].as_u64().unwrap() > before);

    // The owner, with the token, still resumes (and takes over its own socket).
    let mut back = app
        .try_connect(&resume_query(&greeting, real.last_seq))
        .await
        .unwrap();
    back.last_seq = real.last_seq;
    match real.next_event().await {
        Event::Closed(_) => {}
        other => panic!("the owner's old socket should close, got {other:?}"),
    }
    back.say("r3", "back").await;
    assert_eq!(back.recv_type("ack").await["id"], "r3");
}

#[tokio::test]
async fn agents_never_see_the_resume_token() {
    let roster = write_roster(
        "takeover",
        &[("a01", "小王", &["pre_sale", "after_sale"], 5)],
    );
    let roster = roster.to_str().unwrap().to_string();
    let app = spawn_app_with(&[
        ("KEFU__AGENTS__FILE", &roster),
        ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
    ])
    .await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, greeting) = app.connect_customer("").await;
    let token = greeting["resume_token"].as_str().unwrap().to_string();
    c.say("m1", "你好").await;
    c.send(json!({"type":"request_human"})).await;
    let assigned = agent.recv_type("assigned").await;
    c.send(json!({"type":"typing"})).await;
    c.say("m2", "在吗").await;
    let mut seen = vec![assigned];
    seen.extend(agent.drain(Duration::from_millis(500)).await);
    for frame in &seen {
        assert!(!frame.to_string().contains(&token), "token leaked: {frame}");
    }
    assert!(seen.iter().any(|f| f["type"] == "message"), "{seen:?}");
}
