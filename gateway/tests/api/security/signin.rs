//! Sign-in starvation: bad tokens are cheap to refuse, argon2 work is bounded and fails fast,
//! and repeated failures from one address are throttled.

use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, write_roster, TestApp};

async fn app() -> TestApp {
    app_with_queue("128").await
}

async fn app_with_queue(sign_in_queue: &str) -> TestApp {
    let roster = write_roster("signin", &[("a01", "小王", &["pre_sale"], 5)]);
    let roster = roster.to_str().unwrap().to_string();
    spawn_app_with(&[
        ("KEFU__AGENTS__FILE", &roster),
        (
            "KEFU__SERVER__ADMIN_TOKEN",
            "an-admin-token-of-32-characters!",
        ),
        ("KEFU__LIMITS__SIGN_IN_QUEUE", sign_in_queue),
    ])
    .await
}

/// The HTTP status an agent sign-in with `token` gets.
async fn agent_status(app: &TestApp, token: &str) -> u16 {
    match app.try_connect_agent(token).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tokens_not_naming_a_known_agent_are_refused_cheaply_then_throttled() {
    let app = app().await;
    let started = Instant::now();
    for token in [
        "nodot",
        "a99.secret",
        "a01.",
        ".x",
        "x.y",
        "zzz",
        "a02.x",
        "q",
        "w",
        "e",
    ] {
        assert_eq!(agent_status(&app, token).await, 401, "{token}");
    }
    // No argon2 ran for them (one check alone takes a good fraction of this in a debug build).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Ten failures in the minute: the address is throttled, even with the right token.
    assert_eq!(agent_status(&app, "a01.bad").await, 429);
    assert_eq!(agent_status(&app, "a01.secret").await, 429);
    // Customers are not affected.
    let (_c, greeting) = app.connect_customer("").await;
    assert_eq!(greeting["seq"], 1);
}

#[tokio::test]
async fn admin_token_failures_are_throttled_too() {
    let app = app().await;
    for _ in 0..10 {
        let (status, _) = app.get("/admin/supervisor").await;
        assert_eq!(status, 401);
    }
    let (status, _) = app.post("/admin/kb/reload", Some("guess")).await;
    assert_eq!(status, 429);
    // Agents sign in as usual: a separate count.
    app.connect_agent("a01.secret").await;
}

#[tokio::test]
async fn a_sign_in_flood_gets_503_at_once_and_customers_are_still_greeted() {
    let app = app_with_queue("16").await;
    let attempts = (0..60).map(|i| {
        let app = &app;
        async move { agent_status(app, &format!("a01.wrong-{i}")).await }
    });
    let flood = futures_util::future::join_all(attempts);
    let greeted = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let (_c, greeting) = app.connect_customer("").await;
        assert_eq!(greeting["seq"], 1);
        started.elapsed()
    };
    let (statuses, greeting_took) = tokio::join!(flood, greeted);
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the queue is bounded: {statuses:?}"
    );
    assert!(greeting_took < Duration::from_secs(2), "{greeting_took:?}");
}
