//! The bot in the session, over real sockets, with a small knowledge base.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

const SMALL_KB: &str = r#"
[[entry]]
id = "returns-7day"
category = "after_sale"
lang = "zh"
questions = ["七天无理由退货怎么申请", "买了不想要了能退吗", "可以七天无理由退货吗"]
answer = "亲，签收后7天内可以申请无理由退货，在订单详情页点击申请退货即可。"
keywords = ["七天无理由", "退货"]

[[entry]]
id = "invoice-zh"
category = "invoice"
lang = "zh"
questions = ["怎么开发票", "可以开发票吗", "发票在哪里申请"]
answer = "亲，确认收货后在订单详情页申请电子发票，1-3个工作日开具。"
keywords = ["发票"]

[[entry]]
id = "shipping-time-zh"
category = "logistics"
lang = "zh"
questions = ["多久发货", "什么时候发货", "下单后几天发货"]
answer = "亲，付款后48小时内发货，大促期间3-5天。"
keywords = ["发货"]

[[entry]]
id = "tracking-en"
category = "logistics"
lang = "en"
questions = ["where is my parcel", "how can I track my order", "tracking number for my package"]
answer = "You can track your parcel on the order details page with the tracking number."
keywords = ["track", "parcel"]

[[entry]]
id = "refund-time-en"
category = "after_sale"
lang = "en"
questions = ["when will I get my refund", "how long does a refund take", "refund still not received"]
answer = "Refunds reach your original payment method 1-3 working days after the warehouse receives the return."
keywords = ["refund"]
"#;

/// A fresh directory holding the small KB (a file per test, so reloads do not interfere).
pub fn small_kb_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kefu-kb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kb.toml"), SMALL_KB).unwrap();
    dir
}

async fn app_with_kb(name: &str, extra: &[(&str, &str)]) -> (TestApp, PathBuf) {
    let dir = small_kb_dir(name);
    let path = dir.to_str().unwrap().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("KEFU__KB__PATH", path.as_str()),
        ("KEFU__SERVER__ADMIN_TOKEN", "admin-secret-of-24-characters"),
        ("KEFU__KB__WATCH_INTERVAL_S", "0"),
    ];
    env.extend_from_slice(extra);
    (spawn_app_with(&env).await, dir)
}

/// Sends a message and returns the frames after its ack.
async fn ask(c: &mut crate::helpers::Client, id: &str, text: &str) -> Vec<Value> {
    c.say(id, text).await;
    let ack = c.recv().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    c.drain(Duration::from_millis(400)).await
}

fn only<'a>(frames: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = frames.iter().filter(|f| f["type"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {frames:?}");
    found[0]
}

