//! A node dies or is deployed mid-chat; the customer and the agent go on elsewhere (or on the
//! same node after its restart) with nothing acknowledged lost and nothing twice.

use std::time::Duration;

use serde_json::json;

use super::node::{roster, Node};
use super::{agent_says, hand_to_agent, of_type, say_acked};
use crate::helpers::{resume_query, Client};
use crate::support::redis_server::{unique_prefix, RedisServer};

/// Settings of a node on the shared Redis.
pub fn redis_env(url: &str, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("KEFU__DISPATCH__BACKEND".into(), "redis".into()),
        ("KEFU__DISPATCH__REDIS_URL".into(), url.to_string()),
        ("KEFU__DISPATCH__KEY_PREFIX".into(), prefix.to_string()),
    ]
}

/// The customer's node is killed; the customer resumes on the other node and gets exactly
/// the frames after its `last_seq`; the agent's message written after the kill arrives once;
/// both sides go on talking.
pub async fn customer_node_killed(env: Vec<(String, String)>) {
    let roster = roster();
    let mut a = Node::start("node-a", &roster, &env).await;
    let b = Node::start("node-b", &roster, &env).await;
    let mut agent = b.app().connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, greeting) = a.app().connect_customer("").await;
    let session = hand_to_agent(&mut c, &mut agent).await;
    say_acked(&mut c, "c-1", "我的快递还没到").await;
    assert_eq!(agent.recv_type("message").await["id"], "c-1");
    agent_says(&mut agent, &session, "a-1", "我帮您查一下").await;
    assert_eq!(c.recv_type("message").await["id"], "a-1");
    let seen = c.last_seq;

    a.kill();
    // Acknowledged to the agent while the customer's node is down: durable, delivered later.
    agent_says(&mut agent, &session, "a-2", "已经在路上了，明天到").await;

    let mut resumed = b
        .app()
        .try_connect(&resume_query(&greeting, seen))
        .await
        .expect("resume on the other node");
    resumed.last_seq = seen;
    let frames = resumed.drain(Duration::from_millis(1500)).await;
    assert!(
        of_type(&frames, "error").is_empty(),
        "resumed, not a new session: {frames:?}"
    );
    let messages = of_type(&frames, "message");
    assert_eq!(messages.len(), 1, "a-2 exactly once: {frames:?}");
    assert_eq!(messages[0]["id"], "a-2");
    assert!(frames
        .iter()
        .all(|f| f["seq"].as_u64().unwrap_or(0) > seen || f["seq"] == 0));

    // The chat goes on from the new node, both ways.
    say_acked(&mut resumed, "c-2", "好的谢谢").await;
    let to_agent = agent.recv_type("message").await;
    assert_eq!(to_agent["id"], "c-2", "{to_agent}");
    agent_says(&mut agent, &session, "a-3", "不客气").await;
    let last = resumed.recv_type("message").await;
    assert_eq!(last["id"], "a-3");
    resumed.assert_silent(Duration::from_millis(300)).await;

    // The killed node comes back; nothing it held is served twice.
    a.restart().await;
    agent_says(&mut agent, &session, "a-4", "还有别的问题吗").await;
    assert_eq!(resumed.recv_type("message").await["id"], "a-4");
    resumed.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn on_redis_the_customer_resumes_on_another_node_after_a_kill() {
    let redis = RedisServer::start();
    customer_node_killed(redis_env(redis.url(), &unique_prefix("kill"))).await;
}

/// The agent's node is killed: the agent signs in on the other node and gets every chat it
/// holds again, `resumed`, with the full history; the chat goes on.
#[tokio::test]
async fn on_redis_an_agent_moves_to_another_node_and_gets_its_chats_back() {
    let redis = RedisServer::start();
    let env = redis_env(redis.url(), &unique_prefix("agent-move"));
    let roster = roster();
    let a = Node::start("node-a", &roster, &env).await;
    let mut b = Node::start("node-b", &roster, &env).await;
    let mut agent = b.app().connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, _) = a.app().connect_customer("").await;
    let session = hand_to_agent(&mut c, &mut agent).await;
    say_acked(&mut c, "c-1", "订单号是多少来着").await;
    agent.recv_type("message").await;
    agent_says(&mut agent, &session, "a-1", "请稍等").await;
    assert_eq!(c.recv_type("message").await["id"], "a-1");
    let seq = agent.last_seq;
    b.kill();

    let mut moved = a
        .app()
        .try_connect_agent_at(&format!("/ws/agent?last_seq={seq}"), "a01.secret")
        .await
        .expect("agent on the other node");
    moved.last_seq = seq;
    let welcome = moved.recv_type("welcome").await;
    assert_eq!(welcome["agent"], "a01");
    let assigned = moved.recv_type("assigned").await;
    assert_eq!(assigned["session"], session.as_str());
    assert_eq!(assigned["resumed"], true);
    let history: Vec<String> = assigned["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["id"].as_str().map(str::to_string))
        .collect();
    assert!(history.contains(&"c-1".to_string()), "{history:?}");
    assert!(history.contains(&"a-1".to_string()), "{history:?}");

    // Both ways, through the agent's new node.
    agent_says(&mut moved, &session, "a-2", "查到了").await;
    assert_eq!(c.recv_type("message").await["id"], "a-2");
    say_acked(&mut c, "c-2", "谢谢").await;
    assert_eq!(moved.recv_type("message").await["id"], "c-2");
}

