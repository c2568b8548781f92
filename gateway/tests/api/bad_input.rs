use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{resume_query, spawn_app, spawn_app_with, Event};

#[tokio::test]
async fn each_bad_frame_gets_its_error_code_and_the_session_lives_on() {
    let app = spawn_app().await;
    let (mut c, _) = app.connect_customer("").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("this is not json"), "bad_json"),
        (Message::text(r#"{"type":"dance"}"#), "unknown_type"),
        (Message::text(r#"{"type":"message","id":"x"}"#), "bad_field"),
        (
            Message::text(r#"{"type":"message","id":5,"text":"hi"}"#),
            "bad_field",
        ),
        (Message::text(r#"{"no_type":true}"#), "bad_field"),
        (Message::binary(vec![1u8, 2, 3]), "binary_not_supported"),
        (
            Message::text(r#"{"type":"message","id":"e","text":"   "}"#),
            "bad_field",
        ),
    ];
    for (frame, code) in cases {
        c.send_raw(frame).await;
        let error = c.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.say("ok", "still alive").await;
    let ack = c.recv().await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["id"], "ok");
}

#[tokio::test]
async fn too_long_text_is_refused_with_its_length() {
    let app = spawn_app().await;
    let (mut c, _) = app.connect_customer("").await;
    c.say("long", &"好".repeat(2001)).await;
    let error = c.recv().await;
    assert_eq!(error["code"], "too_long");
    assert_eq!(error["id"], "long");
    assert!(error["message"].as_str().unwrap().contains("2001"));
    c.say("fits", &"好".repeat(2000)).await;
    assert_eq!(c.recv().await["type"], "ack");
}

#[tokio::test]
async fn oversized_frame_closes_with_1009_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let (mut big, greeting) = app.connect_customer("").await;
    let (mut other, _) = app.connect_customer("").await;
    big.send_raw(Message::text("x".repeat(17 * 1024))).await;
    match big.next_event().await {
        Event::Closed(code) => assert_eq!(code, Some(CloseCode::Size)),
        Event::Frame(f) => panic!("expected a close, got {f}"),
    }
    other.say("o1", "fine").await;
    assert_eq!(other.recv().await["type"], "ack");
    // The session of the closed socket is still resumable.
    let mut back = app.try_connect(&resume_query(&greeting, 1)).await.unwrap();
    back.last_seq = 1;
    back.say("b1", "back").await;
    assert_eq!(back.recv().await["seq"], 2);
}

#[tokio::test]
async fn message_floods_are_rate_limited_without_losing_the_session() {
    let app = spawn_app_with(&[
        ("KEFU__LIMITS__MESSAGE_BURST", "3"),
        ("KEFU__LIMITS__MESSAGES_PER_SECOND", "0.5"),
    ])
    .await;
    let (mut c, _) = app.connect_customer("").await;
    for i in 0..6 {
        c.say(&format!("f{i}"), "spam").await;
    }
    let frames = c.drain(std::time::Duration::from_millis(500)).await;
    let acked: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "ack")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    let limited: Vec<&str> = frames
        .iter()
        .filter(|f| f["code"] == "rate_limited")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(acked, vec!["f0", "f1", "f2"], "{frames:?}");
    assert_eq!(limited, vec!["f3", "f4", "f5"], "{frames:?}");
    // A rate-limited message was not stored: re-sending it later is a fresh message.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    c.say("f3", "spam").await;
    let ack = c.recv_type("ack").await;
    assert_eq!(ack["id"], "f3");
    assert!(ack.get("duplicate").is_none(), "{ack}");
}

#[tokio::test]
async fn bad_query_parameters_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let err = app
        .try_connect("/ws/customer?channel=fax")
        .await
        .err()
        .unwrap();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 400);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or(&[])).to_string();
            assert!(body.contains("channel"), "{body}");
        }
        other => panic!("expected HTTP 400, got {other:?}"),
    }
}
