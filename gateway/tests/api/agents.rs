//! Agents and routing over real sockets, on both dispatch backends (memory, and Redis with
//! two gateway nodes sharing one real redis-server).

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, write_roster, Client, TestApp};
use crate::support::redis_server::{unique_prefix, RedisServer};

/// Which dispatch backend a test runs on; keeps the Redis server alive for the test.
pub struct Backend {
    env: Vec<(String, String)>,
    _redis: Option<RedisServer>,
}

impl Backend {
    pub fn memory() -> Self {
        Backend {
            env: vec![],
            _redis: None,
        }
    }

    pub fn redis() -> Self {
        let redis = RedisServer::start();
        let env = vec![
            ("KEFU__DISPATCH__BACKEND".into(), "redis".into()),
            ("KEFU__DISPATCH__REDIS_URL".into(), redis.url().to_string()),
            ("KEFU__DISPATCH__KEY_PREFIX".into(), unique_prefix("api")),
        ];
        Backend {
            env,
            _redis: Some(redis),
        }
    }

    /// A gateway node with the roster and `extra` settings.
    pub async fn node(&self, roster: &std::path::Path, extra: &[(&str, &str)]) -> TestApp {
        let roster = roster.to_str().unwrap().to_string();
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("KEFU__AGENTS__FILE", &roster));
        env.extend_from_slice(extra);
        spawn_app_with(&env).await
    }
}

/// Runs one test body on both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::memory()).await })*
        }
        mod on_redis {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::redis()).await })*
        }
    };
}

both_backends!(
    handoff_assigns_with_history_and_relays_both_ways,
    queue_positions_and_drain_in_order_when_a_chat_closes,
    agent_greeting_goes_out_when_the_agent_is_slow,
    sla_warning_when_a_customer_waits_too_long,
    agent_disconnect_requeues_to_another_agent,
    transfer_to_a_group_carries_the_history,
    customer_leaving_frees_the_agent,
);

const GREETING_OFF: (&str, &str) = ("KEFU__ROUTING__AGENT_GREETING_S", "600");

async fn ready(agent: &mut Client) {
    agent.send(json!({"type":"ready"})).await;
}

async fn ask_human(c: &mut Client) -> Value {
    c.send(json!({"type":"request_human"})).await;
    c.recv_type("handoff").await
}

async fn handoff_assigns_with_history_and_relays_both_ways(backend: Backend) {
    let roster = write_roster("relay", &[("a01", "小王", &["after_sale"], 3)]);
    let app = backend.node(&roster, &[GREETING_OFF]).await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let (mut c, _) = app.connect_customer("visitor=13812345678").await;
    c.say("q1", "退货退款怎么弄 我手机13812345678").await;
    let frames = c.drain(Duration::from_millis(400)).await;
    let handoff = match frames.iter().find(|f| f["type"] == "handoff") {
        Some(h) => h.clone(), // the bot was not sure: handed off already
        None => {
            c.say("q2", "算了 转人工").await;
            c.recv_type("handoff").await
        }
    };
    assert_eq!(handoff["group"], "after_sale", "{handoff}");
    let joined = match frames.iter().find(|f| f["type"] == "agent_joined") {
        Some(j) => j.clone(),
        None => c.recv_type("agent_joined").await,
    };
    assert_eq!(joined["name"], "小王");

    let assigned = agent.recv_type("assigned").await;
    let session = assigned["session"].as_str().unwrap().to_string();
    assert_eq!(assigned["group"], handoff["group"]);
    assert_eq!(assigned["customer"]["visitor"], "138****5678");
    let history = assigned["history"].as_array().unwrap();
    let texts: Vec<&str> = history
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains("138****5678")), "{texts:?}");
    assert!(
        texts.iter().all(|t| !t.contains("13812345678")),
        "{texts:?}"
    );
    assert!(assigned["waited_ms"].as_u64().is_some());

    agent
        .send(
            json!({"type":"message","session":session,"id":"a-1","text":"您好，我来帮您处理退货"}),
        )
        .await;
    assert_eq!(agent.recv_type("ack").await["id"], "a-1");
    let msg = c.recv_type("message").await;
    assert_eq!(msg["id"], "a-1");
    assert_eq!(msg["from"], "agent");
    assert_eq!(msg["name"], "小王");
    assert_eq!(msg["auto"], false);

    c.say("q3", "好的 订单是123").await;
    assert_eq!(c.recv_type("ack").await["id"], "q3");
    let to_agent = agent.recv_type("message").await;
    assert_eq!(to_agent["session"], session.as_str());
    assert_eq!(to_agent["id"], "q3");
    assert_eq!(to_agent["text"], "好的 订单是123");

    // A re-sent agent message is acknowledged, not relayed twice.
    agent
        .send(
            json!({"type":"message","session":session,"id":"a-1","text":"您好，我来帮您处理退货"}),
        )
        .await;
    assert_eq!(agent.recv_type("ack").await["duplicate"], true);
    // An agent cannot write into someone else's chat.
    agent
        .send(json!({"type":"message","session":"not-mine","id":"a-2","text":"hi"}))
        .await;
    assert_eq!(agent.recv_type("error").await["code"], "not_your_chat");
    c.assert_silent(Duration::from_millis(300)).await;
}

