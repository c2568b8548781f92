//! Issue #16, data at rest, checked on the raw database: the SQLite files are private to the
//! gateway's user, each encrypted field is bound to its row and column, rows written in the
//! earlier format still read, and the blind index has a key of its own.

use std::os::unix::fs::PermissionsExt;

use gateway::session::now_ms;
use gateway::store::{KeyRing, Store};
use sqlx::Row;

use crate::helpers::{spawn_app_with, temp_store_url, TEST_KEY};
use crate::records::{record, store_settings};

fn db_path(url: &str) -> String {
    url.strip_prefix("sqlite://").unwrap().to_string()
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn raw(url: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("{url}?mode=rw"))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_gateway_creates_its_database_files_mode_0600() {
    let url = temp_store_url("mode");
    let app = spawn_app_with(&[("KEFU__STORE__URL", &url)]).await;
    let (mut c, _) = app.connect_customer("visitor=v-mode").await;
    c.say("m1", "hello").await;
    c.send(serde_json::json!({"type":"close"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // While the gateway runs, with whatever journal files SQLite keeps beside the database.
    // The conversation log's two halves beside it too (`x.db` -> `x-log.db`, `x-log-2.db`).
    let db = db_path(&url);
    let stem = db.strip_suffix(".db").unwrap_or(&db);
    for file in [
        db.clone(),
        format!("{stem}-log.db"),
        format!("{stem}-log-2.db"),
    ] {
        assert_eq!(mode(&file), 0o600, "{file}");
        for suffix in ["-wal", "-shm", "-journal"] {
            let path = format!("{file}{suffix}");
            if std::path::Path::new(&path).exists() {
                assert_eq!(mode(&path), 0o600, "{path}");
            }
        }
    }
    app.stop().await.unwrap();
    assert_eq!(mode(&db), 0o600, "{db}");
}

pub fn ring() -> KeyRing {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(TEST_KEY)
        .unwrap();
    KeyRing::from_keys(&[("k1", raw.try_into().unwrap())]).unwrap()
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_or_column_does_not_decrypt() {
    let url = temp_store_url("aad");
    let store = Store::open_with(&store_settings(&url), ring())
        .await
        .unwrap();
    let (a, b) = (
        record("row-a", now_ms(), "v-a"),
        record("row-b", now_ms(), "v-b"),
    );
    store.write_now(vec![a, b]).await.unwrap();
    assert!(store.conversation("row-a").await.unwrap().is_some());

    let db = raw(&url).await;
    let sealed = |id: &'static str| {
        let db = db.clone();
        async move {
            let row = sqlx::query("SELECT transcript_enc, visitor_enc, visitor_idx FROM kefu_conversations WHERE id = ?")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
            let t: String = row.get(0);
            let v: String = row.get(1);
            let i: String = row.get(2);
            (t, v, i)
        }
    };
    let (ta, va, ia) = sealed("row-a").await;
    let (tb, _, _) = sealed("row-b").await;
    assert!(ta.starts_with("v2.k1:") && va.starts_with("v2.k1:"), "{ta}");
    assert!(ia.starts_with("v2.k1:"), "{ia}");
    assert!(!ta.contains("row-a") && !va.contains("v-a"));

    // Swap the transcripts of the two rows: neither opens any more.
    let set = "UPDATE kefu_conversations SET transcript_enc = ? WHERE id = ?";
    sqlx::query(set)
        .bind(&tb)
        .bind("row-a")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(set)
        .bind(&ta)
        .bind("row-b")
        .execute(&db)
        .await
        .unwrap();
    assert!(store.conversation("row-a").await.is_err());
    assert!(store.conversation("row-b").await.is_err());

    // The visitor id moved into the comment column of its own row: refused too.
    sqlx::query(set)
        .bind(&ta)
        .bind("row-a")
        .execute(&db)
        .await
        .unwrap();
    assert!(store.conversation("row-a").await.unwrap().is_some());
    sqlx::query("UPDATE kefu_conversations SET survey_comment_enc = ? WHERE id = ?")
        .bind(&va)
        .bind("row-a")
        .execute(&db)
        .await
        .unwrap();
    assert!(store.conversation("row-a").await.is_err());
}

#[tokio::test]
async fn rows_of_the_earlier_format_still_read_and_are_found_by_visitor() {
    let url = temp_store_url("legacy");
    let keys = ring();
    let store = Store::open_with(&store_settings(&url), ring())
        .await
        .unwrap();
    store
        .write_now(vec![record("old-1", now_ms(), "v-old")])
        .await
        .unwrap();
    // Rewrite the row as the earlier format wrote it: no associated data, and the blind
    // index keyed with the encryption key itself.
    let transcript = serde_json::to_string(&record("old-1", 0, "v-old").transcript).unwrap();
    let legacy_idx = keys.blind_indexes("v-old").pop().unwrap();
    assert!(!legacy_idx.starts_with("v2."), "{legacy_idx}");
    let db = raw(&url).await;
    sqlx::query("UPDATE kefu_conversations SET transcript_enc = ?, visitor_enc = ?, visitor_idx = ? WHERE id = ?")
        .bind(keys.encrypt(&transcript).unwrap())
        .bind(keys.encrypt("v-old").unwrap())
        .bind(&legacy_idx)
        .bind("old-1")
        .execute(&db)
        .await
        .unwrap();
    let old = store.conversation("old-1").await.unwrap().unwrap();
    assert_eq!(old.visitor.as_deref(), Some("v-old"));
    assert!(old.transcript[0].text.contains("old-1"));
    let found = store.export_visitor("v-old").await.unwrap();
    assert_eq!(found.len(), 1);
}
