//! The shop's order data (issue #18) against a real local HTTP server playing the shop: it
//! checks every request's signature with its own HMAC, answers for some customers, is slow
//! for one and fails for others. The bot answers with the live status or falls back in
//! time; the agent gets the customer's orders masked and sends one as a card.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::agents::Backend;
use crate::continuity::{token, SECRET};
use crate::helpers::{write_roster, Client, TestApp};

const ORDERS_SECRET: &str = "orders-signing-secret-0123456789";
const ADMIN: &str = "admin-token-for-order-tests-0123456";
const GENERAL_ZH: &str = "打开“我的订单”，点进对应订单的订单详情页";

#[derive(Default)]
struct Seen {
    /// Requests per customer id, signature checked.
    by_customer: HashMap<String, u32>,
    bad_signatures: u32,
}

/// The shop: `u-ok*` have orders, `u-slow` answers after 3 s, `u-fail` gets a 500 and
/// `u-junk` an HTML page. Every request must carry a valid, fresh signature (else 401).
struct Shop {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Shop {
    async fn start() -> Shop {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .route("/api/orders", axum::routing::get(answer))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Shop {
            url: format!("http://{addr}/api/orders?shop=demo"),
            seen,
        }
    }

    fn requests(&self, customer: &str) -> u32 {
        let seen = self.seen.lock().unwrap();
        seen.by_customer.get(customer).copied().unwrap_or(0)
    }

