//! Slow upgrades: connections that never finish their headers are cut at the header
//! deadline, and one address cannot hold more than its TCP budget, counted at accept.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{spawn_app_with, TestApp};

/// Whether the server closes `tcp` within `within` (EOF or reset on read).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A customer greeted over a connection from another loopback address (127.0.0.2).
async fn greet_from_elsewhere(app: &TestApp) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(app.addr).await.unwrap();
    let url = app.ws_url("/ws/customer");
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let mut client = crate::helpers::Client { ws, last_seq: 0 };
    assert_eq!(client.recv().await["type"], "greeting");
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_at_the_deadline() {
    let app = spawn_app_with(&[("KEFU__SERVER__HEADER_READ_TIMEOUT_MS", "500")]).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /ws/customer HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
        }
    };
    let (_, (_c, greeting)) = tokio::join!(trickle, app.connect_customer(""));
    assert_eq!(greeting["seq"], 1);
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    assert!(started.elapsed() < Duration::from_secs(4));
    // A connection that does send its headers in time is served (and then not cut).
    let (mut c, _) = app.connect_customer("").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.say("m1", "hi").await;
    assert_eq!(c.recv_type("ack").await["id"], "m1");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_tcp_budget() {
    let app = spawn_app_with(&[
        ("KEFU__LIMITS__MAX_TCP_CONNECTIONS_PER_IP", "5"),
        ("KEFU__SERVER__HEADER_READ_TIMEOUT_MS", "0"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
    greet_from_elsewhere(&app).await;
    for tcp in &mut held {
        assert!(
            !closed_within(tcp, Duration::from_millis(50)).await,
            "held ones stay"
        );
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_c, greeting) = app.connect_customer("").await;
    assert_eq!(greeting["seq"], 1);
}
