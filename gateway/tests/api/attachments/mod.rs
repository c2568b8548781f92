//! Issue #18 over real sockets and real HTTP: photos and files both ways, what is refused and
//! with which status, signed links, data at rest, cards and quick replies.

mod at_rest;
mod cards;
mod flow;
mod load;
mod refused;

use std::io::Cursor;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, temp_store_url, write_roster, Client, TestApp};

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One HTTP/1.0 request with a body (written even if the server answers early).
pub async fn http(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await; // refused early: the server may stop reading
    read_answer(stream).await
}

/// A request whose body is sent in chunks without a length (the size is only known by
/// counting).
pub async fn http_chunked(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(64 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    read_answer(stream).await
}

async fn read_answer(mut stream: TcpStream) -> Answer {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(150), stream.read_to_end(&mut raw)).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw.get(split + 4..).unwrap_or_default().to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer { status, head, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
    out
}

/// The customer's upload to its own session.
pub async fn customer_upload(
    app: &TestApp,
    greeting: &Value,
    name: &str,
    mime: &str,
    body: &[u8],
) -> Answer {
    let session = greeting["session_id"].as_str().unwrap();
    let token = greeting["resume_token"].as_str().unwrap();
    let path = format!("/upload?session={session}&name={name}");
    http(
        app,
        "POST",
        &path,
        &[("X-Kefu-Resume-Token", token), ("Content-Type", mime)],
        body,
    )
    .await
}

pub async fn agent_upload(app: &TestApp, token: &str, session: &str, body: &[u8]) -> Answer {
    let path = format!("/upload?session={session}&name=reply.png");
    let auth = format!("Bearer {token}");
    http(
        app,
        "POST",
        &path,
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        body,
    )
    .await
}

pub async fn get(app: &TestApp, path: &str) -> Answer {
    http(app, "GET", path, &[], b"").await
}

/// Noise, so no two runs of bytes repeat and compression cannot hide them.
fn noise(w: u32, h: u32, seed: u32) -> image::RgbImage {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    })
}

pub fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(noise(w, h, seed))
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// The marker written into the photo's GPS data; it must not come back out.
pub const GPS_MARKER: &[u8] = b"HOME 39.9042N 116.4074E";

/// A JPEG whose APP1 segment holds EXIF with a GPS IFD (latitude ref and an area text).
pub fn jpeg_with_gps(w: u32, h: u32) -> Vec<u8> {
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&noise(w, h, 7))
        .unwrap();
    let mut tiff: Vec<u8> = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    // IFD0: one entry, the GPS IFD pointer (0x8825, LONG) to offset 26.
    tiff.extend_from_slice(&[0, 1, 0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0]);
    // GPS IFD: GPSLatitudeRef "N", GPSAreaInformation (UNDEFINED) at offset 56.
    let n = GPS_MARKER.len() as u32;
    tiff.extend_from_slice(&[0, 2, 0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&[0, 0x1b, 0, 7]);
    tiff.extend_from_slice(&n.to_be_bytes());
    tiff.extend_from_slice(&56u32.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(tiff.len(), 56);
    tiff.extend_from_slice(GPS_MARKER);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    [&plain[..2], &app1, &plain[2..]].concat()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Only the start of a PNG that claims `w`×`h` pixels (a decompression bomb's header).
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    out.extend_from_slice(&[0u8; 64]);
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub const GREETING_OFF: (&str, &str) = ("KEFU__ROUTING__AGENT_GREETING_S", "600");

/// A gateway with agent `a01` (pre-sale and after-sale) and its store URL.
pub async fn app_with_agent(name: &str, extra: &[(&str, &str)]) -> (TestApp, String) {
    let roster = write_roster(name, &[("a01", "小王", &["pre_sale", "after_sale"], 3)]);
    let roster = roster.to_str().unwrap().to_string();
    let url = temp_store_url(name);
    let mut env = vec![
        ("KEFU__AGENTS__FILE", roster.as_str()),
        ("KEFU__STORE__URL", url.as_str()),
        GREETING_OFF,
    ];
    env.extend_from_slice(extra);
    (spawn_app_with(&env).await, url)
}

/// The agent ready, then a customer handed to it: (customer, greeting, agent, session, history).
pub async fn chat(
    app: &TestApp,
    before: impl AsyncFnOnce(&mut Client, &Value),
) -> (Client, Value, Client, String, Value) {
    let mut agent = app.connect_agent("a01.secret").await;
    agent.send(json!({"type":"ready"})).await;
    let (mut c, greeting) = app.connect_customer("").await;
    before(&mut c, &greeting).await;
    c.send(json!({"type":"request_human"})).await;
    c.recv_type("agent_joined").await;
    let assigned = agent.recv_type("assigned").await;
    let session = assigned["session"].as_str().unwrap().to_string();
    (c, greeting, agent, session, assigned["history"].clone())
}