#[tokio::test]
async fn known_questions_are_answered_in_chinese_traditional_and_english() {
    let (app, _dir) = app_with_kb("known", &[]).await;
    let (mut c, _) = app.connect_customer("").await;
    for (id, text, entry) in [
        ("q1", "七天无理由退货怎么申请", "returns-7day"),
        ("q2", "怎麼開發票", "invoice-zh"),
        ("q3", "Where is my parcel?", "tracking-en"),
    ] {
        let frames = ask(&mut c, id, text).await;
        let answer = only(&frames, "bot_answer");
        assert_eq!(answer["entry_id"], entry, "{text}: {frames:?}");
        assert_eq!(answer["reply_to"], id);
        assert!(answer["text"].as_str().unwrap().len() > 10);
        assert!(answer["score"].as_f64().unwrap() > 0.0);
    }
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains("kefu_bot_answers_total{decision=\"answer\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("kefu_bot_latency_seconds_bucket"));
}

#[tokio::test]
async fn gateway_answers_match_the_index_for_the_same_kb() {
    let (app, dir) = app_with_kb("same", &[]).await;
    let kb = faq_index::KnowledgeBase::load(&dir).unwrap();
    let index = faq_index::Index::build(&kb).unwrap();
    let (mut c, _) = app.connect_customer("").await;
    for (i, text) in [
        "下单后几天发货",
        "refund still not received",
        "可以开发票吗",
    ]
    .iter()
    .enumerate()
    {
        let expected = index.search(text, 5);
        assert_eq!(expected.decision, faq_index::Decision::Answer, "{text}");
        let frames = ask(&mut c, &format!("s{i}"), text).await;
        let answer = only(&frames, "bot_answer");
        assert_eq!(answer["entry_id"], expected.matches[0].id.as_str());
        let score = answer["score"].as_f64().unwrap();
        assert!((score - f64::from(expected.matches[0].score)).abs() < 1e-6);
    }
}

#[tokio::test]
async fn suggestions_then_pick_gets_the_answer() {
    // With an unreachable answer threshold every match becomes a suggestion.
    let (app, _dir) = app_with_kb(
        "suggest",
        &[("KEFU__KB__ANSWER", "1.01"), ("KEFU__KB__SUGGEST", "0.0")],
    )
    .await;
    let (mut c, _) = app.connect_customer("").await;
    let frames = ask(&mut c, "q1", "多久发货").await;
    let suggestions = only(&frames, "suggestions");
    let items = suggestions["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 3, "{suggestions}");
    assert_eq!(items[0]["entry_id"], "shipping-time-zh");
    assert!(items[0]["question"].as_str().is_some());
    c.send(json!({"type":"pick","entry_id":"shipping-time-zh"}))
        .await;
    let answer = c.recv_type("bot_answer").await;
    assert_eq!(answer["entry_id"], "shipping-time-zh");
    assert!(answer["text"].as_str().unwrap().contains("48"));
    c.send(json!({"type":"pick","entry_id":"nope"})).await;
    assert_eq!(c.recv().await["code"], "bad_field");
}

#[tokio::test]
async fn two_unanswered_questions_in_a_row_hand_off() {
    let (app, _dir) = app_with_kb(
        "unanswered",
        &[("KEFU__KB__ANSWER", "1.01"), ("KEFU__KB__SUGGEST", "0.0")],
    )
    .await;
    let (mut c, _) = app.connect_customer("").await;
    let first = ask(&mut c, "q1", "多久发货").await;
    only(&first, "suggestions");
    let second = ask(&mut c, "q2", "发票在哪里申请").await;
    let handoff = only(&second, "handoff");
    assert_eq!(handoff["reason"], "unanswered_in_a_row");
    assert_eq!(handoff["group"], "after_sale"); // invoice -> after_sale
}

#[tokio::test]
async fn out_of_scope_questions_are_handed_off_not_answered() {
    let (app, _dir) = app_with_kb("oos", &[("KEFU__HANDOFF__FIRST_MISS", "handoff")]).await;
    let (mut c, _) = app.connect_customer("lang=en").await;
    let frames = ask(&mut c, "q1", "how many prime numbers are there below 100").await;
    let handoff = only(&frames, "handoff");
    assert_eq!(handoff["reason"], "bot_not_confident");
    assert!(frames.iter().all(|f| f["type"] != "bot_answer"));
}

/// The default `handoff.first_miss = "clarify"` (issue #19): the first question the bot cannot
/// place gets a request to rephrase with the main topics; the second in a row hands off.
#[tokio::test]
async fn the_first_miss_asks_to_rephrase_and_the_second_hands_off() {
    let topics = "KEFU__HANDOFF__CLARIFY_TOPICS";
    let (app, _dir) = app_with_kb(
        "clarify",
        &[(topics, r#"["tracking-en","invoice-zh","refund-time-en"]"#)],
    )
    .await;
    let (mut c, _) = app.connect_customer("lang=en").await;
    let frames = ask(&mut c, "q1", "how many prime numbers are there below 100").await;
    let clarify = only(&frames, "suggestions");
    assert_eq!(clarify["reason"], "clarify", "{clarify}");
    assert!(
        clarify["text"].as_str().unwrap().contains("another way"),
        "{clarify}"
    );
    let ids: Vec<&str> = clarify["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["entry_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["tracking-en", "refund-time-en"],
        "the customer's language only"
    );
    assert!(frames.iter().all(|f| f["type"] != "handoff"));
    // A topic can be picked like any suggestion.
    c.send(json!({"type":"pick","entry_id":"tracking-en"}))
        .await;
    assert_eq!(c.recv_type("bot_answer").await["entry_id"], "tracking-en");
    // After an answer the count starts over: one more miss asks again, a second hands off.
    let again = ask(&mut c, "q2", "what is the capital of peru").await;
    assert_eq!(only(&again, "suggestions")["reason"], "clarify");
    let second = ask(&mut c, "q3", "tell me a joke about penguins").await;
    assert_eq!(only(&second, "handoff")["reason"], "bot_not_confident");
    // Asking for a person still hands off at once.
    let (mut d, _) = app.connect_customer("lang=en").await;
    let frames = ask(&mut d, "q1", "I want a real person").await;
    assert_eq!(only(&frames, "handoff")["reason"], "customer_request");
}

#[tokio::test]
async fn asking_for_a_person_hands_off() {
    let (app, _dir) = app_with_kb("human", &[]).await;
    let (mut a, _) = app.connect_customer("").await;
    a.send(json!({"type":"request_human"})).await;
    let handoff = a.recv().await;
    assert_eq!(handoff["type"], "handoff");
    assert_eq!(handoff["reason"], "customer_request");
    assert_eq!(handoff["group"], "pre_sale");
    // Asking again while waiting is refused clearly.
    a.send(json!({"type":"request_human"})).await;
    assert_eq!(a.recv_type("error").await["code"], "not_in_state");

    let (mut b, _) = app.connect_customer("").await;
    let frames = ask(&mut b, "q1", "退货的事 我要转人工").await;
    assert_eq!(only(&frames, "handoff")["reason"], "customer_request");
    let (mut e, _) = app.connect_customer("lang=en").await;
    let frames = ask(&mut e, "q1", "let me talk to a human please").await;
    assert_eq!(only(&frames, "handoff")["reason"], "customer_request");
}

#[tokio::test]
async fn complaints_go_to_the_complaint_group_with_a_level() {
    let (app, _dir) = app_with_kb("complaint", &[]).await;
    for (text, level) in [
        ("我要投诉你们", 1),
        ("你们就是骗子", 2),
        ("再不处理我就打12315", 3),
    ] {
        let (mut c, _) = app.connect_customer("").await;
        let frames = ask(&mut c, "q1", text).await;
        let handoff = only(&frames, "handoff");
        assert_eq!(handoff["reason"], "complaint", "{text}");
        assert_eq!(handoff["group"], "complaint");
        assert_eq!(handoff["level"], level, "{text}");
    }
}

#[tokio::test]
async fn unhelpful_feedback_hands_off_to_the_entry_group() {
    let (app, _dir) = app_with_kb("feedback", &[]).await;
    let (mut c, _) = app.connect_customer("").await;
    let frames = ask(&mut c, "q1", "七天无理由退货怎么申请").await;
    let entry = only(&frames, "bot_answer")["entry_id"].clone();
    c.send(json!({"type":"feedback","entry_id":entry,"helpful":true}))
        .await;
    c.assert_silent(Duration::from_millis(300)).await;
    c.send(json!({"type":"feedback","entry_id":entry,"helpful":false}))
        .await;
    let handoff = c.recv().await;
    assert_eq!(handoff["type"], "handoff");
    assert_eq!(handoff["reason"], "not_helpful");
    assert_eq!(handoff["group"], "after_sale");
}

#[tokio::test]
async fn while_queued_the_bot_still_answers_what_it_is_sure_of() {
    let (app, _dir) = app_with_kb("queued", &[]).await;
    let (mut c, _) = app.connect_customer("").await;
    c.send(json!({"type":"request_human"})).await;
    assert_eq!(c.recv_type("handoff").await["type"], "handoff");
    c.drain(Duration::from_millis(300)).await;
    let frames = ask(&mut c, "q1", "多久发货").await;
    assert_eq!(only(&frames, "bot_answer")["entry_id"], "shipping-time-zh");
    let unsure = ask(&mut c, "q2", "how many prime numbers are there below 100").await;
    assert!(unsure
        .iter()
        .all(|f| f["type"] != "bot_answer" && f["type"] != "handoff"));
}

#[tokio::test]
async fn reload_keeps_sessions_and_a_bad_kb_is_refused() {
    let (app, dir) = app_with_kb("reload", &[]).await;
    let (mut c, _) = app.connect_customer("").await;
    let before = ask(&mut c, "q1", "多久发货").await;
    only(&before, "bot_answer");

    // A new entry appears after a reload; the connected session keeps going.
    let added = r#"
[[entry]]
id = "coupon-zh"
category = "promotion"
lang = "zh"
questions = ["优惠券怎么用", "领的券在哪里用", "优惠券用不了"]
answer = "亲，优惠券在结算页自动抵扣，注意使用门槛和有效期。"
"#;
    std::fs::write(dir.join("more.toml"), added).unwrap();
    let (status, body) = app
        .post("/admin/kb/reload", Some("admin-secret-of-24-characters"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"entries\":6"), "{body}");
    let after = ask(&mut c, "q2", "优惠券怎么用").await;
    assert_eq!(only(&after, "bot_answer")["entry_id"], "coupon-zh");

    // A broken file is refused with the reason, and the old KB keeps answering.
    std::fs::write(dir.join("broken.toml"), "[[entry]]\nid = \"x\"\n").unwrap();
    let (status, body) = app
        .post("/admin/kb/reload", Some("admin-secret-of-24-characters"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("broken.toml"), "{body}");
    let still = ask(&mut c, "q3", "优惠券怎么用").await;
    assert_eq!(only(&still, "bot_answer")["entry_id"], "coupon-zh");

    // The admin API wants its token.
    assert_eq!(app.post("/admin/kb/reload", Some("wrong")).await.0, 401);
    assert_eq!(app.post("/admin/kb/reload", None).await.0, 401);
}

#[tokio::test]
async fn edits_to_the_kb_file_are_picked_up_by_the_watcher() {
    let dir = small_kb_dir("watch");
    let path = dir.to_str().unwrap().to_string();
    let app = spawn_app_with(&[
        ("KEFU__KB__PATH", &path),
        ("KEFU__KB__WATCH_INTERVAL_S", "1"),
    ])
    .await;
    let (mut c, _) = app.connect_customer("").await;
    let added = "[[entry]]\nid = \"gift-zh\"\ncategory = \"promotion\"\nlang = \"zh\"\nquestions = [\"赠品什么时候发\", \"买就送的赠品在哪\"]\nanswer = \"亲，赠品随主商品一起发出。\"\n";
    std::fs::write(dir.join("gift.toml"), added).unwrap();
    let mut answered = false;
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let frames = ask(&mut c, &format!("w{i}"), "赠品什么时候发").await;
        if frames.iter().any(|f| f["entry_id"] == "gift-zh") {
            answered = true;
            break;
        }
        if frames.iter().any(|f| f["type"] == "handoff") {
            // Handed off before the reload landed: a new session keeps asking.
            c = app.connect_customer("").await.0;
        }
    }
    assert!(answered, "the watcher reloaded the edited KB");
}
