//! A real `kefu-gateway` process on a fixed port, restartable with the same settings, and
//! killable with real signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{external, temp_store_url, write_roster, TestApp, TEST_KEY};

pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

/// One agent, `a01` (token `a01.secret`), group `after_sale`.
pub fn roster() -> PathBuf {
    write_roster(
        "durable",
        &[("a01", "小王", &["pre_sale", "after_sale"], 3)],
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Node {
    /// Starts node `name` with its own SQLite store and `extra` settings.
    pub async fn start(name: &str, roster: &std::path::Path, extra: &[(String, String)]) -> Node {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut env = vec![
            ("KEFU__SERVER__LISTEN".to_string(), addr.to_string()),
            ("KEFU__SERVER__NODE_ID".to_string(), name.to_string()),
            ("KEFU__STORE__URL".to_string(), temp_store_url(name)),
            ("KEFU_ENCRYPTION_KEY".to_string(), TEST_KEY.to_string()),
            (
                "KEFU__AGENTS__FILE".to_string(),
                roster.to_str().unwrap().to_string(),
            ),
            (
                "KEFU__ROUTING__AGENT_GREETING_S".to_string(),
                "600".to_string(),
            ),
            ("RUST_LOG".to_string(), "gateway=info".to_string()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        let log = std::env::temp_dir().join(format!(
            "kefu-node-{name}-{}-{port}.log",
            std::process::id()
        ));
        let mut node = Node {
            name: name.to_string(),
            addr,
            env,
            child: None,
            log,
        };
        node.spawn().await;
        node
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = Command::new(env!("CARGO_BIN_EXE_kefu-gateway"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kefu-gateway");
        self.child = Some(child);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        for _ in 0..200 {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "node {} exited ({status}); log: {}",
                        self.name,
                        self.log_text()
                    );
                }
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                let (status, _) = self.app().get("/readyz").await;
                if status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {} not ready; log: {}", self.name, self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Clients for this node.
    pub fn app(&self) -> TestApp {
        external(self.addr)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits until the process exited.
    pub async fn terminate(&mut self) {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        for _ in 0..300 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!(
            "node {} did not stop on SIGTERM; log: {}",
            self.name,
            self.log_text()
        );
    }

    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts the process again with the same settings, port and store.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
