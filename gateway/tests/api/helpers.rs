//! `spawn_app()` and typed clients: the real gateway on port 0, real WebSocket clients.
#![allow(dead_code)] // helpers serve several test modules; not every module uses every one

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway::{Application, Settings};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// The encryption key test gateways get unless a test sets its own (base64 of bytes 0..32).
pub const TEST_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A fresh SQLite store URL in a temp directory (the file does not exist yet).
pub fn temp_store_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "kefu-store-{name}-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    format!("sqlite://{}/kefu.db", dir.display())
}

pub struct TestApp {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<std::io::Result<()>>,
}

/// A roster file of test agents; agent `ID` signs in with the token `ID.secret`.
pub fn write_roster(name: &str, agents: &[(&str, &str, &[&str], u32)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (id, agent_name, groups, capacity) in agents {
        let hash = gateway::roster::hash_token(&format!("{id}.secret")).expect("hash");
        let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        text.push_str(&format!(
            "[[agent]]\nid = {id:?}\nname = {agent_name:?}\ngroups = [{}]\ncapacity = {capacity}\ntoken_hash = {hash:?}\n",
            groups.join(", ")
        ));
    }
    let path = std::env::temp_dir().join(format!(
        "kefu-roster-{name}-{}-{}.toml",
        std::process::id(),
        uuid_like()
    ));
    std::fs::write(&path, text).expect("write roster");
    path
}

/// An operators roster; operator `ID` signs in with `ID.secret`, and is enrolled for two-step
/// sign-in when a sealed `totp` value is given.
pub fn write_operators(ops: &[(&str, &str, Option<&str>)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (id, role, sealed) in ops {
        let hash = gateway::roster::hash_token(&format!("{id}.secret")).expect("hash");
        let totp = sealed
            .map(|s| format!("totp = {s:?}\n"))
            .unwrap_or_default();
        text.push_str(&format!(
            "[[operator]]\nid = {id:?}\nname = \"op {id}\"\nrole = {role:?}\ntoken_hash = {hash:?}\n{totp}"
        ));
    }
    let path = std::env::temp_dir().join(format!(
        "kefu-operators-{}-{}.toml",
        std::process::id(),
        uuid_like()
    ));
    std::fs::write(&path, text).expect("write operators");
    path
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Starts the gateway on port 0 with the embedded defaults plus `env` overrides
/// (`KEFU__…` keys, as an operator would set them).
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        static LOGS: std::sync::Once = std::sync::Once::new();
        // The writer thread lives as long as the test process.
        LOGS.call_once(|| {
            std::mem::forget(gateway::telemetry::init_logs(
                gateway::telemetry::LogFormat::Text,
            ))
        });
    }
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("KEFU__SERVER__LISTEN".into(), "127.0.0.1:0".into());
    // Every test gateway keeps its conversations in its own temp SQLite store, with a test key.
    env.entry("KEFU__STORE__URL".into())
        .or_insert_with(|| temp_store_url("api"));
    if !env.contains_key("KEFU__STORE__KEY_FILE") {
        env.entry("KEFU_ENCRYPTION_KEY".into())
            .or_insert_with(|| TEST_KEY.into());
    }
    let settings = Settings::load(None, &env).expect("test settings are valid");
    let app = Application::build(settings).await.expect("gateway binds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        stop: Some(stop),
        handle,
    }
}

/// Clients for a gateway running elsewhere (the real binary in a child process).
pub fn external(addr: SocketAddr) -> TestApp {
    TestApp {
        addr,
        stop: None,
        handle: tokio::spawn(async { Ok(()) }),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

impl TestApp {
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// A new customer; returns the client and its greeting.
    pub async fn connect_customer(&self, query: &str) -> (Client, Value) {
        let mut client = self
            .try_connect(&format!("/ws/customer?{query}"))
            .await
            .expect("upgrade accepted");
        let greeting = client.recv().await;
        assert_eq!(greeting["type"], "greeting", "{greeting}");
        (client, greeting)
    }

    /// An agent signed in with `token` (its `welcome` frame already read).
    pub async fn connect_agent(&self, token: &str) -> Client {
        let mut agent = self.try_connect_agent(token).await.expect("agent accepted");
        let welcome = agent.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        agent
    }

    pub async fn try_connect_agent(
        &self,
        token: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        self.try_connect_agent_at("/ws/agent", token).await
    }

    /// An agent socket at `path_and_query` (e.g. with `?last_seq=N`), signed in with `token`.
    pub async fn try_connect_agent_at(
        &self,
        path_and_query: &str,
        token: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.ws_url(path_and_query).into_client_request()?;
        let value = format!("Bearer {token}").parse().expect("header value");
        request.headers_mut().insert("authorization", value);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws, last_seq: 0 })
    }

    pub async fn try_connect(
        &self,
        path_and_query: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(path_and_query)).await?;
        Ok(Client { ws, last_seq: 0 })
    }

    /// A plain HTTP GET; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        self.http(request).await
    }

    /// A plain HTTP POST with an optional bearer token; returns status and body.
    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        self.http(request).await
    }

    /// One HTTP/1.0 call (no chunking) with extra header lines (each ending in `\r\n`);
    /// returns status and body.
    pub async fn request(&self, method: &str, path: &str, headers: &str) -> (u16, String) {
        let request =
            format!("{method} {path} HTTP/1.0\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n");
        self.http(request).await
    }

    /// A WebSocket at `path_and_query` with an optional bearer token and a user agent.
    pub async fn socket(
        &self,
        path_and_query: &str,
        token: Option<&str>,
        user_agent: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.ws_url(path_and_query).into_client_request()?;
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("header value");
            request.headers_mut().insert("authorization", value);
        }
        let agent = user_agent.parse().expect("header value");
        request.headers_mut().insert("user-agent", agent);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws, last_seq: 0 })
    }

    async fn http(&self, request: String) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
            .await
            .expect("response in time")
            .expect("read");
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    /// Triggers a graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.handle)
            .await
            .expect("stops in time")
            .expect("task joins")
    }

    pub fn trigger_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The query that resumes the session of `greeting` after `last_seq` (id and resume token).
