//! Frames over the size limit, over a raw socket (a library client refuses to send them the
//! way an attacker would): the client must see a clean close with code 1009, not a reset.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, TestApp};

/// A raw WebSocket customer connection, past the handshake.
async fn raw_customer(app: &TestApp) -> TcpStream {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET /ws/customer HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// A masked client text frame header with a 64-bit length.
fn header(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]); // mask key
    h
}

/// Reads until a close frame; returns its code, or `None` on EOF/reset without one.
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
        // Walk the server's (unmasked) frames.
        let mut at = 0;
        while at + 2 <= all.len() {
            let opcode = all[at] & 0x0f;
            let (len, start) = match all[at + 1] & 0x7f {
                126 if at + 4 <= all.len() => (
                    u16::from_be_bytes([all[at + 2], all[at + 3]]) as usize,
                    at + 4,
                ),
                126 => break,
                127 => return None,
                n => (n as usize, at + 2),
            };
            if start + len > all.len() {
                break;
            }
            if opcode == 0x8 && len >= 2 {
                return Some(u16::from_be_bytes([all[start], all[start + 1]]));
            }
            at = start + len;
        }
    }
}

#[tokio::test]
async fn an_oversized_frame_gets_a_clean_1009_close_even_with_its_payload_in_flight() {
    let app = spawn_app().await;
    let mut tcp = raw_customer(&app).await;
    let mut frame = header(1 << 20);
    frame.extend(std::iter::repeat_n(b'x', 256 * 1024));
    // The write may fail part-way once the server closes; what matters is what we read.
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&frame)).await;
    assert_eq!(close_code(&mut tcp).await, Some(1009));
    let (_c, greeting) = app.connect_customer("").await;
    assert_eq!(greeting["seq"], 1);
}

#[tokio::test]
async fn a_frame_announcing_an_absurd_length_is_closed_with_1009() {
    let app = spawn_app().await;
    let mut tcp = raw_customer(&app).await;
    tcp.write_all(&header(u64::MAX >> 1)).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1009));
}
