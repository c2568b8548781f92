//! Memory growth: what a client sends cannot grow the node without bound.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, spawn_app_with, write_roster};

#[tokio::test]
async fn feedback_and_pick_must_name_an_entry_offered_in_this_session() {
    let app = spawn_app().await;
    let (mut c, _) = app.connect_customer("").await;
    // A real entry, but the bot never offered it here.
    c.send(json!({"type":"pick","entry_id":"shipping-time-zh"}))
        .await;
    let error = c.recv().await;
    assert_eq!(error["code"], "bad_field", "{error}");
    for helpful in [true, false] {
        c.send(json!({"type":"feedback","entry_id":"made-up","helpful":helpful}))
            .await;
        let error = c.recv().await;
        assert_eq!(error["code"], "bad_field", "{error}");
    }
    // Nothing was handed off or stored because of them: the bot still answers.
    c.say("q", "hello").await;
    assert_eq!(c.recv_type("ack").await["id"], "q");
}

#[tokio::test]
async fn long_string_fields_are_refused_with_too_long() {
    let roster = write_roster("caps", &[("a01", "小王", &["pre_sale"], 5)]);
    let roster = roster.to_str().unwrap().to_string();
    let app = spawn_app_with(&[("KEFU__AGENTS__FILE", &roster)]).await;
    let (mut c, _) = app.connect_customer("").await;
    let long = "e".repeat(5000);
    for frame in [
        json!({"type":"pick","entry_id":long}),
        json!({"type":"feedback","entry_id":long,"helpful":false}),
        json!({"type":"message","id":long,"text":"hi"}),
    ] {
        c.send(frame).await;
        let error = c.recv().await;
        assert_eq!(error["code"], "too_long", "{error}");
        assert!(
            error.to_string().len() < 400,
            "nothing long is echoed: {error}"
        );
    }
    let mut agent = app.connect_agent("a01.secret").await;
    for frame in [
        json!({"type":"transfer","session":"s","group":long}),
        json!({"type":"transfer","session":"s","agent":long}),
        json!({"type":"message","session":long,"id":"a","text":"hi"}),
        json!({"type":"typing","session":long}),
        json!({"type":"close","session":long}),
    ] {
        agent.send(frame).await;
        let error = agent.recv().await;
        assert_eq!(error["code"], "too_long", "{error}");
    }
    // Long query parameters are refused before the upgrade.
    let session = "s".repeat(500);
    assert!(app
        .try_connect(&format!("/ws/customer?session={session}"))
        .await
        .is_err());
}

#[tokio::test]
async fn the_transcript_is_capped_with_transcript_full_and_the_session_lives_on() {
    let app = spawn_app_with(&[
        ("KEFU__SESSION__TRANSCRIPT_ENTRIES", "6"),
        ("KEFU__LIMITS__MESSAGE_BURST", "100"),
    ])
    .await;
    let (mut c, _) = app.connect_customer("lang=en").await;
    let mut full = None;
    for i in 0..10 {
        c.say(&format!("m{i}"), "hello there").await;
        let frames = c.drain(Duration::from_millis(200)).await;
        if let Some(e) = frames.iter().find(|f| f["code"] == "transcript_full") {
            full = Some((i, e.clone()));
            break;
        }
    }
    let (at, error) = full.expect("the cap is reached");
    assert!(at <= 6, "{at}");
    assert_eq!(error["id"], format!("m{at}"));
    // Another customer is unaffected, and this session still answers.
    let (_other, greeting) = app.connect_customer("").await;
    assert_eq!(greeting["seq"], 1);
    c.say(&format!("m{at}"), "hello there").await;
    assert_eq!(c.recv().await["code"], "transcript_full");
    c.send(json!({"type":"close"})).await;
    assert_eq!(c.recv_type("closed").await["reason"], "customer_closed");
}

#[tokio::test]
async fn an_unknown_type_is_not_echoed_in_full() {
    let app = spawn_app().await;
    let (mut c, _) = app.connect_customer("").await;
    let kind = "x".repeat(10_000);
    c.send_raw(Message::text(json!({ "type": kind }).to_string()))
        .await;
    let error = c.recv().await;
    assert_eq!(error["code"], "unknown_type");
    let message = error["message"].as_str().unwrap();
    assert!(message.len() < 300, "{message}");
    assert!(message.contains(&"x".repeat(64)));
}

#[tokio::test]
async fn a_transfer_to_an_unknown_group_is_refused_and_the_chat_stays() {
    let roster = write_roster(
        "unknown-group",
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
    let (mut c, _) = app.connect_customer("").await;
    c.send(json!({"type":"request_human"})).await;
    let session = agent.recv_type("assigned").await["session"].clone();
    agent
        .send(json!({"type":"transfer","session":session,"group":"no-such-group"}))
        .await;
    assert_eq!(agent.recv_type("error").await["code"], "unknown_group");
    agent
        .send(json!({"type":"message","session":session,"id":"a-1","text":"还在"}))
        .await;
    assert_eq!(agent.recv_type("ack").await["id"], "a-1");
    assert_eq!(c.recv_type("message").await["id"], "a-1");
}

#[tokio::test]
async fn a_queue_with_no_agent_ready_is_said_so() {
    let app = spawn_app().await;
    let (mut c, _) = app.connect_customer("").await;
    c.send(json!({"type":"request_human"})).await;
    let queued = c.recv_type("queued").await;
    assert_eq!(queued["no_agent_available"], true, "{queued}");
}
