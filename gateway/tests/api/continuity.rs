//! Customer continuity (issue #17) over real sockets, on both dispatch backends: identified
//! customers across channels, the earlier chat for the agent (masked), history on request,
//! bad tokens, and messages left when nobody is there.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::agents::Backend;
use crate::helpers::{write_roster, Client, TestApp};

pub const SECRET: &str = "identity-secret-for-tests-0123456789";
const GREETING_OFF: (&str, &str) = ("KEFU__ROUTING__AGENT_GREETING_S", "600");
pub const ADMIN: &str = "admin-token-for-continuity-tests-0123";

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
    identity_from_two_channels_is_one_customer_with_masked_history,
    a_bad_token_is_refused_and_the_chat_stays_anonymous,
    outside_hours_a_message_is_left_claimed_once_answered_and_delivered,
    a_group_with_hours_and_nobody_online_is_offline,
);

/// An HS256 identity token for `sub`, valid for an hour, with `extra` claims.
pub fn token(sub: &str, extra: Value, secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut claims = json!({"sub": sub, "exp": exp});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn ready(agent: &mut Client) {
    agent.send(json!({"type":"ready"})).await;
}

/// Asks for a person; returns the agent's `assigned`.
async fn to_agent(c: &mut Client, agent: &mut Client) -> Value {
    c.send(json!({"type":"request_human"})).await;
    c.recv_type("agent_joined").await;
    agent.recv_type("assigned").await
}

async fn identified(app: &TestApp, sub: &str, channel: &str) -> Client {
    let jwt = token(
        sub,
        json!({"name":"王小明","tier":"vip","phone":"13812345678"}),
        SECRET,
    );
    let (c, _) = app
        .connect_customer(&format!("identity={jwt}&channel={channel}"))
        .await;
    c
}

async fn identity_from_two_channels_is_one_customer_with_masked_history(backend: Backend) {
    let roster = write_roster("cont", &[("a01", "小王", &["pre_sale"], 3)]);
    let app = backend
        .node(&roster, &[("KEFU_IDENTITY_SECRET", SECRET), GREETING_OFF])
        .await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;

    let mut web = identified(&app, "shop-user-1", "web").await;
    let first = to_agent(&mut web, &mut agent).await;
    web.say("q1", "我的手机13812345678 订单一直没发货").await;
    web.recv_type("ack").await;
    agent.recv_type("message").await;
    let customer = &first["customer"];
    assert_eq!(customer["returning"], false, "{first}");
    assert_eq!(customer["previous"], json!([]), "{first}");
    assert_eq!(customer["phone"], "138****5678", "{first}");
    assert_eq!(customer["name"], "王**", "{first}");
    assert_eq!(customer["tier"], "vip", "{first}");
    assert!(!first.to_string().contains("13812345678"), "{first}");
    assert!(!first.to_string().contains("shop-user-1"), "{first}");
    let s1 = first["session"].as_str().unwrap().to_string();
    agent
        .send(json!({"type":"message","session":s1,"id":"m1","text":"已为您催促仓库发货"}))
        .await;
    web.recv_type("message").await;
    web.send(json!({"type":"close"})).await;
    web.recv_type("closed").await;
    agent.recv_type("customer_left").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the record's batch write

    // An anonymous visitor with the same id as `sub` is somebody else.
    let (mut visitor, _) = app.connect_customer("visitor=shop-user-1").await;
    let anon = to_agent(&mut visitor, &mut agent).await;
    assert_eq!(anon["customer"]["returning"], false, "{anon}");
    assert_eq!(anon["customer"]["previous"], json!([]), "{anon}");
    visitor.send(json!({"type":"close"})).await;
    agent.recv_type("customer_left").await;

    // The same customer from the app is the same customer.
    let mut app_chat = identified(&app, "shop-user-1", "app").await;
    // The widget shows the earlier chat above the new one.
    let earlier = app_chat.recv_type("earlier").await;
    let shown = earlier["conversations"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{earlier}");
    assert_eq!(shown[0]["session"], s1.as_str());
    let text = earlier.to_string();
    assert!(
        text.contains("138****5678") && !text.contains("13812345678"),
        "{text}"
    );
    assert!(text.contains("已为您催促仓库发货"), "{text}");
    assert!(!text.contains("handoff to"), "no system lines: {text}");
    let second = to_agent(&mut app_chat, &mut agent).await;
    let customer = &second["customer"];
    assert_eq!(customer["returning"], true, "{second}");
    let previous = customer["previous"].as_array().unwrap();
    assert_eq!(previous.len(), 1, "{second}");
    let p = &previous[0];
    assert_eq!(p["session"], s1.as_str());
    assert_eq!(p["channel"], "web");
    assert!(p["started_ms"].as_u64().unwrap() > 0);
    assert!(p["closed_ms"].as_u64().is_some(), "{p}");
    let first_line = p["first_customer_message"].as_str().unwrap();
    assert!(first_line.contains("138****5678"), "{p}");
    assert_eq!(p["last_agent_message"], "已为您催促仓库发货");
    assert_eq!(p["agents"], json!(["小王"]));
    assert!(!second.to_string().contains("13812345678"), "{second}");

    // The full earlier transcript on request, masked.
    let s2 = second["session"].as_str().unwrap().to_string();
    agent
        .send(json!({"type":"history_request","session":s2}))
        .await;
    let history = agent.recv_type("history").await;
    assert_eq!(history["session"], s2.as_str());
    assert_eq!(history["page"], 0);
    assert_eq!(history["more"], false);
    let conversations = history["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "{history}");
    assert_eq!(conversations[0]["session"], s1.as_str());
    let text = conversations[0]["transcript"].to_string();
    assert!(
        text.contains("138****5678") && !text.contains("13812345678"),
        "{text}"
    );
    assert!(text.contains("已为您催促仓库发货"), "{text}");

    // Not one of this agent's chats: refused, the socket goes on.
    agent
        .send(json!({"type":"history_request","session":s1}))
        .await;
    let refused = agent.recv_type("error").await;
    assert_eq!(refused["code"], "not_your_chat", "{refused}");
    app_chat.send(json!({"type":"close"})).await;
    agent.recv_type("customer_left").await;
}

async fn a_bad_token_is_refused_and_the_chat_stays_anonymous(backend: Backend) {
    let roster = write_roster("cont-bad", &[("a01", "小王", &["pre_sale"], 3)]);
    let app = backend
        .node(&roster, &[("KEFU_IDENTITY_SECRET", SECRET), GREETING_OFF])
        .await;
    let mut agent = app.connect_agent("a01.secret").await;
    ready(&mut agent).await;
    let expired = {
        let claims = json!({"sub":"u9","exp":1_000_000,"phone":"13812345678"});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let forged = token(
        "u9",
        json!({"name":"冒充"}),
        "another-secret-0123456789abcdef",
    );
    for bad in [forged, expired, "not-a-jwt".to_string()] {
        let mut c = app
            .try_connect(&format!("/ws/customer?identity={bad}"))
            .await
            .unwrap();
        let error = c.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], "bad_identity", "{error}");
        assert_eq!(error["seq"], 0, "{error}");
        let greeting = c.recv().await;
        assert_eq!(greeting["type"], "greeting", "{greeting}");
        // The chat goes on, anonymous: nothing from the token reaches the agent.
        let assigned = to_agent(&mut c, &mut agent).await;
        let customer = &assigned["customer"];
        assert_eq!(customer["returning"], false, "{assigned}");
        assert!(customer.get("name").is_none(), "{assigned}");
        assert!(customer.get("phone").is_none(), "{assigned}");
        c.send(json!({"type":"close"})).await;
        agent.recv_type("customer_left").await;
    }
}

/// A daily range (Shanghai time) that holds now (`open`) or does not.
pub fn range_around_now(open: bool) -> String {
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    let local = (now_min + 8 * 60) % 1440;
    let (from, to) = if open {
        ((local + 1440 - 60) % 1440, (local + 60) % 1440)
    } else {
        ((local + 120) % 1440, (local + 180) % 1440)
    };
    let hhmm = |m: u64| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{}-{}", hhmm(from), hhmm(to))
}

async fn outside_hours_a_message_is_left_claimed_once_answered_and_delivered(backend: Backend) {
    let roster = write_roster(
        "cont-tickets",
        &[
            ("a01", "小王", &["pre_sale"], 3),
            ("a02", "小李", &["pre_sale"], 3),
        ],
    );
    let hours = range_around_now(false);
    let app = backend
        .node(
            &roster,
            &[
                ("KEFU_IDENTITY_SECRET", SECRET),
                ("KEFU__HOURS__PRE_SALE", &hours),
                ("KEFU__SERVER__ADMIN_TOKEN", ADMIN),
                GREETING_OFF,
            ],
        )
        .await;
    let mut c = identified(&app, "night-owl", "web").await;
    c.send(json!({"type":"request_human"})).await;
    let offline = c.recv_type("offline").await;
    assert_eq!(offline["reason"], "outside_hours", "{offline}");
    let next = offline["next_open_ms"].as_u64().expect("next_open_ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(next > now && next < now + 4 * 3600 * 1000, "{offline}");
    // The bot keeps answering meanwhile.
    c.say("q1", "怎么退货").await;
    c.recv_type("ack").await;
    c.send(json!({"type":"leave_message","id":"lm1","text":"退款还没到账，手机13812345678","contact":"13812345678"}))
        .await;
    let ack = c.recv_type("ack").await;
    assert_eq!(ack["id"], "lm1", "{ack}");
    drop(c);

    let mut a1 = app.connect_agent("a01.secret").await;
    let mut a2 = app.connect_agent("a02.secret").await;
    ready(&mut a1).await;
    ready(&mut a2).await;
    let t1 = a1.recv_type("tickets").await;
    let t2 = a2.recv_type("tickets").await;
    let items = t1["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{t1}");
    assert_eq!(t2["items"], t1["items"]);
    let item = &items[0];
    assert_eq!(item["status"], "open");
    assert_eq!(item["identified"], true);
    assert!(!t1.to_string().contains("13812345678"), "masked: {t1}");
    let ticket = item["id"].as_str().unwrap().to_string();

    // Two agents claim at once: one wins.
    let claim = json!({"type":"ticket_claim","ticket":ticket});
    tokio::join!(a1.send(claim.clone()), a2.send(claim));
    let (r1, r2) = tokio::join!(next_claim_result(&mut a1), next_claim_result(&mut a2));
    let won: Vec<bool> = [&r1, &r2]
        .iter()
        .map(|r| r["type"] == "ticket_claimed")
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{r1} {r2}");
    let loser = if won[0] { &r2 } else { &r1 };
    assert_eq!(loser["code"], "ticket_taken", "{loser}");
    let (winner, loser_agent) = if won[0] {
        (&mut a1, &mut a2)
    } else {
        (&mut a2, &mut a1)
    };
    // The loser cannot answer it.
    loser_agent
        .send(json!({"type":"ticket_reply","ticket":ticket,"text":"我来"}))
        .await;
    assert_eq!(loser_agent.recv_type("error").await["code"], "not_in_state");
    winner
        .send(json!({"type":"ticket_reply","ticket":ticket,"text":"您好，退款已加急处理"}))
        .await;
    let ack = winner.recv_type("ack").await;
    assert_eq!(ack["id"], ticket.as_str(), "{ack}");

    // The customer comes back (another channel, same identity): the reply is there.
    let mut back = identified(&app, "night-owl", "app").await;
    let reply = back.recv_type("message").await;
    assert_eq!(reply["offline"], true, "{reply}");
    assert_eq!(reply["text"], "您好，退款已加急处理");
    assert_eq!(reply["from"], "agent");
    // Delivered once: a third chat does not get it again.
    drop(back);
    let mut again = identified(&app, "night-owl", "h5").await;
    again.assert_silent(Duration::from_millis(400)).await;

    // The admin API lists it with its status.
    let auth = format!("Authorization: Bearer {ADMIN}\r\nX-Kefu-Operator: tester\r\n");
    let (status, body) = app.request("GET", "/admin/tickets", &auth).await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let row = &listed["tickets"][0];
    assert_eq!(row["status"], "delivered", "{listed}");
    assert_eq!(row["late"], false);
    assert!(
        row.get("customer").is_none(),
        "no customer hash in the API: {row}"
    );
    let (status, _) = app.request("GET", "/admin/tickets", "").await;
    assert_eq!(status, 401);
    let (status, body) = app.request("GET", "/admin/supervisor", &auth).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["continuity"]["tickets"]["waiting"], 0, "{view}");
    assert_eq!(view["continuity"]["tickets"]["late"], 0, "{view}");
}

/// The next `ticket_claimed` or `error` frame.
async fn next_claim_result(agent: &mut Client) -> Value {
    loop {
        let f = agent.recv().await;
        if f["type"] == "ticket_claimed" || f["type"] == "error" {
            return f;
        }
    }
}

async fn a_group_with_hours_and_nobody_online_is_offline(backend: Backend) {
    let roster = write_roster("cont-noagent", &[("a01", "小王", &["after_sale"], 3)]);
    let hours = range_around_now(true);
    let app = backend
        .node(&roster, &[("KEFU__HOURS__PRE_SALE", &hours), GREETING_OFF])
        .await;
    let (mut c, _) = app.connect_customer("").await;
    c.send(json!({"type":"request_human"})).await;
    let offline = c.recv_type("offline").await;
    assert_eq!(offline["reason"], "no_agent", "{offline}");
    assert!(offline["next_open_ms"].is_null(), "{offline}");
    // Anonymous visitors may leave a message too.
    c.send(json!({"type":"leave_message","id":"lm","text":"请回电"}))
        .await;
    assert_eq!(c.recv_type("ack").await["id"], "lm");
    // Bad input gets a clear error and the session goes on.
    c.send(json!({"type":"leave_message","id":"lm2","text":""}))
        .await;
    assert_eq!(c.recv_type("error").await["code"], "bad_field");
    c.say("q1", "你好").await;
    c.recv_type("ack").await;
}

mod last_agent {
    use super::*;

    #[tokio::test]
    async fn on_memory() {
        returning_customer_reaches_the_last_agent_and_falls_back_after_the_wait(Backend::memory())
            .await
    }

    #[tokio::test]
    async fn on_redis() {
        returning_customer_reaches_the_last_agent_and_falls_back_after_the_wait(Backend::redis())
            .await
    }
}

async fn returning_customer_reaches_the_last_agent_and_falls_back_after_the_wait(backend: Backend) {
    let roster = write_roster(
        "cont-last",
        &[
            ("a01", "小王", &["pre_sale"], 2),
            ("a02", "小李", &["pre_sale"], 2),
        ],
    );
    let app = backend
        .node(
            &roster,
            &[
                ("KEFU_IDENTITY_SECRET", SECRET),
                ("KEFU__ROUTING__PREFER_LAST_AGENT_S", "2"),
                GREETING_OFF,
            ],
        )
        .await;
    let mut a01 = app.connect_agent("a01.secret").await;
    ready(&mut a01).await;
    let mut first = identified(&app, "loyal", "web").await;
    let assigned = to_agent(&mut first, &mut a01).await;
    let s1 = assigned["session"].as_str().unwrap().to_string();
    a01.send(json!({"type":"message","session":s1,"id":"m1","text":"好的"}))
        .await;
    first.recv_type("message").await;
    first.send(json!({"type":"close"})).await;
    a01.recv_type("customer_left").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // a02 joins; an anonymous customer goes to a01 (idle longest), so by load a02 is next.
    let mut a02 = app.connect_agent("a02.secret").await;
    ready(&mut a02).await;
    let (mut other, _) = app.connect_customer("").await;
    to_agent(&mut other, &mut a01).await;

    // The returning customer reaches a01 all the same (it has a free slot).
    let mut back = identified(&app, "loyal", "app").await;
    let again = to_agent(&mut back, &mut a01).await;
    assert_eq!(again["customer"]["returning"], true, "{again}");

    // a01 is full now: a third chat of theirs waits for it, then goes to a02.
    let mut third = identified(&app, "loyal", "h5").await;
    third.send(json!({"type":"request_human"})).await;
    let queued = third.recv_type("queued").await;
    assert_eq!(queued["position"], 1, "{queued}");
    let started = std::time::Instant::now();
    let joined = third.recv_type("agent_joined").await;
    assert_eq!(joined["name"], "小李", "{joined}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "waited for a01 first"
    );
    let assigned = a02.recv_type("assigned").await;
    assert_eq!(assigned["customer"]["returning"], true, "{assigned}");
    let (_, metrics) = app.get("/metrics").await;
    assert!(metrics.contains("kefu_last_agent_total"), "counted");
}
