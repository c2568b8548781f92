//! Split brain: the owner is paused (SIGSTOP) past a takeover; when it wakes up it can no
//! longer write or deliver anything of the session: no duplicate frame, nothing stale.

use std::time::Duration;

use serde_json::json;

use super::crash::redis_env;
use super::node::{roster, Node};
use super::{hand_to_agent, of_type, say_acked};
use crate::helpers::resume_query;
use crate::support::redis_server::{unique_prefix, RedisServer};

#[tokio::test]
async fn on_redis_a_paused_owner_cannot_deliver_after_a_takeover() {
    let redis = RedisServer::start();
    let mut env = redis_env(redis.url(), &unique_prefix("split"));
    // The agent greeting is due 3 s after the assignment: the paused node's timer fires
    // after it wakes, when the session is no longer its own.
    env.push(("KEFU__ROUTING__AGENT_GREETING_S".into(), "3".into()));
    let roster = roster();
    let a = Node::start("node-a", &roster, &env).await;
    let b = Node::start("node-b", &roster, &env).await;
    let mut agent = b.app().connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, greeting) = a.app().connect_customer("").await;
    hand_to_agent(&mut c, &mut agent).await;
    say_acked(&mut c, "c-1", "你好").await;
    agent.recv_type("message").await;

    a.pause();
    let seen = c.last_seq;
    drop(c);
    let mut resumed = b
        .app()
        .try_connect(&resume_query(&greeting, seen))
        .await
        .expect("resume while the owner is paused");
    resumed.last_seq = seen;
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.resume();
    // B greets in the agent's name (its own timer); A's timer fires too, after waking.
    let customer_frames = resumed.drain(Duration::from_millis(2500)).await;
    let agent_frames = agent.drain(Duration::from_millis(500)).await;
    assert!(
        of_type(&customer_frames, "error").is_empty(),
        "{customer_frames:?}"
    );
    let auto: Vec<_> = of_type(&customer_frames, "message")
        .into_iter()
        .filter(|m| m["auto"] == true)
        .collect();
    assert_eq!(
        auto.len(),
        1,
        "one greeting in the agent's name: {customer_frames:?}"
    );
    assert_eq!(
        of_type(&agent_frames, "auto_greeting").len(),
        1,
        "the agent hears of one greeting: {agent_frames:?}"
    );
    // The chat goes on with the new owner.
    say_acked(&mut resumed, "c-2", "还在吗").await;
    assert_eq!(agent.recv_type("message").await["id"], "c-2");
    // The woken node tried, and its log refused it.
    let (_, metrics) = a.app().get("/metrics").await;
    let fenced = metrics
        .lines()
        .find(|l| l.starts_with("kefu_journal_fenced_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(fenced >= 1.0, "the stale owner was fenced: {fenced}");
}