async fn queue_positions_and_drain_in_order_when_a_chat_closes(backend: Backend) {
    let roster = write_roster("queue", &[("a01", "小王", &["pre_sale"], 1)]);
    let app = backend.node(&roster, &[GREETING_OFF]).await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let mut customers = Vec::new();
    for _ in 0..3 {
        let (mut c, _) = app.connect_customer("").await;
        ask_human(&mut c).await;
        customers.push(c);
    }
    customers[0].recv_type("agent_joined").await;
    let q1 = customers[1].recv_type("queued").await;
    assert_eq!(q1["position"], 1);
    assert!(q1["estimated_wait_s"].as_u64().is_some());
    assert_eq!(customers[2].recv_type("queued").await["position"], 2);

    let first = agent.recv_type("assigned").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    agent.send(json!({"type":"close","session":first})).await;
    assert_eq!(
        agent.recv_type("chat_ended").await["session"],
        first.as_str()
    );
    let closed = customers[0].recv_type("closed").await;
    assert_eq!(closed["reason"], "agent_closed");
    customers[0].recv_type("survey").await;

    // The head of the queue gets the freed slot at once; the next moves up.
    customers[1].recv_type("agent_joined").await;
    assert_eq!(agent.recv_type("assigned").await["group"], "pre_sale");
    assert_eq!(customers[2].recv_type("queued").await["position"], 1);
}

async fn agent_greeting_goes_out_when_the_agent_is_slow(backend: Backend) {
    let roster = write_roster("greet", &[("a01", "小王", &["pre_sale"], 2)]);
    let app = backend
        .node(&roster, &[("KEFU__ROUTING__AGENT_GREETING_S", "1")])
        .await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let (mut c, _) = app.connect_customer("").await;
    ask_human(&mut c).await;
    c.recv_type("agent_joined").await;
    let auto = c.recv_type("message").await;
    assert_eq!(auto["auto"], true);
    assert_eq!(auto["name"], "小王");
    assert!(auto["text"].as_str().unwrap().contains("小王"));
    agent.recv_type("assigned").await;
    let told = agent.recv_type("auto_greeting").await;
    assert!(told["text"].as_str().unwrap().contains("小王"));
    // An agent who answers in time gets no auto greeting.
    let (mut d, _) = app.connect_customer("").await;
    ask_human(&mut d).await;
    d.recv_type("agent_joined").await;
    let session = agent.recv_type("assigned").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    agent
        .send(json!({"type":"message","session":session,"id":"a-1","text":"在的"}))
        .await;
    let reply = d.recv_type("message").await;
    assert_eq!(reply["auto"], false);
    d.assert_silent(Duration::from_millis(1500)).await;
}