/// A deploy: SIGTERM tells every connected client `reconnect` and closes with 1012; they
/// resume on the other node with nothing lost; the restarted node serves again.
#[tokio::test]
async fn on_redis_a_deploy_sends_reconnect_and_clients_resume_elsewhere() {
    let redis = RedisServer::start();
    let env = redis_env(redis.url(), &unique_prefix("deploy"));
    let roster = roster();
    let mut a = Node::start("node-a", &roster, &env).await;
    let b = Node::start("node-b", &roster, &env).await;
    let mut agent = b.app().connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, greeting) = a.app().connect_customer("").await;
    let session = hand_to_agent(&mut c, &mut agent).await;
    say_acked(&mut c, "c-1", "在吗").await;

    a.terminate().await;
    let reconnect = c.recv().await;
    assert_eq!(reconnect["type"], "reconnect", "{reconnect}");
    assert_eq!(reconnect["seq"].as_u64(), Some(c.last_seq));
    match c.next_event().await {
        crate::helpers::Event::Closed(code) => assert_eq!(code.map(u16::from), Some(1012)),
        other => panic!("expected a close 1012, got {other:?}"),
    }
    let seen = c.last_seq;
    let mut resumed: Client = b
        .app()
        .try_connect(&resume_query(&greeting, seen))
        .await
        .expect("resume elsewhere");
    resumed.last_seq = seen;
    agent.recv_type("message").await; // c-1
    agent_says(&mut agent, &session, "a-1", "在的").await;
    let frames = resumed.drain(Duration::from_millis(2000)).await;
    assert!(of_type(&frames, "error").is_empty(), "{frames:?}");
    assert_eq!(of_type(&frames, "message").len(), 1, "{frames:?}");
    a.restart().await;
}

/// One node, memory routing, its log in SQLite: killed with open chats and started again,
/// every acknowledged message is still there and the customers resume.
#[tokio::test]
async fn on_one_node_with_sqlite_a_kill_and_restart_loses_nothing_acknowledged() {
    let roster = roster();
    let mut node = Node::start("solo", &roster, &[]).await;
    let mut agent = node.app().connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut with_agent, greeting_1) = node.app().connect_customer("").await;
    let session = hand_to_agent(&mut with_agent, &mut agent).await;
    let (mut with_bot, greeting_2) = node.app().connect_customer("lang=en").await;
    for i in 0..5 {
        say_acked(&mut with_agent, &format!("w-{i}"), &format!("第{i}个问题")).await;
        say_acked(
            &mut with_bot,
            &format!("b-{i}"),
            &format!("question number {i}"),
        )
        .await;
    }
    agent_says(&mut agent, &session, "a-1", "您好").await;
    with_agent.recv_type("message").await;
    let seen_1 = with_agent.last_seq;
    let seen_2 = with_bot.drain(Duration::from_millis(500)).await.len() as u64;
    let seen_2 = seen_2.max(with_bot.last_seq);

    node.kill();
    node.restart().await;

    for (greeting, seen, prefix) in [(&greeting_1, seen_1, "w"), (&greeting_2, seen_2, "b")] {
        let mut c = node
            .app()
            .try_connect(&resume_query(greeting, seen))
            .await
            .expect("resume after the restart");
        c.last_seq = seen;
        let frames = c.drain(Duration::from_millis(500)).await;
        assert!(of_type(&frames, "error").is_empty(), "{prefix}: {frames:?}");
        // A re-send of an acknowledged message is known: acknowledged as a duplicate.
        c.say(&format!("{prefix}-4"), "again").await;
        let ack = c.recv_type("ack").await;
        assert_eq!(ack["duplicate"], true, "{ack}");
    }

    // The agent comes back and gets the chat with every acknowledged message in its history.
    let mut agent = node.app().connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let assigned = agent.recv_type("assigned").await;
    assert_eq!(assigned["session"], session.as_str());
    let ids: Vec<&str> = assigned["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    for i in 0..5 {
        assert!(ids.contains(&format!("w-{i}").as_str()), "{ids:?}");
    }
    assert!(ids.contains(&"a-1"), "{ids:?}");
}

/// A node dies and its customer never comes back: another node takes the session over once
/// the dead node's liveness ran out, and ends it when its grace period is over, so its record
/// reaches a store.
#[tokio::test]
async fn on_redis_a_dead_nodes_abandoned_session_is_ended_and_stored_elsewhere() {
    let redis = RedisServer::start();
    let mut env = redis_env(redis.url(), &unique_prefix("orphan"));
    env.push(("KEFU__SESSION__GRACE_PERIOD_S".into(), "1".into()));
    let roster = roster();
    let mut a = Node::start("node-a", &roster, &env).await;
    let b = Node::start("node-b", &roster, &env).await;
    let (mut c, _) = a.app().connect_customer("").await;
    say_acked(&mut c, "c-1", "有人吗").await;
    a.kill();
    drop(c);
    let mut stored = 0.0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stored = metric(&b, "kefu_conversations_stored_total").await;
        if stored >= 1.0 {
            break;
        }
    }
    assert!(
        stored >= 1.0,
        "the abandoned conversation was stored by node b"
    );
    assert!(metric(&b, "kefu_sessions_taken_over_total").await >= 1.0);
}

/// A counter's value on a node's `/metrics` (0 when absent).
pub async fn metric(node: &Node, name: &str) -> f64 {
    let (_, body) = node.app().get("/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}
