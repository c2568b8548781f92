//! Issue #16, two-step sign-in, on the real gateway: enrolled
//! agents and operators need a real RFC 6238 code (computed here from the enrolled secret),
//! codes are good once, wrong codes are throttled, `totp-enroll` seals what it prints, and a
//! roster value that does not open stops the gateway.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};

use crate::helpers::{
    spawn_app_with, temp_store_url, write_operators, write_roster, Client, Event, TestApp, TEST_KEY,
};

const BREAK_GLASS: &str = "break-glass-secret-of-24-chars";

/// The test key ring (the key every test gateway gets).
fn test_keys() -> gateway::store::KeyRing {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(TEST_KEY)
        .unwrap();
    gateway::store::KeyRing::from_keys(&[("k1", raw.try_into().unwrap())]).unwrap()
}

/// A new secret for `id` and its roster value, sealed with the test key.
fn enroll(id: &str) -> (Vec<u8>, String) {
    let secret = gateway::signin::TotpSecret::generate();
    let sealed = gateway::signin::totp::seal(&test_keys(), id, &secret).unwrap();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(secret.base32().as_bytes())
        .unwrap();
    (bytes, sealed)
}

/// RFC 6238 (HMAC-SHA-1, 6 digits, 30 s), written out here rather than taken from the
/// gateway, `offset` steps from now.
fn code(secret: &[u8], offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let step = (now / 30 + offset) as u64;
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    let at = usize::from(tag[19] & 0x0f);
    let word = u32::from_be_bytes([tag[at] & 0x7f, tag[at + 1], tag[at + 2], tag[at + 3]]);
    format!("{:06}", word % 1_000_000)
}

