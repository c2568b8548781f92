//! Targets, connections and frames.
//!
//! Only loopback targets are accepted: the tool opens tens of thousands of sockets and must never
//! be pointed at somebody else's server. Connections bind a chosen loopback source address before
//! connecting, because one source address has only ~28,000 ephemeral ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// A gateway node: `ws://HOST:PORT` with a loopback HOST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(pub SocketAddr);

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ws://{}", self.0)
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let rest = s
            .strip_prefix("ws://")
            .ok_or_else(|| format!("target `{s}` must look like ws://127.0.0.1:8080"))?;
        let hostport = rest.split('/').next().unwrap_or_default();
        let addr: SocketAddr = match hostport.strip_prefix("localhost:") {
            Some(port) => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port.parse()
                    .map_err(|_| format!("target `{s}`: bad port `{port}`"))?,
            ),
            None => hostport
                .parse()
                .map_err(|_| format!("target `{s}`: expected an IP address and port"))?,
        };
        if !addr.ip().is_loopback() {
            return Err(format!(
                "target `{s}` is not a loopback address: kefu-load only runs against 127.0.0.0/8 or ::1"
            ));
        }
        if addr.port() == 0 {
            return Err(format!("target `{s}`: port 0 is not a port to connect to"));
        }
        Ok(Target(addr))
    }
}

/// Loopback source address number `i` (127.0.0.2, 127.0.0.3, …), for worker `i`.
pub fn source_addr(i: u32) -> IpAddr {
    let n = i + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, (n / 254) as u8, (n % 254) as u8 + 1))
}

/// Small buffers: a simulated customer reads a few hundred bytes a minute, and 15,000 of them
/// share one process. The default 128 KiB read buffer would need 2 GB.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// For the few busy sockets of a throughput run: frames fed in a batch go out in one write.
fn ws_config_buffered() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(4 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Why a connection failed, kept short because it is counted by kind.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tcp: {0}")]
    Tcp(std::io::Error),
    #[error("websocket handshake: {0}")]
    Handshake(String),
    #[error("timed out")]
    Timeout,
}

/// Connects to `path_and_query` on `target`, from `source` when given (IPv4 targets only).
pub async fn connect(
    target: Target,
    source: Option<IpAddr>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Ws, ConnectError> {
    connect_with(target, source, path_and_query, timeout, ws_config()).await
}

/// [`connect`] with large buffers, for a socket that sends thousands of frames a second.
pub async fn connect_buffered(
    target: Target,
    source: Option<IpAddr>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Ws, ConnectError> {
    connect_with(
        target,
        source,
        path_and_query,
        timeout,
        ws_config_buffered(),
    )
    .await
}

async fn connect_with(
    target: Target,
    source: Option<IpAddr>,
    path_and_query: &str,
    timeout: Duration,
    config: WebSocketConfig,
) -> Result<Ws, ConnectError> {
    let fut = async {
        let socket = match target.0 {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(ConnectError::Tcp)?;
        if let (Some(src), SocketAddr::V4(_)) = (source, target.0) {
            socket
                .bind(SocketAddr::new(src, 0))
                .map_err(ConnectError::Tcp)?;
        }
        let stream = socket.connect(target.0).await.map_err(ConnectError::Tcp)?;
        let _ = stream.set_nodelay(true);
        let url = format!("ws://{}{}", target.0, path_and_query);
        let request = url
            .into_client_request()
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        let (ws, _resp) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        Ok(ws)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

/// Any server frame, customer or agent side; fields a frame type lacks are `None`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Frame {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: Option<u64>,
    pub id: Option<String>,
    pub reply_to: Option<String>,
    pub session_id: Option<String>,
    /// The greeting's secret, required (with `session_id`) to resume.
    pub resume_token: Option<String>,
    pub session: Option<String>,
    pub code: Option<String>,
    #[serde(default)]
    pub duplicate: bool,
    pub position: Option<u64>,
    pub group: Option<String>,
    pub reason: Option<String>,
    pub from: Option<String>,
    /// `agent_joined`: the agent's name.
    pub name: Option<String>,
    /// A `message` the gateway wrote in the agent's name (the 6-second agent greeting).
    #[serde(default)]
    pub auto: bool,
    /// An agent's `assigned` sent again after a reconnect to a node that rebuilt the agent:
    /// the chat is not new and `history` is its full state.
    #[serde(default)]
    pub resumed: bool,
    /// An agent's `assigned`: what was said so far.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// One line of an `assigned` frame's history (the text is not needed).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryEntry {
    /// `customer`, `bot`, `agent` or `system`.
    pub from: String,
    pub id: Option<String>,
}

/// What came off the socket.
pub enum Incoming {
    Frame(Box<Frame>),
    /// A text frame that is not a protocol frame (counted as `bad_frame`).
    Garbage,
    /// The socket closed or failed.
    Closed,
}

pub async fn recv(ws: &mut Ws) -> Incoming {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return match serde_json::from_str::<Frame>(t.as_str()) {
                    Ok(f) => Incoming::Frame(Box::new(f)),
                    Err(_) => Incoming::Garbage,
                };
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Incoming::Closed,
            Some(Ok(_)) => continue, // ping/pong/binary: tungstenite answers pings itself
        }
    }
}

pub async fn send(ws: &mut Ws, v: &serde_json::Value) -> bool {
    ws.send(Message::Text(v.to_string().into())).await.is_ok()
}

/// Percent-encodes a query value (ids are ASCII, but be safe).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal `GET` over HTTP/1.0 (no chunked bodies) for `/healthz` and `/metrics`: status and body (at most 8 MiB).
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s).take(8 << 20).read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or_default()
            .to_owned();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "http timeout"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_loopback() {
        assert_eq!(
            "ws://127.0.0.1:8080".parse::<Target>().unwrap().0.port(),
            8080
        );
        assert!("ws://127.3.0.1:9/ws".parse::<Target>().is_ok());
        assert!("ws://[::1]:9000".parse::<Target>().is_ok());
        assert!("ws://localhost:9000".parse::<Target>().is_ok());
        let e = "ws://10.0.0.5:8080".parse::<Target>().unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
        assert!("http://127.0.0.1:80".parse::<Target>().is_err());
        assert!("ws://example.com:80".parse::<Target>().is_err());
        assert!("ws://127.0.0.1:0".parse::<Target>().is_err());
    }

    #[test]
    fn source_addresses_skip_network_and_broadcast_numbers() {
        assert_eq!(source_addr(0).to_string(), "127.0.0.2");
        assert_eq!(source_addr(1).to_string(), "127.0.0.3");
        assert_eq!(source_addr(252).to_string(), "127.0.0.254");
        assert_eq!(source_addr(253).to_string(), "127.0.1.1");
    }
}
