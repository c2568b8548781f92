//! A real Redis for integration tests.
//!
//! ```ignore
//! mod support;
//! let redis = support::redis_server::RedisServer::start();
//! let url = redis.url();                       // redis://127.0.0.1:<port>/
//! let prefix = support::redis_server::unique_prefix("dispatch"); // isolate keys per test
//! ```
//!
//! If `REDIS_URL` is set, that server is used and nothing is started (tests must then isolate by
//! [`unique_prefix`]). Otherwise `redis-server` from `PATH` is started on a free port, without
//! persistence, and killed when the [`RedisServer`] is dropped. Without either, `start` panics: a
//! Redis test must fail, not silently skip, when there is no Redis.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A Redis server for the duration of a test (the child process dies with this value).
pub struct RedisServer {
    url: String,
    child: Option<Child>,
}

impl RedisServer {
    /// `REDIS_URL` if set, else a fresh `redis-server` on a free port. Panics if neither works.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("REDIS_URL") {
            if !url.trim().is_empty() {
                return Self { url, child: None };
            }
        }
        let mut last_error = String::new();
        // The free port is found by binding and releasing it; another process may grab it in
        // between, so retry a few times.
        for _ in 0..5 {
            match Self::spawn() {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server for the test: {last_error}");
    }

    /// `redis://127.0.0.1:<port>/` (or `REDIS_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this value started (and will stop) its own server.
    pub fn is_owned(&self) -> bool {
        self.child.is_some()
    }

    fn spawn() -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "redis-server is not on PATH and REDIS_URL is not set: install Redis \
                         (apt-get install redis-server, or `scripts/test` does it) or point \
                         REDIS_URL at a test server; Redis tests fail rather than skip"
                    )
                }
                format!("spawning redis-server: {e}")
            })?;
        let mut server = Self {
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(child),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if ping(addr) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server on port {port} did not answer PING"))
        // `server` is dropped here, killing the child.
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A key prefix no other test (in this or a concurrent run) uses: `t-<label>-<pid>-<n>-<nanos>`.
pub fn unique_prefix(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t-{label}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
