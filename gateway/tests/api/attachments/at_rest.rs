//! Attachments at rest: sealed in the database (no run of the image's bytes in clear in the
//! SQLite files), and deleted with their conversation by retention.

use gateway::session::now_ms;
use gateway::store::attachments::AttachmentMetaRow;
use gateway::store::{KeyRing, Store};

use super::*;
use crate::records::{record, store_settings};

fn db_bytes(url: &str) -> Vec<u8> {
    let db = url.strip_prefix("sqlite://").unwrap();
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(bytes) = std::fs::read(format!("{db}{suffix}")) {
            all.extend_from_slice(&bytes);
        }
    }
    all
}

#[tokio::test]
async fn raw_database_bytes_hold_no_image_bytes_in_clear() {
    let (app, url) = app_with_agent("att-rest", &[]).await;
    let photo = png(200, 150, 11);
    let (mut c, greeting, mut agent, _, _) = chat(&app, async |_: &mut Client, _: &Value| {}).await;
    let up = customer_upload(&app, &greeting, "secret.png", "image/png", &photo).await;
    let id = up.json()["attachment_id"].as_str().unwrap().to_string();
    c.send(json!({"type":"message","id":"p1","text":"","attachment":id}))
        .await;
    let link = agent.recv_type("message").await["attachment"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let served = get(&app, &link).await.body;
    assert!(served.len() > 1000);
    let raw = db_bytes(&url);
    assert!(
        raw.len() > served.len(),
        "the database holds the image somewhere"
    );
    for bytes in [&photo, &served] {
        for at in (64..bytes.len() - 32).step_by(bytes.len() / 16) {
            let run = &bytes[at..at + 32];
            assert!(
                !contains(&raw, run),
                "32 bytes of the image at {at} are in the database in clear"
            );
        }
    }
    assert!(
        !contains(&raw, b"secret.png"),
        "the file name is sealed too"
    );
    app.stop().await.unwrap();
}

fn ring() -> KeyRing {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(crate::helpers::TEST_KEY)
        .unwrap();
    KeyRing::from_keys(&[("k1", raw.try_into().unwrap())]).unwrap()
}

#[tokio::test]
async fn attachments_go_with_their_conversation_under_retention() {
    let url = temp_store_url("att-retention");
    let store = Store::open_with(&store_settings(&url), ring())
        .await
        .unwrap();
    let day = 86_400_000;
    let now = now_ms();
    store
        .write_now(vec![
            record("old-chat", now - 200 * day, "v1"),
            record("new-chat", now - day, "v2"),
        ])
        .await
        .unwrap();
    let meta = AttachmentMetaRow {
        name: "x.pdf".into(),
        mime: "application/pdf".into(),
        thumb_mime: None,
    };
    for (id, session, at) in [
        ("att-old", "old-chat", now - 199 * day),
        ("att-new", "new-chat", now),
        ("att-orphan", "gone", now - 190 * day),
    ] {
        store
            .reserve_attachment(id, session, "customer", 0, at, at)
            .await
            .unwrap();
        store
            .put_chunk(id, "file", 0, b"%PDF-1.4 body".to_vec())
            .await
            .unwrap();
        store
            .finish_attachment(id, "file", &meta, 13, None)
            .await
            .unwrap();
    }
    store.purge_older_than(now - 180 * day).await.unwrap();
    assert!(store.attachment("att-old").await.unwrap().is_none());
    assert_eq!(store.chunk_count("att-old", "file").await.unwrap(), 0);
    assert!(store.attachment("att-orphan").await.unwrap().is_none());
    let kept = store.attachment("att-new").await.unwrap().unwrap();
    assert_eq!(kept.meta.name, "x.pdf");
    assert_eq!(
        store.chunk(&kept.id, "file", 0).await.unwrap().unwrap(),
        b"%PDF-1.4 body"
    );
    // A customer's deletion takes their attachments too.
    store.delete_visitor("v2").await.unwrap();
    assert!(store.attachment("att-new").await.unwrap().is_none());
}