async fn sla_warning_when_a_customer_waits_too_long(backend: Backend) {
    let roster = write_roster("sla", &[("a01", "小王", &["pre_sale"], 2)]);
    let app = backend
        .node(
            &roster,
            &[GREETING_OFF, ("KEFU__ROUTING__FIRST_RESPONSE_SLA_S", "1")],
        )
        .await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let (mut c, _) = app.connect_customer("").await;
    ask_human(&mut c).await;
    c.recv_type("agent_joined").await;
    let session = agent.recv_type("assigned").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    c.say("q1", "人呢？").await;
    agent.recv_type("message").await;
    let warning = agent.recv_type("sla_warning").await;
    assert_eq!(warning["session"], session.as_str());
    assert!(warning["waiting_s"].as_u64().unwrap() >= 1);
    // Once per wait: more messages in the same wait bring no second warning.
    c.say("q2", "在吗？").await;
    agent.recv_type("message").await;
    assert_no_sla_warning(&mut agent, "a second warning in one wait").await;

    // A reply ends the wait; the customer's next message starts a new one, warned again.
    agent_replies(&mut agent, &mut c, &session, "a-1", "在的").await;
    c.say("q3", "好的，还有一个问题").await;
    agent.recv_type("message").await;
    let again = agent.recv_type("sla_warning").await;
    assert_eq!(again["session"], session.as_str());

    // A wait answered within the SLA is not warned.
    agent_replies(&mut agent, &mut c, &session, "a-2", "请说").await;
    c.say("q4", "发货了吗").await;
    agent.recv_type("message").await;
    agent_replies(&mut agent, &mut c, &session, "a-3", "已发货").await;
    assert_no_sla_warning(&mut agent, "a wait answered in time was warned").await;
}

/// The agent writes `text` in `session` and the customer `c` gets it (a reply ends a wait).
async fn agent_replies(agent: &mut Client, c: &mut Client, session: &str, id: &str, text: &str) {
    agent
        .send(json!({"type":"message","session":session,"id":id,"text":text}))
        .await;
    c.recv_type("message").await;
}

/// Nothing the agent gets within a few SLA periods is an `sla_warning`.
async fn assert_no_sla_warning(agent: &mut Client, what: &str) {
    let frames = agent.drain(Duration::from_millis(2500)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "sla_warning"),
        "{what}: {frames:?}"
    );
}

async fn agent_disconnect_requeues_to_another_agent(backend: Backend) {
    let roster = write_roster(
        "requeue",
        &[
            ("a01", "小王", &["pre_sale"], 2),
            ("a02", "小李", &["pre_sale"], 2),
        ],
    );
    let app = backend
        .node(
            &roster,
            &[GREETING_OFF, ("KEFU__DISPATCH__AGENT_GRACE_MS", "500")],
        )
        .await;
    let mut first = app.connect_agent("a01.secret").await;
    ready(&mut first).await;
    let (mut c, _) = app.connect_customer("").await;
    c.say("q1", "我的快递到哪了 转人工").await;
    c.recv_type("agent_joined").await;
    first.recv_type("assigned").await;
    drop(first); // the phone lost its connection and does not come back

    let left = c.recv_type("agent_left").await;
    assert_eq!(left["reason"], "agent_disconnected");
    assert_eq!(c.recv_type("queued").await["position"], 1);
    let mut second = app.connect_agent("a02.secret").await;
    ready(&mut second).await;
    let assigned = second.recv_type("assigned").await;
    let history: Vec<&str> = assigned["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(
        history.iter().any(|t| t.contains("快递到哪了")),
        "{history:?}"
    );
    assert_eq!(c.recv_type("agent_joined").await["name"], "小李");
}

