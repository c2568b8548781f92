//! Issue #16: no personal data or message text in the logs, at any level. The real binary
//! runs with `RUST_LOG=debug` and its stderr captured while chats take the paths that log:
//! agent messages racing a customer's close, transfers, floods, bad frames.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{external, temp_store_url, write_roster, Client, TEST_KEY};

const PHONE: &str = "13812345678";
const ADDRESS: &str = "北京市朝阳区建国路88号";
/// Text that only ever appears inside messages, so any sighting in the log is a leak.
const MARKER: &str = "紫罗兰暗号";

struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Starts `kefu-gateway` on port 0 and waits for its "gateway listening" line.
    fn start(roster: &std::path::Path) -> (Self, SocketAddr) {
        let log = std::env::temp_dir().join(format!("kefu-log-{}.jsonl", std::process::id()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kefu-gateway"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("RUST_LOG", "debug")
            .env("KEFU__AGENTS__FILE", roster)
            .env("KEFU__STORE__URL", temp_store_url("logs"))
            .env("KEFU_ENCRYPTION_KEY", TEST_KEY)
            .env("KEFU__ROUTING__AGENT_GREETING_S", "600")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let gw = Gateway { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let addr = gw.log_text().lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "gateway listening").then(|| v["addr"].as_str()?.parse().ok())?
            });
            if let Some(addr) = addr {
                return (gw, addr);
            }
            assert!(
                Instant::now() < deadline,
                "no listening line: {}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn take_chat(agent: &mut Client) -> String {
    let assigned = agent.recv_type("assigned").await;
    assigned["session"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn debug_logs_hold_no_phone_address_or_message_text() {
    let roster = write_roster(
        "logs",
        &[
            ("a01", "小王", &["after_sale", "pre_sale"], 5),
            ("a02", "小李", &["complaint"], 5),
        ],
    );
    let (gw, addr) = Gateway::start(&roster);
    let app = external(addr);
    let mut a01 = app.connect_agent("a01.secret").await;
    a01.send(json!({"type":"ready"})).await;
    let secret = format!("{MARKER} 手机{PHONE} 地址{ADDRESS}");

    // 1. A flood of customer messages with a phone number and an address, then a hand-off.
    let (mut c1, _) = app.connect_customer(&format!("visitor={PHONE}")).await;
    for i in 0..30 {
        c1.say(&format!("f{i}"), &secret).await;
    }
    c1.send(json!({"type":"request_human"})).await;
    let s1 = take_chat(&mut a01).await;
    for i in 0..10 {
        c1.say(&format!("w{i}"), &secret).await;
    }
    // Bad frames quoting the secret.
    c1.send(json!({"type":"message","id":7,"text":secret}))
        .await;
    c1.send(json!({"type":"messag","text":secret})).await;
    a01.send(json!({"type":"message","session":s1,"id":5,"text":secret}))
        .await;

    // 2. A transfer, with messages crossing it.
    let mut a02 = app.connect_agent("a02.secret").await;
    a02.send(json!({"type":"ready"})).await;
    a01.send(json!({"type":"transfer","session":s1,"group":"complaint"}))
        .await;
    a01.send(json!({"type":"message","session":s1,"id":"late-1","text":secret}))
        .await;
    let s1b = take_chat(&mut a02).await;
    assert_eq!(s1b, s1);

    // 3. Agent messages racing the customer's close.
    for i in 0..20 {
        a02.send(json!({"type":"message","session":s1,"id":format!("r{i}"),"text":secret}))
            .await;
        if i == 3 {
            c1.send(json!({"type":"close"})).await;
        }
    }
    let _ = a02.drain(Duration::from_millis(500)).await;
    drop(c1);

    // 4. A customer who leaves while the agent writes, and a dropped socket.
    let (mut c2, _) = app.connect_customer("visitor=v-2").await;
    c2.say("x1", &secret).await;
    c2.send(json!({"type":"request_human"})).await;
    let s2 = take_chat(&mut a01).await;
    drop(c2);
    for i in 0..5 {
        a01.send(json!({"type":"message","session":s2,"id":format!("d{i}"),"text":secret}))
            .await;
    }
    let _ = a01.drain(Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = gw.log_text();
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "the log is at debug level"
    );
    // Digits are read per field: a phone split by separators inside one value is caught, while
    // digits of neighbouring fields (a timestamp ending in 138 next to sqlx's `$1, $2, … $10`)
    // cannot spell one by chance.
    let digits = field_digits(&log);
    for needle in [
        MARKER,
        "建国路",
        "朝阳区",
        "手机",
        "地址",
        PHONE,
        "1234 5678",
    ] {
        assert!(!log.contains(needle), "the log holds {needle:?}");
    }
    let leak = digits.iter().find(|d| d.contains(PHONE));
    assert!(
        leak.is_none(),
        "the log's digits hold the phone number: {leak:?}"
    );
}

/// The digits of every value in the JSON log, one string per value (a line that is not JSON
/// counts as one value). Timestamps and sqlx's statement text (placeholders, not data) are left
/// out.
fn field_digits(log: &str) -> Vec<String> {
    fn walk(key: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(k, v, out)),
            Value::Array(items) => items.iter().for_each(|v| walk(key, v, out)),
            _ if matches!(key, "timestamp" | "db.statement" | "summary") => {}
            Value::String(text) => out.push(text.chars().filter(char::is_ascii_digit).collect()),
            other => out.push(
                other
                    .to_string()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect(),
            ),
        }
    }
    let mut out = Vec::new();
    for line in log.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => walk("", &v, &mut out),
            Err(_) => out.push(line.chars().filter(char::is_ascii_digit).collect()),
        }
    }
    out
}
