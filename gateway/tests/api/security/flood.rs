//! Floods: every inbound frame counts against a frame budget; typing is coalesced, never
//! replayed and never costs a slow client its connection; an agent replay with a gap
//! rebuilds the agent's chats instead of skipping frames.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, write_roster, Client, TestApp};

/// A gateway with one agent (`a01`) ready and one customer assigned to it.
async fn chat(name: &str, extra: &[(&str, &str)]) -> (TestApp, Client, Client, Value) {
    let roster = write_roster(name, &[("a01", "小王", &["pre_sale", "after_sale"], 5)]);
    let roster = roster.to_str().unwrap().to_string();
    let mut env = vec![
        ("KEFU__AGENTS__FILE", roster.as_str()),
        ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, greeting) = app.connect_customer("").await;
    c.send(json!({"type":"request_human"})).await;
    c.recv_type("agent_joined").await;
    agent.recv_type("assigned").await;
    (app, agent, c, greeting)
}

fn count(frames: &[Value], kind: &str) -> usize {
    frames.iter().filter(|f| f["type"] == kind).count()
}

#[tokio::test]
async fn a_typing_flood_is_coalesced_and_rate_limited_and_the_session_survives() {
    let (app, mut agent, mut c, greeting) = chat("flood", &[]).await;
    let session = greeting["session_id"].as_str().unwrap();
    let flood = async {
        for _ in 0..400 {
            c.send(json!({"type":"typing"})).await;
        }
    };
    // Meanwhile an unrelated customer is greeted.
    let (_, (_other, greeting)) = tokio::join!(flood, app.connect_customer(""));
    assert_eq!(greeting["seq"], 1);

    let to_agent = agent.drain(Duration::from_millis(600)).await;
    let typing = count(&to_agent, "typing");
    assert!(
        (1..=2).contains(&typing),
        "coalesced to one a second: {to_agent:?}"
    );
    assert!(to_agent
        .iter()
        .all(|f| f["type"] != "typing" || f["seq"] == 0));
    let frames = c.drain(Duration::from_millis(300)).await;
    let limited: Vec<&Value> = frames
        .iter()
        .filter(|f| f["code"] == "rate_limited")
        .collect();
    assert!(
        (1..=2).contains(&limited.len()),
        "told, but not once per dropped frame: {frames:?}"
    );

    // The session lives on once the budget refills.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.say("m1", "还在吗").await;
    assert_eq!(c.recv_type("ack").await["id"], "m1");
    assert_eq!(agent.recv_type("message").await["id"], "m1");

    // The agent's typing is coalesced the same way and reaches the customer unnumbered.
    for _ in 0..30 {
        agent.send(json!({"type":"typing","session":session})).await;
    }
    let got = c.drain(Duration::from_millis(500)).await;
    assert_eq!(count(&got, "typing"), 1, "{got:?}");
    assert!(got.iter().all(|f| f["type"] != "typing" || f["seq"] == 0));
}

#[tokio::test]
async fn junk_frames_count_against_the_budget_too() {
    let app = spawn_app_with(&[
        ("KEFU__LIMITS__FRAME_BURST", "5"),
        ("KEFU__LIMITS__FRAMES_PER_SECOND", "1.0"),
    ])
    .await;
    let (mut c, _) = app.connect_customer("").await;
    for _ in 0..50 {
        c.send_raw(tokio_tungstenite::tungstenite::Message::text("junk"))
            .await;
    }
    let frames = c.drain(Duration::from_millis(400)).await;
    assert_eq!(
        frames.iter().filter(|f| f["code"] == "bad_json").count(),
        5,
        "{frames:?}"
    );
    assert_eq!(
        frames
            .iter()
            .filter(|f| f["code"] == "rate_limited")
            .count(),
        1,
        "{frames:?}"
    );
}

#[tokio::test]
async fn typing_is_never_replayed_on_resume() {
    let (app, mut agent, mut c, greeting) = chat("typing-replay", &[]).await;
    let session = greeting["session_id"].as_str().unwrap();
    c.drain(Duration::from_millis(300)).await;
    let seen = c.last_seq;
    agent.send(json!({"type":"typing","session":session})).await;
    let typing = c.recv_type("typing").await;
    assert_eq!(typing["seq"], 0, "{typing}");
    agent
        .send(json!({"type":"message","session":session,"id":"a-1","text":"您好"}))
        .await;
    c.recv_type("message").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut back = app
        .try_connect(&crate::helpers::resume_query(&greeting, seen))
        .await
        .unwrap();
    back.last_seq = seen;
    let replay = back.drain(Duration::from_millis(400)).await;
    assert_eq!(count(&replay, "typing"), 0, "{replay:?}");
    assert_eq!(count(&replay, "message"), 1, "{replay:?}");
}

#[tokio::test]
async fn an_agent_replay_with_a_gap_rebuilds_its_chats() {
    let (app, agent, mut c, greeting) = chat("gap", &[("KEFU__SESSION__REPLAY_FRAMES", "4")]).await;
    let session = greeting["session_id"].as_str().unwrap();
    let seen = agent.last_seq;
    drop(agent);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..8 {
        c.say(&format!("g{i}"), &format!("消息 {i}")).await;
        c.recv_type("ack").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut back = app
        .try_connect_agent_at(&format!("/ws/agent?last_seq={seen}"), "a01.secret")
        .await
        .unwrap();
    // The rebuild is numbered after everything the outbox handed out while away.
    back.last_seq = seen + 8;
    let frames = back.drain(Duration::from_millis(600)).await;
    assert!(!frames.is_empty());
    assert_eq!(frames[0]["type"], "welcome", "{frames:?}");
    let rebuilt = frames
        .iter()
        .find(|f| f["type"] == "assigned")
        .unwrap_or_else(|| panic!("no rebuild: {frames:?}"));
    assert_eq!(rebuilt["session"], session);
    assert_eq!(rebuilt["resumed"], true);
    let history: Vec<&str> = rebuilt["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    for i in 0..8 {
        let id = format!("g{i}");
        assert!(history.contains(&id.as_str()), "{id} missing: {history:?}");
    }
}
