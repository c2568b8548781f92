//! A photo from the customer (before and during the chat) and one from the agent: delivered
//! with signed links, downloaded clean, audited for the agent, refreshed on replay.

use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use super::*;
use crate::helpers::resume_query;

#[tokio::test]
async fn photos_go_both_ways_without_their_gps_and_agent_reads_are_audited() {
    let (app, url) = app_with_agent("att-flow", &[]).await;
    let photo = jpeg_with_gps(240, 160);
    assert!(contains(&photo, GPS_MARKER) && contains(&photo, b"Exif"));
    let mut first = String::new();
    let (mut c, greeting, mut agent, session, history) =
        chat(&app, async |c: &mut Client, g: &Value| {
            // Sent to the bot before the hand-off: the agent finds it in the history.
            let up = customer_upload(&app, g, "parcel.jpg", "image/jpeg", &photo).await;
            assert_eq!(up.status, 200, "{}", up.text());
            let up = up.json();
            assert_eq!(up["kind"], "image");
            assert_eq!(up["name"], "parcel.jpg");
            assert_eq!(
                (up["width"].as_u64(), up["height"].as_u64()),
                (Some(240), Some(160))
            );
            first = up["attachment_id"].as_str().unwrap().to_string();
            c.send(json!({"type":"message","id":"p1","text":"","attachment":first}))
                .await;
            assert_eq!(c.recv_type("ack").await["id"], "p1");
        })
        .await;
    let line = history
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["attachment"]["id"] == first.as_str())
        .unwrap_or_else(|| panic!("photo in the history: {history}"));
    let link = line["attachment"]["url"].as_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!("/files/{first}?exp=")) && link.contains("&r=agent%3Aa01"),
        "{link}"
    );
    let download = get(&app, &link).await;
    assert_eq!(download.status, 200, "{}", download.head);
    assert!(download
        .head
        .to_ascii_lowercase()
        .contains("content-type: image/jpeg"));
    assert!(!contains(&download.body, GPS_MARKER), "GPS data survived");
    assert!(!contains(&download.body, b"Exif"), "EXIF survived");
    let picture = image::load_from_memory(&download.body).unwrap();
    assert_eq!((picture.width(), picture.height()), (240, 160));
    let thumb = get(&app, line["attachment"]["thumb_url"].as_str().unwrap()).await;
    assert_eq!(thumb.status, 200);
    assert!(image::load_from_memory(&thumb.body).unwrap().width() <= 320);

    // Tampered links, and a link of the agent's passed off as a customer's, are refused.
    let tampered = format!("{}A", &link[..link.len() - 1]);
    let forged = link.replace("&r=agent%3Aa01", "");
    let mut bad_sig = link.clone();
    let at = bad_sig.find("sig=").unwrap() + 4;
    bad_sig.replace_range(
        at..at + 1,
        if &bad_sig[at..at + 1] == "A" {
            "B"
        } else {
            "A"
        },
    );
    for bad in [tampered, forged, bad_sig, format!("/files/{first}")] {
        assert_eq!(get(&app, &bad).await.status, 403, "{bad}");
    }

    // During the chat, with words.
    let up = customer_upload(&app, &greeting, "box.png", "image/png", &png(80, 60, 1)).await;
    let id = up.json()["attachment_id"].as_str().unwrap().to_string();
    c.send(json!({"type":"message","id":"p2","text":"箱子也坏了","attachment":id}))
        .await;
    let got = agent.recv_type("message").await;
    assert_eq!(got["text"], "箱子也坏了");
    assert_eq!(got["attachment"]["id"], id.as_str());
    assert_eq!(got["attachment"]["kind"], "image");
    assert_eq!(
        get(&app, got["attachment"]["url"].as_str().unwrap())
            .await
            .status,
        200
    );

    // The agent's photo to the customer.
    let up = agent_upload(&app, "a01.secret", &session, &png(50, 40, 2)).await;
    assert_eq!(up.status, 200, "{}", up.text());
    let reply = up.json()["attachment_id"].as_str().unwrap().to_string();
    agent
        .send(json!({"type":"message","session":session,"id":"a1","attachment":reply}))
        .await;
    assert_eq!(agent.recv_type("ack").await["id"], "a1");
    let msg = c.recv_type("message").await;
    assert_eq!(msg["attachment"]["id"], reply.as_str());
    assert_eq!(msg["text"], "");
    let mine = msg["attachment"]["url"].as_str().unwrap().to_string();
    assert!(!mine.contains("&r="), "{mine}");
    let got = get(&app, &mine).await;
    assert_eq!(got.status, 200);
    assert_eq!(image::load_from_memory(&got.body).unwrap().width(), 50);

    // Somebody else's attachment, or none, cannot be sent.
    agent
        .send(json!({"type":"message","session":session,"id":"a2","attachment":"nope"}))
        .await;
    assert_eq!(agent.recv_type("error").await["code"], "bad_field");
    assert_eq!(
        agent_upload(&app, "a01.secret", "not-mine", &png(8, 8, 3))
            .await
            .status,
        403
    );
    assert_eq!(
        agent_upload(&app, "a99.secret", &session, &png(8, 8, 3))
            .await
            .status,
        401
    );

    // A replay after a reconnect carries the message with links of its own, valid.
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = app.try_connect(&resume_query(&greeting, 0)).await.unwrap();
    let frames = again.drain(Duration::from_millis(500)).await;
    let replayed = frames
        .iter()
        .find(|f| f["type"] == "message" && f["attachment"]["id"] == reply.as_str())
        .unwrap_or_else(|| panic!("replayed: {frames:?}"));
    assert_eq!(
        get(&app, replayed["attachment"]["url"].as_str().unwrap())
            .await
            .status,
        200
    );

    // The agent's downloads are in the audit log, the customer's are not.
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    let rows =
        sqlx::query("SELECT operator, target FROM kefu_audit WHERE action = 'read_attachment'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let readers: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<String, _>("operator"), r.get::<String, _>("target")))
        .collect();
    assert!(
        readers.contains(&("agent:a01".into(), first.clone())),
        "{readers:?}"
    );
    assert!(
        readers.iter().all(|(who, _)| who == "agent:a01"),
        "{readers:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let (app, _) = app_with_agent("att-exp", &[("KEFU__ATTACHMENTS__LINK_TTL_S", "1")]).await;
    let (mut c, _, mut agent, session, _) = chat(&app, async |_: &mut Client, _: &Value| {}).await;
    let up = agent_upload(&app, "a01.secret", &session, &png(20, 20, 4)).await;
    let id = up.json()["attachment_id"].as_str().unwrap().to_string();
    agent
        .send(json!({"type":"message","session":session,"id":"a1","text":"看这个","attachment":id}))
        .await;
    let link = c.recv_type("message").await["attachment"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&app, &link).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late = get(&app, &link).await;
    assert_eq!(late.status, 410, "{}", late.text());
    assert!(late.text().contains("expired"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_auditor_opens_a_stored_photo_with_links_of_its_own() {
    let token = ("KEFU__SERVER__ADMIN_TOKEN", crate::records::TOKEN);
    let (app, url) = app_with_agent("att-audit", &[token]).await;
    let (mut c, greeting, _agent, session, _) =
        chat(&app, async |_: &mut Client, _: &Value| {}).await;
    let up = customer_upload(
        &app,
        &greeting,
        "evidence.png",
        "image/png",
        &png(40, 30, 6),
    )
    .await;
    let id = up.json()["attachment_id"].as_str().unwrap().to_string();
    c.send(json!({"type":"message","id":"p1","text":"证据","attachment":id}))
        .await;
    assert_eq!(c.recv_type("ack").await["id"], "p1");
    c.send(json!({"type":"close"})).await;
    let path = format!("/admin/conversations/{session}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let record = loop {
        let (status, body) = crate::records::admin(&app, "GET", &path, Some("alice")).await;
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "record stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = record["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["attachment"]["id"] == id.as_str())
        .unwrap_or_else(|| panic!("photo in the record: {record}"));
    assert_eq!(line["attachment"]["name"], "evidence.png");
    let link = line["attachment"]["url"].as_str().unwrap();
    assert!(link.contains("&r=operator%3Aalice"), "{link}");
    assert_eq!(get(&app, link).await.status, 200);
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM kefu_audit WHERE action = 'read_attachment' AND operator = 'operator:alice'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 1);
    app.stop().await.unwrap();
}