/// A code that is none of the valid ones.
fn wrong_code(secret: &[u8]) -> String {
    let valid: Vec<String> = (-1..=1).map(|o| code(secret, o)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", 100_000 + n))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// Adds `totp = "…"` to the roster entry of `id` in the file at `path`.
fn enroll_in_file(path: &std::path::Path, id: &str, sealed: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let marker = format!("id = {id:?}\n");
    let text = text.replacen(&marker, &format!("{marker}totp = {sealed:?}\n"), 1);
    std::fs::write(path, text).unwrap();
}

async fn agent_app(extra: &[(&str, &str)]) -> (TestApp, Vec<u8>) {
    let roster = write_roster(
        "totp",
        &[
            ("a01", "小王", &["pre_sale"], 3),
            ("a02", "小李", &["pre_sale"], 3),
        ],
    );
    let (secret, sealed) = enroll("a01");
    enroll_in_file(&roster, "a01", &sealed);
    let roster = roster.to_str().unwrap().to_string();
    let mut env = vec![
        ("KEFU__AGENTS__FILE", roster.as_str()),
        ("KEFU__SIGN_IN__OTP_FRAME_TIMEOUT_MS", "1500"),
    ];
    env.extend_from_slice(extra);
    (spawn_app_with(&env).await, secret)
}

/// The error frame then the close an agent gets for a failed second step.
async fn refused_with(agent: &mut Client, code: &str) {
    let frame = agent.recv().await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    assert_eq!(frame["seq"], 0, "{frame}");
    assert!(
        matches!(agent.next_event().await, Event::Closed(_)),
        "closed after {code}"
    );
}

/// The frames of a successful second step by code: the pass, then the welcome.
async fn let_in(agent: &mut Client) -> String {
    let pass = agent.recv().await;
    assert_eq!(pass["type"], "otp_session", "{pass}");
    let welcome = agent.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["agent"], "a01");
    pass["otp_session"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_enrolled_agent_needs_a_real_code_once() {
    let (app, secret) = agent_app(&[]).await;
    let token = Some("a01.secret");
    // Taken together, so a step ending mid-test leaves both valid (one step either side).
    let (now, next) = (code(&secret, 0), code(&secret, 1));

    // No code: told at once, then closed when the first frame brings none in time.
    let mut agent = app.socket("/ws/agent", token, "t").await.unwrap();
    let asked = agent.recv().await;
    assert_eq!(asked["code"], "otp_required", "asked at once: {asked}");
    refused_with(&mut agent, "otp_required").await;

    // A wrong code on the URL.
    let wrong = wrong_code(&secret);
    let path = format!("/ws/agent?otp={wrong}");
    let mut agent = app.socket(&path, token, "t").await.unwrap();
    refused_with(&mut agent, "bad_otp").await;

    // The right code on the URL: a pass, then the welcome.
    let mut agent = app
        .socket(&format!("/ws/agent?otp={now}"), token, "t")
        .await
        .unwrap();
    let pass = let_in(&mut agent).await;
    drop(agent);

    // The same code again is refused (replay), even though it is still within its window.
    let mut agent = app
        .socket(&format!("/ws/agent?otp={now}"), token, "t")
        .await
        .unwrap();
    refused_with(&mut agent, "bad_otp").await;

    // The first-frame form, with the code of the next step (accepted: clocks drift).
    let mut agent = app.socket("/ws/agent", token, "t").await.unwrap();
    let asked = agent.recv().await;
    assert_eq!(asked["code"], "otp_required", "{asked}");
    agent.send(json!({"type":"otp","code": next})).await;
    let_in(&mut agent).await;
    drop(agent);

    // The pass stands in for a code on a reconnect; a forged one does not.
    let path = format!("/ws/agent?otp_session={pass}");
    let mut agent = app.socket(&path, token, "t").await.unwrap();
    let welcome = agent.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    drop(agent);
    let last = if pass.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &pass[..pass.len() - 1]);
    let path = format!("/ws/agent?otp_session={forged}");
    let mut agent = app.socket(&path, token, "t").await.unwrap();
    assert_eq!(agent.recv().await["code"], "otp_required");
    agent.send(json!({"type":"ready"})).await;
    refused_with(&mut agent, "otp_required").await;

    // An agent who is not enrolled signs in as before.
    app.connect_agent("a02.secret").await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_codes_count_against_the_sign_in_throttle() {
    let (app, secret) = agent_app(&[("KEFU__LIMITS__AUTH_FAILURES_PER_MINUTE", "3")]).await;
    let wrong = wrong_code(&secret);
    for _ in 0..3 {
        let path = format!("/ws/agent?otp={wrong}");
        let mut agent = app.socket(&path, Some("a01.secret"), "t").await.unwrap();
        refused_with(&mut agent, "bad_otp").await;
    }
    // Now even the right code is refused before the upgrade.
    let path = format!("/ws/agent?otp={}", code(&secret, 0));
    let refused = app.socket(&path, Some("a01.secret"), "t").await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("expected 429, got {:?}", other.map(|_| "a socket")),
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_enrolled_operator_needs_the_code_for_admin_calls() {
    let (secret, sealed) = enroll("sup1");
    let ops = write_operators(&[
        ("sup1", "supervisor", Some(&sealed)),
        ("sup2", "supervisor", None),
    ]);
    let ops = ops.to_str().unwrap().to_string();
    let app = spawn_app_with(&[
        ("KEFU__SERVER__OPERATORS_FILE", &ops),
        ("KEFU__SERVER__ADMIN_TOKEN", BREAK_GLASS),
    ])
    .await;
    let auth = "Authorization: Bearer sup1.secret\r\n";
    let (status, body) = app.request("GET", "/admin/supervisor", auth).await;
    assert_eq!(
        (status, body.starts_with("otp_required")),
        (401, true),
        "{body}"
    );
    let bad = format!("{auth}X-Kefu-OTP: {}\r\n", wrong_code(&secret));
    let (status, body) = app.request("GET", "/admin/supervisor", &bad).await;
    assert_eq!((status, body.starts_with("bad_otp")), (401, true), "{body}");

    let good = format!("{auth}X-Kefu-OTP: {}\r\n", code(&secret, 0));
    let (status, body) = app.request("GET", "/admin/supervisor", &good).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"queues\""), "{body}");
    let (status, body) = app.request("GET", "/admin/supervisor", &good).await;
    assert_eq!(
        (status, body.starts_with("bad_otp")),
        (401, true),
        "a code is good once: {body}"
    );

    // A pass for the page: one code, then as many polls as it likes.
    let next = format!("{auth}X-Kefu-OTP: {}\r\n", code(&secret, 1));
    let (status, body) = app.request("POST", "/admin/otp-session", &next).await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let pass = reply["otp_session"].as_str().unwrap();
    assert!(reply["expires_at_ms"].as_u64().unwrap() > 0);
    let with_pass = format!("{auth}X-Kefu-OTP-Session: {pass}\r\n");
    for _ in 0..2 {
        let (status, _) = app.request("GET", "/admin/supervisor", &with_pass).await;
        assert_eq!(status, 200);
    }
    // The pass is sup1's: worth nothing with another operator's token.
    let stolen = format!("Authorization: Bearer sup2.secret\r\nX-Kefu-OTP-Session: {pass}\r\n");
    assert_eq!(
        app.request("GET", "/admin/supervisor", &stolen).await.0,
        200,
        "sup2 is not enrolled"
    );
    // An operator who is not enrolled, and the break-glass token, are as before.
    let plain = "Authorization: Bearer sup2.secret\r\n";
    assert_eq!(app.request("GET", "/admin/supervisor", plain).await.0, 200);
    let glass = format!("Authorization: Bearer {BREAK_GLASS}\r\n");
    assert_eq!(app.request("GET", "/admin/supervisor", &glass).await.0, 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn totp_enroll_prints_a_secret_that_the_roster_value_opens_to() {
    let output = Command::new(env!("CARGO_BIN_EXE_kefu-gateway"))
        .args(["totp-enroll", "op01"])
        .env("KEFU_ENCRYPTION_KEY", TEST_KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    let secret = field("secret: ");
    let uri = field("uri: ");
    let sealed = field("roster: totp = ");
    let sealed = sealed.trim_matches('"');
    assert_eq!(
        uri,
        format!("otpauth://totp/kefu:op01?secret={secret}&issuer=kefu")
    );
    assert!(
        data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap()
            .len()
            >= 20
    );
    let opened = gateway::signin::totp::open(&test_keys(), "op01", sealed).unwrap();
    assert_eq!(opened.base32(), secret);
    assert!(
        !text.contains(&format!("totp = \"{secret}")),
        "the roster value is sealed"
    );

    // Without the store key there is nothing to seal with.
    let output = Command::new(env!("CARGO_BIN_EXE_kefu-gateway"))
        .args(["totp-enroll", "op01"])
        .env_remove("KEFU_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[tokio::test]
async fn a_totp_value_that_does_not_open_stops_the_start_and_check_config() {
    let roster = write_roster("badtotp", &[("a01", "小王", &["pre_sale"], 3)]);
    // Sealed for another account: it must not open for a01.
    let (_, sealed) = enroll("a02");
    enroll_in_file(&roster, "a01", &sealed);
    let env: std::collections::HashMap<String, String> = [
        ("KEFU__AGENTS__FILE", roster.to_str().unwrap()),
        ("KEFU__SERVER__LISTEN", "127.0.0.1:0"),
        ("KEFU__STORE__URL", &temp_store_url("badtotp")),
        ("KEFU_ENCRYPTION_KEY", TEST_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = gateway::Settings::load(None, &env).unwrap();
    let err = gateway::Application::build(settings).await.err().unwrap();
    assert!(err.to_string().contains("totp does not open"), "{err}");
    let output = Command::new(env!("CARGO_BIN_EXE_kefu-gateway"))
        .arg("check-config")
        .envs(&env)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("totp does not open") && stderr.contains("a01"),
        "{stderr}"
    );
}