pub fn resume_query(greeting: &Value, last_seq: u64) -> String {
    format!(
        "/ws/customer?session={}&last_seq={last_seq}&resume_token={}",
        greeting["session_id"].as_str().expect("session_id"),
        greeting["resume_token"].as_str().expect("resume_token")
    )
}

/// A WebSocket client that speaks JSON frames and tracks the highest `seq` seen.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub last_seq: u64,
}

/// What the next read produced.
#[derive(Debug)]
pub enum Event {
    Frame(Value),
    Closed(Option<CloseCode>),
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    pub async fn say(&mut self, id: &str, text: &str) {
        self.send(json!({"type":"message","id":id,"text":text}))
            .await;
    }

    /// The next JSON frame; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Event::Frame(v) => v,
            Event::Closed(code) => panic!("socket closed ({code:?}) while waiting for a frame"),
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    pub async fn next_event(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    if let Some(seq) = value["seq"].as_u64() {
                        // `reconnect` carries the last seq sent, not a number of its own.
                        if seq > 0 && value["type"] != "reconnect" {
                            assert_eq!(
                                seq,
                                self.last_seq + 1,
                                "frames arrive in seq order: {value}"
                            );
                            self.last_seq = seq;
                        }
                    }
                    return Event::Frame(value);
                }
                Some(Ok(Message::Close(frame))) => return Event::Closed(frame.map(|f| f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    /// Every frame that arrives until nothing has come for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(quiet, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    // seq 0: unnumbered (typing, notices before a greeting), not replayed.
                    if let Some(seq) = value["seq"].as_u64().filter(|s| *s > 0) {
                        assert_eq!(
                            seq,
                            self.last_seq + 1,
                            "frames arrive in seq order: {value}"
                        );
                        self.last_seq = seq;
                    }
                    frames.push(value);
                }
                Ok(Some(Ok(_))) => continue,
                _ => return frames,
            }
        }
    }

    /// Asserts nothing arrives for `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(quiet, self.ws.next()).await
        {
            panic!("unexpected frame: {text}");
        }
    }
}
