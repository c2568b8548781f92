use crate::helpers::{spawn_app, spawn_app_with, Event};

fn status_of(err: tokio_tungstenite::tungstenite::Error) -> u16 {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    let (_c, _) = app.connect_customer("").await;
    let (status, body) = app.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "kefu_sessions_active",
        "kefu_frames_out_total",
        "process_resident_memory_bytes",
        "kefu_connections_active",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
}

#[tokio::test]
async fn global_connection_limit_refuses_with_503_and_frees_on_close() {
    let app = spawn_app_with(&[("KEFU__LIMITS__MAX_CONNECTIONS", "2")]).await;
    let (a, _) = app.connect_customer("").await;
    let (_b, _) = app.connect_customer("").await;
    let refused = app.try_connect("/ws/customer").await.err().unwrap();
    assert_eq!(status_of(refused), 503);
    drop(a);
    // The slot comes back once the server notices the close.
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if app.try_connect("/ws/customer").await.is_ok() {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a freed slot is reused");
    let (_, metrics) = app.get("/metrics").await;
    assert!(metrics.contains("reason=\"node_full\""), "{metrics}");
}

#[tokio::test]
async fn per_ip_limit_refuses_with_429() {
    let app = spawn_app_with(&[("KEFU__LIMITS__MAX_CONNECTIONS_PER_IP", "1")]).await;
    let (_a, _) = app.connect_customer("").await;
    let refused = app.try_connect("/ws/customer").await.err().unwrap();
    assert_eq!(status_of(refused), 429);
}

#[tokio::test]
async fn graceful_shutdown_without_a_durable_log_closes_the_chats() {
    let mut app = spawn_app_with(&[("KEFU__STORE__URL", "")]).await;
    let (mut a, _) = app.connect_customer("").await;
    let (mut b, _) = app.connect_customer("lang=en").await;
    app.trigger_stop();
    for c in [&mut a, &mut b] {
        let closed = c.recv().await;
        assert_eq!(closed["type"], "closed");
        assert_eq!(closed["reason"], "shutting_down");
        assert!(matches!(c.next_event().await, Event::Closed(_)));
    }
    let result = tokio::time::timeout(std::time::Duration::from_secs(15), &mut app.handle)
        .await
        .expect("stops in time")
        .expect("joins");
    assert!(result.is_ok());
    assert!(app.try_connect("/ws/customer").await.is_err());
}

#[tokio::test]
async fn stop_with_no_connections_is_prompt() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    app.stop().await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
