//! Product cards from the customer, order cards from the agent: validated, masked toward the
//! agent like text, kept in the transcript; quick replies with the bot's answers.

use serde_json::json;

use super::*;

#[tokio::test]
async fn cards_are_validated_masked_and_kept_in_the_transcript() {
    let (app, _) = app_with_agent("att-cards", &[]).await;
    let product = json!({"kind":"product","sku":"CUP-1","title":"保温杯 13812345678","price":59,
        "image_url":"https://shop.example/cup.jpg","url":"https://shop.example/p/cup"});
    let (mut c, _, mut agent, session, history) = chat(&app, async |c: &mut Client, _: &Value| {
        for bad in [
            json!({"kind":"product","sku":"CUP-1","title":"x","url":"javascript:alert(1)"}),
            json!({"kind":"coupon","code":"FREE"}),
            json!({"kind":"product","sku":"","title":"x"}),
            json!({"kind":"product","sku":"CUP-1","title":"x".repeat(300)}),
        ] {
            c.send(json!({"type":"card","id":"k0","card":bad})).await;
            let err = c.recv_type("error").await;
            assert!(
                err["code"] == "bad_field" || err["code"] == "too_long",
                "{err}"
            );
        }
        c.send(json!({"type":"card","id":"k1","card":product}))
            .await;
        assert_eq!(c.recv_type("ack").await["id"], "k1");
    })
    .await;
    let line = history
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["card"]["kind"] == "product")
        .unwrap_or_else(|| panic!("card in the history: {history}"));
    assert_eq!(line["card"]["sku"], "CUP-1");
    assert_eq!(line["card"]["price"], "59");
    assert_eq!(
        line["card"]["title"], "保温杯 138****5678",
        "masked like text"
    );

    c.send(json!({"type":"card","id":"k2","card":product}))
        .await;
    let got = agent.recv_type("message").await;
    assert_eq!(got["card"]["url"], "https://shop.example/p/cup");
    assert!(!got.to_string().contains("13812345678"));

    let order = json!({"kind":"order","order_no":"E20261111001","status":"shipped",
        "items":[{"title":"保温杯","quantity":2,"price":"59.00"}],"amount":"118.00"});
    agent
        .send(json!({"type":"card","session":session,"id":"o1","card":order}))
        .await;
    assert_eq!(agent.recv_type("ack").await["id"], "o1");
    let msg = c.recv_type("message").await;
    assert_eq!(msg["from"], "agent");
    assert_eq!(msg["card"]["order_no"], "E20261111001");
    assert_eq!(msg["card"]["items"][0]["quantity"], 2);
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"title":format!("item {i}")}))
        .collect();
    let bad = json!({"kind":"order","order_no":"E1","status":"paid","items":many});
    agent
        .send(json!({"type":"card","session":session,"id":"o2","card":bad}))
        .await;
    assert_eq!(agent.recv_type("error").await["code"], "bad_field");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bot_answers_carry_the_entry_quick_replies() {
    let app = spawn_app_with(&[]).await;
    let (mut c, _) = app.connect_customer("lang=en").await;
    c.say("q1", "Where is my parcel?").await;
    let answer = c.recv_type("bot_answer").await;
    assert_eq!(answer["entry_id"], "tracking-en", "{answer}");
    let replies = answer["quick_replies"].as_array().unwrap();
    assert!(
        replies.iter().any(|q| q == "How long does delivery take?"),
        "{answer}"
    );
    // A quick reply is an ordinary question.
    c.say("q2", replies[1].as_str().unwrap()).await;
    let next = c.recv_type("ack").await;
    assert_eq!(next["id"], "q2");
    app.stop().await.unwrap();
}
