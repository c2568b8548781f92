use std::time::Duration;

use serde_json::json;

use crate::helpers::{resume_query, spawn_app, spawn_app_with};

#[tokio::test]
async fn greeting_is_the_first_frame_with_seq_1() {
    let app = spawn_app().await;
    let (_c, greeting) = app.connect_customer("lang=zh").await;
    assert_eq!(greeting["seq"], 1);
    assert!(greeting["session_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(greeting["text"].as_str().unwrap().contains("您好"));

    let (_c, en) = app.connect_customer("lang=en&channel=web").await;
    assert!(en["text"].as_str().unwrap().starts_with("Hello"));
    let (_c, app_zh) = app.connect_customer("channel=app").await;
    assert!(app_zh["text"].as_str().unwrap().contains("App"), "{app_zh}");
    assert_ne!(greeting["session_id"], en["session_id"]);

    // The greeting latency is recorded as a histogram.
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains("kefu_greeting_latency_seconds_bucket"),
        "{metrics}"
    );
    let count_line = metrics
        .lines()
        .find(|l| l.starts_with("kefu_greeting_latency_seconds_count"))
        .expect("count line");
    let count: f64 = count_line
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 3.0, "{count_line}");
}

#[tokio::test]
async fn greeting_script_comes_from_config() {
    let app = spawn_app_with(&[("KEFU__GREETING__CHANNELS__H5__ZH", "H5 专属问候")]).await;
    let (_c, greeting) = app.connect_customer("channel=h5&lang=zh").await;
    assert_eq!(greeting["text"], "H5 专属问候");
}

#[tokio::test]
async fn messages_are_acked_once_and_resends_are_not_stored_twice() {
    let app = spawn_app().await;
    let (mut c, _) = app.connect_customer("").await;
    c.say("m1", "你好").await;
    let ack = c.recv().await;
    assert_eq!(ack, json!({"type":"ack","id":"m1","seq":2}));
    let after_first = c.drain(Duration::from_millis(300)).await;
    c.say("m1", "你好").await;
    let again = c.recv().await;
    assert_eq!(again["type"], "ack");
    assert_eq!(again["id"], "m1");
    assert_eq!(again["duplicate"], true);
    // A re-send is not processed again: nothing follows its ack.
    c.assert_silent(Duration::from_millis(300)).await;
    c.say("m2", "在吗").await;
    let ack2 = c.recv().await;
    assert_eq!(ack2["id"], "m2");
    assert!(ack2.get("duplicate").is_none());
    let _ = after_first;
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_frames() {
    let app = spawn_app().await;
    let (mut c, greeting) = app.connect_customer("lang=en").await;
    c.say("a", "one").await;
    c.drain(Duration::from_millis(300)).await; // seen: up to c.last_seq
    let seen = c.last_seq;
    c.say("b", "two").await;
    c.say("c", "three").await;
    // The server takes both; this client reads none of the answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut resumed = app
        .try_connect(&resume_query(&greeting, seen))
        .await
        .unwrap();
    resumed.last_seq = seen; // drain() asserts the replay continues exactly from here
    let missed = resumed.drain(Duration::from_millis(300)).await;
    assert!(!missed.is_empty());
    let acks: Vec<&str> = missed
        .iter()
        .filter(|f| f["type"] == "ack")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(acks, vec!["b", "c"], "{missed:?}");
    assert!(missed.iter().all(|f| f["type"] != "greeting"));
    // Re-sending "c" after the reconnect is acknowledged again, not stored twice.
    resumed.say("c", "three").await;
    let dup = resumed.recv().await;
    assert_eq!(dup["duplicate"], true);
    resumed.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_resume_takes_over_a_still_open_socket() {
    let app = spawn_app().await;
    let (mut old, greeting) = app.connect_customer("").await;
    let mut new = app.try_connect(&resume_query(&greeting, 1)).await.unwrap();
    new.last_seq = 1;
    match old.next_event().await {
        crate::helpers::Event::Closed(_) => {}
        other => panic!("old socket should be closed, got {other:?}"),
    }
    new.say("x", "still here").await;
    assert_eq!(new.recv().await["seq"], 2);
}

#[tokio::test]
async fn resume_after_the_grace_period_gets_an_error_and_a_new_session() {
    let app = spawn_app_with(&[("KEFU__SESSION__GRACE_PERIOD_S", "1")]).await;
    let (c, greeting) = app.connect_customer("").await;
    let old = greeting["session_id"].as_str().unwrap().to_string();
    drop(c);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut again = app.try_connect(&resume_query(&greeting, 1)).await.unwrap();
    let error = again.recv().await;
    assert_eq!(error["type"], "error");
    // Forgotten by the once-a-second reaper by now: the id is no longer known.
    assert_eq!(error["code"], "session_unknown");
    assert_eq!(error["seq"], 0);
    let greeting = again.recv().await;
    assert_eq!(greeting["type"], "greeting");
    assert_eq!(greeting["seq"], 1);
    assert_ne!(greeting["session_id"], old.as_str());
}

#[tokio::test]
async fn customer_close_ends_the_session() {
    let app = spawn_app().await;
    let (mut c, greeting) = app.connect_customer("").await;
    c.send(json!({"type":"close"})).await;
    let closed = c.recv().await;
    assert_eq!(closed["type"], "closed");
    assert_eq!(closed["reason"], "customer_closed");
    let mut later = app.try_connect(&resume_query(&greeting, 2)).await.unwrap();
    assert_eq!(later.recv().await["code"], "session_unknown");
}
