//! Conversation records over real sockets and a real SQLite file (and PostgreSQL when one
//! answers): transcripts stored encrypted and read back through the admin API with audit
//! entries, survey escalation to complaints, keys, retention, reports, stop without loss.

use std::collections::HashMap;
use std::time::Duration;

use gateway::records::ConversationRecord;
use gateway::session::{now_ms, Speaker, TranscriptEntry};
use gateway::store::{KeyRing, Store, StoreSettings};
use gateway::{Application, Settings};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, temp_store_url, write_roster, Client, TestApp, WAIT};

pub const TOKEN: &str = "admin-secret-of-24-characters";
const KEY_BYTES: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

/// An admin request with the token and (optionally) an operator; returns status and body.
pub async fn admin(
    app: &TestApp,
    method: &str,
    path: &str,
    operator: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let who = operator
        .map(|o| format!("X-Kefu-Operator: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n{who}Content-Length: 0\r\nConnection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

pub async fn admin_json(app: &TestApp, path: &str) -> Value {
    let (status, body) = admin(app, "GET", path, Some("alice")).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub fn store_settings(url: &str) -> StoreSettings {
    let env: HashMap<String, String> = [
        ("KEFU__STORE__URL".to_string(), url.to_string()),
        (
            "KEFU_ENCRYPTION_KEY".to_string(),
            crate::helpers::TEST_KEY.to_string(),
        ),
    ]
    .into();
    Settings::load(None, &env).unwrap().store
}

/// A gateway with a store at `url`, the admin token and a roster.
async fn node(url: &str, roster: &std::path::Path, extra: &[(&str, &str)]) -> TestApp {
    let roster = roster.to_str().unwrap().to_string();
    let mut env = vec![
        ("KEFU__STORE__URL", url),
        ("KEFU__SERVER__ADMIN_TOKEN", TOKEN),
        ("KEFU__AGENTS__FILE", roster.as_str()),
        ("KEFU__ROUTING__AGENT_GREETING_S", "600"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

/// Customer asks for a person; agent takes it, answers, closes. Returns the session id.
async fn served_chat(c: &mut Client, agent: &mut Client, text: &str) -> String {
    // Asked first, so the default group (pre_sale) takes it whatever the text is about.
    c.send(json!({"type":"request_human"})).await;
    let assigned = agent.recv_type("assigned").await;
    let session = assigned["session"].as_str().unwrap().to_string();
    c.recv_type("agent_joined").await;
    c.say("c-1", text).await;
    c.recv_type("ack").await;
    let relayed = agent.recv_type("message").await;
    assert!(!relayed["text"].as_str().unwrap().contains("13812345678"));
    agent
        .send(json!({"type":"message","session":session,"id":"a-1","text":"您好，我来处理"}))
        .await;
    c.recv_type("message").await;
    agent.send(json!({"type":"close","session":session})).await;
    assert_eq!(c.recv_type("closed").await["reason"], "agent_closed");
    c.recv_type("survey").await;
    session
}

fn db_bytes(url: &str) -> Vec<u8> {
    let path = url.strip_prefix("sqlite://").unwrap();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "the database file exists");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn transcript_is_stored_encrypted_read_back_and_every_read_audited() {
    let url = temp_store_url("roundtrip");
    let roster = write_roster("rec1", &[("a01", "小王", &["pre_sale"], 2)]);
    let app = node(&url, &roster, &[]).await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, _) = app.connect_customer("visitor=vis-zebra-42&lang=zh").await;
    let text = "斑马订单KF-ZEBRA-4471没收到，我手机13812345678，地址北京市朝阳区建国路88号3单元";
    let session = served_chat(&mut c, &mut agent, text).await;
    c.send(json!({"type":"survey_answer","score":9})).await;
    assert_eq!(c.recv_type("error").await["code"], "bad_field");
    c.send(json!({"type":"survey_answer","score":2,"comment":"很快"}))
        .await;
    assert_eq!(c.recv_type("closed").await["reason"], "survey_done");

    // Reads need the token and a named reader.
    let path = format!("/admin/conversations/{session}");
    assert_eq!(app.get(&path).await.0, 401);
    assert_eq!(admin(&app, "GET", &path, None).await.0, 400);
    let record = loop {
        let (status, body) = admin(&app, "GET", &path, Some("alice")).await;
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert_eq!(status, 404, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["visitor"], "vis-zebra-42");
    assert_eq!(record["survey_score"], 2);
    assert_eq!(record["survey_comment"], "很快");
    assert_eq!(record["end_reason"], "survey_done");
    assert_eq!(record["agents"], json!(["a01"]));
    assert_eq!(record["groups"], json!(["pre_sale"]));
    let lines = record["transcript"].as_array().unwrap();
    assert!(lines
        .iter()
        .any(|l| l["from"] == "customer" && l["text"] == text));
    assert!(lines
        .iter()
        .any(|l| l["from"] == "agent" && l["id"] == "a-1"));
    assert!(lines
        .iter()
        .any(|l| l["text"].as_str().unwrap().contains("handoff to pre_sale")));
    assert!(record["first_response_ms"].as_u64().is_some());

    // Search by visitor and date, export.
    let found = admin_json(&app, "/admin/conversations?visitor=vis-zebra-42").await;
    assert_eq!(found["conversations"][0]["id"], session.as_str());
    assert!(found["conversations"][0].get("transcript").is_none());
    let day = "1970-01-01";
    let none = admin_json(&app, &format!("/admin/conversations?from={day}&to={day}")).await;
    assert_eq!(none["conversations"], json!([]));
    let export = admin_json(&app, "/admin/customers/vis-zebra-42/export").await;
    assert_eq!(
        export["conversations"][0]["transcript"],
        record["transcript"]
    );

    // At rest: neither the text, the phone number, the address nor the visitor id is readable.
    let raw = db_bytes(&url);
    for secret in [
        "KF-ZEBRA-4471",
        "13812345678",
        "建国路88号",
        "vis-zebra-42",
        "很快",
    ] {
        assert!(
            !contains(&raw, secret),
            "`{secret}` is readable in the database file"
        );
    }

    // Each read is in the audit log: who, what, from where.
    let audit = admin_json(&app, "/admin/audit?operator=alice").await;
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["read_conversation", "search", "export_customer"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let read = entries
        .iter()
        .find(|e| e["action"] == "read_conversation")
        .unwrap();
    assert_eq!(read["target"], session.as_str());
    assert_eq!(read["peer"], "127.0.0.1");
    assert!(read["at_ms"].as_u64().unwrap() > 0);
    assert!(
        !audit.to_string().contains("vis-zebra-42"),
        "visitor ids stay out of the audit log"
    );

    // Deletion on request, audited.
    let (status, body) = admin(&app, "DELETE", "/admin/customers/vis-zebra-42", Some("bob")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["deleted"], 1);
    assert_eq!(admin(&app, "GET", &path, Some("alice")).await.0, 404);
    // The break-glass use is audited too (spawned, so it may share the millisecond).
    let audit = admin_json(&app, "/admin/audit?operator=bob").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert!(actions.contains(&"delete_customer"), "{actions:?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn dissatisfied_survey_reopens_as_a_complaint_one_level_up_with_the_history() {
    let url = temp_store_url("complaint");
    let roster = write_roster(
        "rec2",
        &[
            ("a01", "小王", &["pre_sale"], 2),
            ("c01", "投诉组小李", &["complaint"], 2),
        ],
    );
    let app = node(&url, &roster, &[]).await;
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let mut handler = app.connect_agent("c01.secret").await;
    handler.send(json!({"type":"ready"})).await;
    let (mut c, _) = app.connect_customer("visitor=vis-c2").await;
    let text = "快递三天没动了，单号SF1234567890";
    let session = served_chat(&mut c, &mut agent, text).await;

    c.send(json!({"type":"survey_answer","score":5,"comment":"太慢了"}))
        .await;
    let handoff = c.recv_type("handoff").await;
    assert_eq!(handoff["group"], "complaint");
    assert_eq!(handoff["reason"], "survey_escalation");
    assert_eq!(handoff["level"], 1);
    let assigned = handler.recv_type("assigned").await;
    assert_eq!(assigned["session"], session.as_str());
    assert_eq!(assigned["customer"]["complaint_level"], 1);
    // The complaint agent sees the history as agents do: personal data masked.
    let history: Vec<String> = assigned["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap().to_string())
        .collect();
    assert!(history.iter().any(|t| t == text), "{history:?}");
    assert!(
        history.iter().any(|t| t.contains("您好，我来处理")),
        "{history:?}"
    );
    assert!(
        history.iter().any(|t| t.contains("survey: 5")),
        "{history:?}"
    );

    // Handled and closed; a second bad answer would go to level 2, a good one resolves.
    handler
        .send(
            json!({"type":"message","session":session,"id":"h-1","text":"非常抱歉，马上为您加急"}),
        )
        .await;
    c.recv_type("message").await;
    handler
        .send(json!({"type":"close","session":session}))
        .await;
    c.recv_type("survey").await;
    c.send(json!({"type":"survey_answer","score":1})).await;
    assert_eq!(c.recv_type("closed").await["reason"], "survey_done");

    let week = gateway::records::dates::week_of(now_ms());
    let report = loop {
        let r = admin_json(&app, &format!("/admin/reports/complaints?week={week}")).await;
        if r["resolved"] == 1 {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["total"], 1, "{report}");
    assert_eq!(report["by_level"]["1"], 1, "{report}");
    let complaint = &report["complaints"][0];
    assert_eq!(complaint["session"], session.as_str());
    assert_eq!(complaint["handler"], "c01");
    assert_eq!(complaint["status"], "resolved");
    assert_eq!(complaint["satisfaction"], 1);
    let (status, csv) = admin(
        &app,
        "GET",
        &format!("/admin/reports/complaints?week={week}&format=csv"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("week,level,category,count"), "{csv}");
    assert!(csv.contains(&format!("{week},all,all,1,0,1,")), "{csv}");
    app.stop().await.unwrap();
}

pub fn record(id: &str, created_ms: u64, visitor: &str) -> ConversationRecord {
    ConversationRecord {
        id: id.into(),
        visitor: Some(visitor.into()),
        channel: "web".into(),
        lang: "zh".into(),
        groups: vec!["pre_sale".into()],
        agents: vec!["a01".into()],
        category: Some("logistics".into()),
        created_ms,
        handoff_ms: Some(created_ms + 10_000),
        assigned_ms: Some(created_ms + 20_000),
        first_response_ms: Some(created_ms + 40_000),
        closed_ms: Some(created_ms + 100_000),
        end_reason: "survey_done".into(),
        survey_score: Some(2),
        survey_comment: None,
        complaint_level: 0,
        complaint_ms: None,
        escalated: false,
        transfers: 0,
        greeting_sla_met: Some(true),
        transcript: vec![TranscriptEntry::said(
            Speaker::Customer,
            &format!("订单 {id} 到哪了"),
            created_ms,
            Some("c-1".into()),
            Default::default(),
        )],
    }
}

#[tokio::test]
async fn wrong_key_fails_and_an_old_key_id_still_decrypts_after_rotation() {
    let url = temp_store_url("keys");
    let settings = store_settings(&url);
    let k1 = Store::open_with(&settings, KeyRing::from_keys(&[("k1", KEY_BYTES)]).unwrap())
        .await
        .unwrap();
    k1.write_now(vec![record("old-1", now_ms(), "v1")])
        .await
        .unwrap();
    let wrong = Store::open_with(&settings, KeyRing::from_keys(&[("k1", [9; 32])]).unwrap())
        .await
        .unwrap();
    let err = wrong.conversation("old-1").await.unwrap_err().to_string();
    assert!(err.contains("cannot decrypt"), "{err}");
    let rotated = Store::open_with(
        &settings,
        KeyRing::from_keys(&[("k2", [5; 32]), ("k1", KEY_BYTES)]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        rotated
            .conversation("old-1")
            .await
            .unwrap()
            .unwrap()
            .visitor
            .as_deref(),
        Some("v1")
    );
    rotated
        .write_now(vec![record("new-1", now_ms(), "v1")])
        .await
        .unwrap();
    // Both rows are found by visitor (blind index under either key).
    assert_eq!(rotated.export_visitor("v1").await.unwrap().len(), 2);
    assert!(k1
        .conversation("new-1")
        .await
        .unwrap_err()
        .to_string()
        .contains("k2"));
}

#[tokio::test]
async fn retention_job_deletes_conversations_past_180_days() {
    let url = temp_store_url("retention");
    let store = Store::open(&store_settings(&url)).await.unwrap();
    let day = 86_400_000;
    store
        .write_now(vec![
            record("ancient", now_ms() - 200 * day, "v"),
            record("recent", now_ms() - 10 * day, "v"),
        ])
        .await
        .unwrap();
    let roster = write_roster("rec3", &[("a01", "小王", &["pre_sale"], 2)]);
    let app = node(&url, &roster, &[]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while admin(&app, "GET", "/admin/conversations/ancient", Some("alice"))
        .await
        .0
        != 404
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old conversation was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        admin(&app, "GET", "/admin/conversations/recent", Some("alice"))
            .await
            .0,
        200
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn summary_report_figures_match_a_known_scenario() {
    let url = temp_store_url("report");
    let store = Store::open(&store_settings(&url)).await.unwrap();
    let t = now_ms() - 3_600_000;
    let a = record("r-a", t, "v1"); // first response 30 s, resolved in 100 s, score 2
    let mut b = record("r-b", t, "v2");
    b.first_response_ms = Some(t + 70_000); // 60 s
    b.closed_ms = Some(t + 300_000);
    b.survey_score = Some(5);
    b.escalated = true;
    b.complaint_level = 1;
    b.greeting_sla_met = Some(false);
    let mut c = record("r-c", t, "v3"); // bot only, no survey
    c.handoff_ms = None;
    c.assigned_ms = None;
    c.first_response_ms = None;
    c.survey_score = None;
    c.greeting_sla_met = None;
    c.closed_ms = Some(t + 20_000);
    let mut d = record("r-d", t, "v4");
    d.transfers = 1;
    d.survey_score = Some(3);
    d.first_response_ms = Some(t + 100_000); // 90 s
    d.closed_ms = Some(t + 180_000);
    store.write_now(vec![a, b, c, d]).await.unwrap();
    let roster = write_roster("rec4", &[("a01", "小王", &["pre_sale"], 2)]);
    let app = node(&url, &roster, &[]).await;
    let (status, _) = admin(&app, "GET", "/admin/reports/summary", None).await;
    assert_eq!(
        status, 200,
        "reports carry no personal data; no reader needed"
    );
    let s = admin_json(&app, "/admin/reports/summary").await["summary"].clone();
    assert_eq!(s["conversations"], 4, "{s}");
    assert_eq!(s["first_response_avg_s"], 60.0, "{s}"); // (30 + 60 + 90) / 3
    assert_eq!(s["time_to_resolve_avg_s"], 150.0, "{s}"); // (100 + 300 + 20 + 180) / 4
    assert_eq!(s["first_contact_resolution_rate"], 0.5, "{s}"); // a and c
    assert_eq!(s["survey_answers"], 3, "{s}");
    assert_eq!(s["satisfaction_avg_score"], 3.333, "{s}");
    assert_eq!(s["satisfaction_rate"], 0.667, "{s}");
    assert_eq!(s["escalation_rate"], 0.25, "{s}");
    assert_eq!(s["greeting_sla_compliance"], 0.667, "{s}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refuses_to_start_with_a_store_but_no_key_or_short_retention() {
    let url = temp_store_url("nokey");
    let env: HashMap<String, String> = [
        ("KEFU__STORE__URL".to_string(), url.clone()),
        (
            "KEFU__SERVER__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
    ]
    .into();
    let settings = Settings::load(None, &env).unwrap();
    let err = Application::build(settings)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("KEFU_ENCRYPTION_KEY"), "{err}");
    assert!(
        err.contains("key file") || err.contains("KEY_FILE"),
        "{err}"
    );

    let mut env = env;
    env.insert(
        "KEFU_ENCRYPTION_KEY".into(),
        crate::helpers::TEST_KEY.into(),
    );
    env.insert("KEFU__STORE__RETENTION_DAYS".into(), "30".into());
    // Refused when the settings are read (so `check-config` refuses it too), naming the key.
    let err = Settings::load(None, &env).unwrap_err().to_string();
    assert!(err.contains("180"), "{err}");
    assert!(err.contains("store.retention_days"), "{err}");
    env.remove("KEFU__STORE__RETENTION_DAYS");

    // The key is never taken from configuration.
    env.insert("KEFU__STORE__KEY".into(), crate::helpers::TEST_KEY.into());
    assert!(Settings::load(None, &env).is_err());
}

#[tokio::test]
async fn an_open_chat_is_stored_when_the_gateway_stops() {
    let url = temp_store_url("stop");
    let roster = write_roster("rec5", &[("a01", "小王", &["pre_sale"], 2)]);
    let app = node(&url, &roster, &[]).await;
    let (mut c, greeting) = app.connect_customer("visitor=vis-stop").await;
    let session = greeting["session_id"].as_str().unwrap().to_string();
    c.say("c-1", "还在处理中的问题 UNIQUE-STOP-77").await;
    c.recv_type("ack").await;
    app.stop().await.unwrap();

    let store = Store::open(&store_settings(&url)).await.unwrap();
    let kept = store
        .conversation(&session)
        .await
        .unwrap()
        .expect("kept on stop");
    assert_eq!(kept.end_reason, "open");
    assert!(kept.closed_ms.is_none());
    assert!(kept
        .transcript
        .iter()
        .any(|l| l.text.contains("UNIQUE-STOP-77")));
}

/// PostgreSQL at `PG_URL`/`DATABASE_URL`, or a local server with trust auth; `None` (with a
/// message) when there is none.
async fn postgres_schema() -> Option<String> {
    let base = std::env::var("PG_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sqlx::any::install_default_drivers();
    let pool = match sqlx::AnyPool::connect(&base).await {
        Ok(p) => p,
        Err(err) => {
            eprintln!("SKIPPED (PostgreSQL part only): no PostgreSQL at {base}: {err}");
            return None;
        }
    };
    let schema = format!("kefu_test_{}_{}", std::process::id(), now_ms());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

#[tokio::test]
async fn postgres_store_round_trip_when_available() {
    let Some(url) = postgres_schema().await else {
        return;
    };
    let store = Store::open(&store_settings(&url)).await.unwrap();
    let day = 86_400_000;
    let mut r = record("pg-1", now_ms(), "pg-visitor");
    r.complaint_level = 2;
    r.complaint_ms = Some(now_ms());
    store.save(r).await;
    store
        .save(record("pg-old", now_ms() - 400 * day, "pg-visitor"))
        .await;
    store.flush().await.unwrap();
    let back = store.conversation("pg-1").await.unwrap().unwrap();
    assert_eq!(back.visitor.as_deref(), Some("pg-visitor"));
    assert!(back.transcript[0].text.contains("pg-1"));
    assert_eq!(
        store
            .search(Some("pg-visitor"), None, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.complaints(0, u64::MAX / 2).await.unwrap().len(), 1);
    assert_eq!(
        store.purge_older_than(now_ms() - 180 * day).await.unwrap(),
        1
    );
    assert_eq!(store.delete_visitor("pg-visitor").await.unwrap(), 1);
}