    fn bad_signatures(&self) -> u32 {
        self.seen.lock().unwrap().bad_signatures
    }
}

async fn answer(
    State(seen): State<Arc<Mutex<Seen>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let timestamp = header("x-kefu-timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(now) <= 60);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(ORDERS_SECRET.as_bytes()).unwrap();
    let signed = format!(
        "{timestamp}\nGET\n{}",
        uri.path_and_query().unwrap().as_str()
    );
    mac.update(signed.as_bytes());
    let expected = format!(
        "v1={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    );
    let customer = query.get("customer").cloned().unwrap_or_default();
    {
        let mut seen = seen.lock().unwrap();
        if !fresh || header("x-kefu-signature") != expected || !query.contains_key("shop") {
            seen.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
        *seen.by_customer.entry(customer.clone()).or_default() += 1;
    }
    match customer.as_str() {
        "u-slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(json!({"orders": []})).into_response()
        }
        "u-fail" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "u-junk" => "<html>maintenance</html>".into_response(),
        c if c.starts_with("u-ok") => axum::Json(json!({"orders": [
            {"order_no": "E20261111001", "status": "运输中", "amount": 118,
             "placed_at": "2026-11-11 00:02", "warehouse": "ignored",
             "logistics": "顺丰 SF1234567 已到达上海转运中心，快递员电话13912345678",
             "items": [{"title": "保温杯", "quantity": 2, "price": "59.00"}]},
            {"order_no": "E20261001007", "status": "已签收", "items": []},
            {"order_no": "", "status": "broken"}
        ]}))
        .into_response(),
        _ => axum::Json(json!({"orders": []})).into_response(),
    }
}

async fn node(backend: &Backend, shop: &Shop, roster: &std::path::Path) -> TestApp {
    backend
        .node(
            roster,
            &[
                ("KEFU_IDENTITY_SECRET", SECRET),
                ("KEFU_ORDERS_SECRET", ORDERS_SECRET),
                ("KEFU__INTEGRATIONS__ORDERS_URL", &shop.url),
                ("KEFU__SERVER__ADMIN_TOKEN", ADMIN),
                ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
            ],
        )
        .await
}

async fn customer(app: &TestApp, sub: Option<&str>) -> Client {
    let query = match sub {
        Some(sub) => format!("identity={}", token(sub, json!({"name": "王小明"}), SECRET)),
        None => "visitor=v-anon".to_string(),
    };
    let started = Instant::now();
    let (c, greeting) = app.connect_customer(&query).await;
    assert_eq!(greeting["type"], "greeting", "{greeting}");
    // The greeting never waits for the shop.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    c
}

/// Hands `c` off to `agent`; the agent's `assigned`.
async fn to_agent(c: &mut Client, agent: &mut Client) -> Value {
    c.send(json!({"type":"request_human"})).await;
    c.recv_type("agent_joined").await;
    agent.recv_type("assigned").await
}

/// Asks where the parcel is; the bot's answer and how long it took.
async fn ask(c: &mut Client, id: &str) -> (Value, Duration) {
    let started = Instant::now();
    c.say(id, "我的快递到哪了").await;
    let answer = c.recv_type("bot_answer").await;
    assert_eq!(answer["entry_id"], "tracking-zh", "{answer}");
    (answer, started.elapsed())
}

#[tokio::test]
async fn the_bot_answers_with_the_live_order_status_and_falls_back_in_time() {
    let shop = Shop::start().await;
    let roster = write_roster("orders-bot", &[("a01", "小王", &["logistics"], 3)]);
    let app = node(&Backend::memory(), &shop, &roster).await;

    // An identified customer with orders: the latest one's real status, signed request.
    let mut c = customer(&app, Some("u-ok")).await;
    let (live, _) = ask(&mut c, "q1").await;
    let text = live["text"].as_str().unwrap();
    assert!(
        text.contains("E20261111001") && text.contains("运输中"),
        "{text}"
    );
    assert!(text.contains("保温杯"), "{text}");
    // The shop's logistics news reaches the customer; the quick replies stay.
    assert!(text.contains("已到达上海转运中心"), "{text}");
    assert!(!live["quick_replies"].as_array().unwrap().is_empty());
    // Asked again: the cached answer, no second request.
    let (again, _) = ask(&mut c, "q2").await;
    assert_eq!(again["text"], live["text"]);
    assert_eq!(shop.requests("u-ok"), 1);

    // Slow, failing and garbled shops: the general answer, within the timeout (800 ms).
    for sub in ["u-slow", "u-fail", "u-junk"] {
        let mut c = customer(&app, Some(sub)).await;
        let (general, took) = ask(&mut c, "q1").await;
        assert!(
            general["text"].as_str().unwrap().contains(GENERAL_ZH),
            "{sub}: {general}"
        );
        assert!(took < Duration::from_millis(2_000), "{sub}: {took:?}");
        assert_eq!(shop.requests(sub), 1, "{sub}");
        // A failure is remembered briefly: the next question falls back at once.
        let (_, took) = ask(&mut c, "q2").await;
        assert!(took < Duration::from_millis(500), "{sub} again: {took:?}");
        assert_eq!(shop.requests(sub), 1, "{sub}: asked the failing shop again");
    }

    // A customer without orders, and an anonymous visitor: the general answer; the visitor
    // is never looked up.
    let mut none = customer(&app, Some("u-none")).await;
    let (general, _) = ask(&mut none, "q1").await;
    assert!(general["text"].as_str().unwrap().contains(GENERAL_ZH));
    let mut anon = customer(&app, None).await;
    let (general, _) = ask(&mut anon, "q1").await;
    assert!(general["text"].as_str().unwrap().contains(GENERAL_ZH));
    assert_eq!(shop.requests("v-anon"), 0);
    assert_eq!(shop.bad_signatures(), 0, "every request was signed right");

    let (_, metrics) = app.get("/metrics").await;
    for outcome in ["ok", "cached", "timeout", "refused", "bad_answer"] {
        let series = format!("kefu_order_lookups_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "{series} missing");
    }
    assert!(metrics.contains("kefu_order_answers_total{source=\"live\"}"));
    assert!(metrics.contains("kefu_order_answers_total{source=\"general\"}"));
}

async fn the_agent_sees_the_orders_masked_and_sends_one_as_a_card(backend: Backend) {
    let shop = Shop::start().await;
    let roster = write_roster("orders-agent", &[("a01", "小王", &["pre_sale"], 3)]);
    let app = node(&backend, &shop, &roster).await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let mut c = customer(&app, Some("u-ok-agent")).await;
    let assigned = to_agent(&mut c, &mut agent).await;
    assert_eq!(assigned["customer"]["identified"], true, "{assigned}");
    let session = assigned["session"].as_str().unwrap().to_string();

    agent
        .send(json!({"type":"orders_request","session":session}))
        .await;
    let orders = agent.recv_type("orders").await;
    assert_eq!(orders["session"], session.as_str());
    assert_eq!(orders["available"], true, "{orders}");
    let list = orders["orders"].as_array().unwrap();
    assert_eq!(list.len(), 2, "the broken order is left out: {orders}");
    assert_eq!(list[0]["card"]["kind"], "order");
    assert_eq!(list[0]["card"]["order_no"], "E20261111001");
    assert_eq!(list[0]["card"]["amount"], "118");
    assert_eq!(list[0]["placed_at"], "2026-11-11 00:02");
    let news = list[0]["logistics"].as_str().unwrap();
    assert!(
        news.contains("139****5678") && !news.contains("13912345678"),
        "{news}"
    );
    assert!(list[0]["card"].get("warehouse").is_none());

    // The console sends it as it is: an order card the customer gets.
    let card = list[0]["card"].clone();
    agent
        .send(json!({"type":"card","session":session,"id":"o1","card":card}))
        .await;
    agent.recv_type("ack").await;
    let got = c.recv_type("message").await;
    assert_eq!(got["card"]["kind"], "order", "{got}");
    assert_eq!(got["card"]["order_no"], "E20261111001");

    // Not this agent's chat: refused.
    agent
        .send(json!({"type":"orders_request","session":"someone-else"}))
        .await;
    let refused = agent.recv_type("error").await;
    assert_eq!(refused["code"], "not_your_chat", "{refused}");

    // The read is audited, by agent and chat.
    let (_, audit) = crate::kb::call_with(&app, ADMIN, "GET", "/admin/audit", None).await;
    let read = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "read_orders")
        .unwrap_or_else(|| panic!("no read_orders entry: {audit}"))
        .clone();
    assert_eq!(read["operator"], "agent:a01");
    assert_eq!(read["target"], format!("session:{session}"));
    c.send(json!({"type":"close"})).await;
    agent.recv_type("customer_left").await;
}

async fn a_slow_shop_does_not_hold_up_the_agent(backend: Backend) {
    let shop = Shop::start().await;
    let roster = write_roster("orders-slow", &[("a01", "小王", &["pre_sale"], 3)]);
    let app = node(&backend, &shop, &roster).await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let mut c = customer(&app, Some("u-slow")).await;
    let session = to_agent(&mut c, &mut agent).await["session"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    agent
        .send(json!({"type":"orders_request","session":session}))
        .await;
    agent
        .send(json!({"type":"message","session":session,"id":"m1","text":"您好"}))
        .await;
    // The message goes through while the shop is still thinking.
    let first = agent.recv().await;
    assert_eq!(first["type"], "ack", "{first}");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.recv_type("message").await["text"], "您好");
    let orders = agent.recv_type("orders").await;
    assert_eq!(orders["available"], false);
    assert_eq!(orders["reason"], "timeout", "{orders}");
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "{:?}",
        started.elapsed()
    );

    // An anonymous visitor has no orders to look up.
    let mut anon = customer(&app, None).await;
    let assigned = to_agent(&mut anon, &mut agent).await;
    assert!(
        assigned["customer"].get("identified").is_none(),
        "{assigned}"
    );
    let other = assigned["session"].as_str().unwrap().to_string();
    agent
        .send(json!({"type":"orders_request","session":other}))
        .await;
    let orders = agent.recv_type("orders").await;
    assert_eq!(orders["reason"], "not_identified", "{orders}");
    assert_eq!(shop.requests("v-anon"), 0);
}

mod on_memory {
    use super::Backend;

    #[tokio::test]
    async fn the_agent_sees_the_orders_masked_and_sends_one_as_a_card() {
        super::the_agent_sees_the_orders_masked_and_sends_one_as_a_card(Backend::memory()).await
    }

    #[tokio::test]
    async fn a_slow_shop_does_not_hold_up_the_agent() {
        super::a_slow_shop_does_not_hold_up_the_agent(Backend::memory()).await
    }
}

mod on_redis {
    use super::Backend;

    #[tokio::test]
    async fn the_agent_sees_the_orders_masked_and_sends_one_as_a_card() {
        super::the_agent_sees_the_orders_masked_and_sends_one_as_a_card(Backend::redis()).await
    }

    #[tokio::test]
    async fn a_slow_shop_does_not_hold_up_the_agent() {
        super::a_slow_shop_does_not_hold_up_the_agent(Backend::redis()).await
    }
}

/// Without an order endpoint the agent is told so, not left waiting.
#[tokio::test]
async fn without_an_endpoint_the_agent_is_told_not_configured() {
    let roster = write_roster("orders-none", &[("a01", "小王", &["pre_sale"], 3)]);
    let app = Backend::memory()
        .node(&roster, &[("KEFU_IDENTITY_SECRET", SECRET)])
        .await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let mut c = customer(&app, Some("u-ok")).await;
    let session = to_agent(&mut c, &mut agent).await["session"].clone();
    agent
        .send(json!({"type":"orders_request","session":session}))
        .await;
    let orders = agent.recv_type("orders").await;
    assert_eq!(orders["available"], false);
    assert_eq!(orders["reason"], "not_configured", "{orders}");
}

/// A node that does not hold the chat finds the shop's id in the store's link of the chat,
/// sealed: never in clear in the database file.
#[tokio::test]
async fn the_shop_id_is_sealed_in_the_store() {
    use gateway::store::Store;
    let shop = Shop::start().await;
    let url = crate::helpers::temp_store_url("orders-sealed");
    let roster = write_roster("orders-sealed", &[("a01", "小王", &["pre_sale"], 3)]);
    let backend = Backend::memory();
    let app = backend
        .node(
            &roster,
            &[
                ("KEFU_IDENTITY_SECRET", SECRET),
                ("KEFU_ORDERS_SECRET", ORDERS_SECRET),
                ("KEFU__INTEGRATIONS__ORDERS_URL", &shop.url),
                ("KEFU__STORE__URL", &url),
            ],
        )
        .await;
    let sub = "u-ok-sealed-4711";
    let jwt = token(sub, json!({}), SECRET);
    let (mut c, greeting) = app.connect_customer(&format!("identity={jwt}")).await;
    let (live, _) = ask(&mut c, "q1").await;
    assert!(live["text"].as_str().unwrap().contains("E20261111001"));
    let session = greeting["session_id"].as_str().unwrap().to_string();
    let store = Store::open_with(
        &crate::records::store_settings(&url),
        crate::privacy_store::ring(),
    )
    .await
    .unwrap();
    assert_eq!(
        store.shop_id_of(&session).await.unwrap().as_deref(),
        Some(sub)
    );
    assert_eq!(store.shop_id_of("no-such-chat").await.unwrap(), None);
    app.stop().await.unwrap();
    let path = url.strip_prefix("sqlite://").unwrap();
    for file in [path.to_string(), format!("{path}-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            let clear = bytes.windows(sub.len()).any(|w| w == sub.as_bytes());
            assert!(!clear, "{file} holds the shop's id in clear");
        }
    }
}