async fn transfer_to_a_group_carries_the_history(backend: Backend) {
    let roster = write_roster(
        "transfer",
        &[
            ("a01", "小王", &["pre_sale"], 2),
            ("a04", "小陈", &["complaint"], 2),
        ],
    );
    let app = backend.node(&roster, &[GREETING_OFF]).await;
    let mut sales = app.connect_agent("a01.secret").await;
    ready(&mut sales).await;
    let mut complaints = app.connect_agent("a04.secret").await;
    ready(&mut complaints).await;
    let (mut c, _) = app.connect_customer("").await;
    c.say("q1", "尺码怎么选 转人工").await;
    c.recv_type("agent_joined").await;
    let session = sales.recv_type("assigned").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    sales
        .send(json!({"type":"transfer","session":session,"group":"complaint"}))
        .await;
    assert_eq!(sales.recv_type("chat_ended").await["reason"], "transferred");
    let assigned = complaints.recv_type("assigned").await;
    assert_eq!(assigned["session"], session.as_str());
    assert_eq!(assigned["group"], "complaint");
    let history = assigned["history"].to_string();
    assert!(history.contains("尺码怎么选"), "{history}");
    assert_eq!(c.recv_type("agent_joined").await["name"], "小陈");
    // The old agent can no longer write into the chat.
    sales
        .send(json!({"type":"message","session":session,"id":"x","text":"hi"}))
        .await;
    assert_eq!(sales.recv_type("error").await["code"], "not_your_chat");
}

async fn customer_leaving_frees_the_agent(backend: Backend) {
    let roster = write_roster("leave", &[("a01", "小王", &["pre_sale"], 1)]);
    let app = backend.node(&roster, &[GREETING_OFF]).await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let (mut c, _) = app.connect_customer("").await;
    ask_human(&mut c).await;
    let session = agent.recv_type("assigned").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut waiting, _) = app.connect_customer("").await;
    ask_human(&mut waiting).await;
    assert_eq!(waiting.recv_type("queued").await["position"], 1);
    c.send(json!({"type":"close"})).await;
    assert_eq!(
        agent.recv_type("customer_left").await["session"],
        session.as_str()
    );
    waiting.recv_type("agent_joined").await;
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let roster = write_roster("auth", &[("a01", "小王", &["pre_sale"], 1)]);
    let app = Backend::memory().node(&roster, &[]).await;
    for token in ["a01.wrong", "nobody", ""] {
        match app.try_connect_agent(token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{token}")
            }
            other => panic!("expected 401 for {token:?}, got {:?}", other.is_ok()),
        }
    }
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains("kefu_auth_failures_total{socket=\"agent\"}"),
        "{metrics}"
    );
    // The right token works, also as a query parameter (browsers cannot set headers).
    let mut ok = app.try_connect("/ws/agent?token=a01.secret").await.unwrap();
    assert_eq!(ok.recv().await["type"], "welcome");
}

#[tokio::test]
async fn cross_node_chat_through_redis() {
    let backend = Backend::redis();
    let roster = write_roster("cross", &[("a01", "小王", &["pre_sale"], 2)]);
    let node_a = backend.node(&roster, &[GREETING_OFF]).await;
    let node_b = backend.node(&roster, &[GREETING_OFF]).await;
    let mut agent = node_b.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let (mut c, _) = node_a.connect_customer("").await;
    c.say("q1", "这个有现货吗 转人工").await;
    assert_eq!(c.recv_type("agent_joined").await["name"], "小王");
    let assigned = agent.recv_type("assigned").await;
    let session = assigned["session"].as_str().unwrap().to_string();
    assert!(assigned["history"].to_string().contains("现货"));
    for i in 0..20 {
        agent
            .send(json!({"type":"message","session":session,"id":format!("a-{i}"),"text":format!("回复{i}")}))
            .await;
    }
    for i in 0..20 {
        // In order, none lost.
        assert_eq!(c.recv_type("message").await["id"], format!("a-{i}"));
    }
    for i in 0..5 {
        c.say(&format!("c-{i}"), &format!("问题{i}")).await;
    }
    for i in 0..5 {
        assert_eq!(agent.recv_type("message").await["id"], format!("c-{i}"));
    }
}

