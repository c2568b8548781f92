//! The same crash on a real 3-master Redis Cluster started here: sessions' logs spread over
//! the shards by their hash tags, routing keys on one.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::crash::{customer_node_killed, redis_env};
use crate::support::redis_server::unique_prefix;

struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    _dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    // Cluster bus ports are port + 10000: keep below 55535.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if port < 55_000 {
            return port;
        }
    }
}

async fn start_cluster() -> Cluster {
    let dir = std::env::temp_dir().join(format!(
        "kefu-cluster-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for port in &ports {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--dir",
                dir.to_str().unwrap(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        nodes.push(child);
    }
    let cluster = Cluster {
        nodes,
        ports: ports.clone(),
        _dir: dir,
    };
    for port in &ports {
        wait_ping(*port).await;
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let status = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success(), "redis-cli --cluster create");
    for _ in 0..100 {
        let info = Command::new("redis-cli")
            .args(["-p", &ports[0].to_string(), "cluster", "info"])
            .output()
            .expect("redis-cli");
        if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
            return cluster;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cluster did not become ok");
}

async fn wait_ping(port: u16) {
    for _ in 0..100 {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on {port} did not answer");
}

#[tokio::test]
async fn on_a_redis_cluster_the_customer_resumes_on_another_node_after_a_kill() {
    let cluster = start_cluster().await;
    let url = cluster
        .ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    customer_node_killed(redis_env(&url, &unique_prefix("cluster"))).await;
    // The session logs went to more than one shard is not asserted for one session; that
    // the whole chat survived on a Cluster is.
    drop(cluster);
}