/// What one racing customer saw.
#[derive(Debug, Default)]
struct Seen {
    joined: bool,
    /// The last queue position told before joining (or at the end).
    position: Option<u64>,
}

#[tokio::test]
async fn race_of_200_customers_against_10_agents_on_two_nodes() {
    let backend = Backend::redis();
    let ids: Vec<String> = (1..=10).map(|i| format!("r{i:02}")).collect();
    let entries: Vec<(&str, &str, &[&str], u32)> = ids
        .iter()
        .map(|id| (id.as_str(), "客服", &["pre_sale"][..], 5))
        .collect();
    let roster = write_roster("race", &entries);
    let nodes = [
        backend.node(&roster, &[GREETING_OFF]).await,
        backend.node(&roster, &[GREETING_OFF]).await,
    ];
    let mut agents = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut agent = nodes[i % 2].connect_agent(&format!("{id}.secret")).await;
        ready(&mut agent).await;
        agents.push(agent);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 200 customers, half on each node, ask for a person at the same moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let mut racers = Vec::new();
    for i in 0..200 {
        let (mut c, _) = nodes[i % 2].connect_customer("").await;
        let start = start.clone();
        racers.push(tokio::spawn(async move {
            start.wait().await;
            c.send(json!({"type":"request_human"})).await;
            let mut seen = Seen::default();
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut c.ws)).await
            {
                let Ok(text) = msg.to_text() else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                match frame["type"].as_str() {
                    Some("agent_joined") => {
                        assert!(!seen.joined, "a customer joined twice");
                        seen.joined = true;
                    }
                    Some("queued") if !seen.joined => seen.position = frame["position"].as_u64(),
                    _ => {}
                }
            }
            seen
        }));
    }

    // First wave: every agent gets exactly its capacity, no session twice.
    let mut first_wave = std::collections::HashSet::new();
    for agent in agents.iter_mut() {
        for _ in 0..5 {
            let assigned = agent.recv_type("assigned").await;
            assert!(first_wave.insert(assigned["session"].as_str().unwrap().to_string()));
        }
        agent.assert_silent(Duration::from_millis(50)).await; // never above capacity
    }
    assert_eq!(first_wave.len(), 50);
    tokio::time::sleep(Duration::from_millis(1500)).await; // positions settle

    // Second wave: every agent closes its chats; the queue heads take the slots.
    for agent in agents.iter_mut() {
        for session in &first_wave {
            agent.send(json!({"type":"close","session":session})).await;
        }
    }
    let mut second_wave = std::collections::HashSet::new();
    for agent in agents.iter_mut() {
        for _ in 0..5 {
            let assigned = agent.recv_type("assigned").await;
            let session = assigned["session"].as_str().unwrap().to_string();
            assert!(!first_wave.contains(&session), "a closed chat came back");
            assert!(second_wave.insert(session), "assigned twice");
        }
    }

    let mut seen = Vec::new();
    for racer in racers {
        seen.push(racer.await.unwrap());
    }
    assert_eq!(seen.iter().filter(|s| s.joined).count(), 100);
    // The 150 who queued were told distinct positions 1..=150 before the second wave; the
    // 50 at the front were served next, in order; the rest moved up to 1..=100.
    let joined_from_queue: Vec<u64> = seen
        .iter()
        .filter(|s| s.joined)
        .filter_map(|s| s.position)
        .collect();
    let mut still_waiting: Vec<u64> = seen
        .iter()
        .filter(|s| !s.joined)
        .map(|s| s.position.expect("a waiting customer knows its position"))
        .collect();
    still_waiting.sort_unstable();
    assert_eq!(still_waiting, (1..=100).collect::<Vec<u64>>());
    assert_eq!(joined_from_queue.len(), 50);
    assert!(
        joined_from_queue.iter().all(|p| (1..=50).contains(p)),
        "{joined_from_queue:?}"
    );
}
