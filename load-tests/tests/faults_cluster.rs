//! Faults on real processes: two gateway nodes and redis-server started by the same
//! [`Cluster`] code `kefu-load run --spawn 2` uses, then the fault code path kills a node
//! (SIGKILL), restarts the other (SIGTERM) and restarts Redis. Each must come back: the nodes
//! answer `/healthz` again on their ports, and Redis still has a key written before its
//! restart (append-only file). Message durability is the gateway's part and is not judged here.
//!
//! Needs the `kefu-gateway` binary next to this test's (`cargo test --workspace` builds it;
//! else `cargo build -p gateway`), or `KEFU_GATEWAY_BIN`, and `redis-server`/`redis-cli`.

// Test scaffolding: a setup failure should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use load_tests::faults::{self, FaultPlan};
use load_tests::net;
use load_tests::profile::Profile;
use load_tests::spawn::Cluster;
use tokio::process::Command;
use tokio::time::Instant;

/// The gateway binary of the same build as this test (target/<profile>/kefu-gateway).
fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEFU_GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("kefu-gateway");
    assert!(
        bin.is_file(),
        "{} not found: build it with `cargo build -p gateway` (or set KEFU_GATEWAY_BIN)",
        bin.display()
    );
    bin
}

fn profile() -> Profile {
    Profile::parse(
        r#"
        name = "faults-it"
        questions_file = "unused.jsonl"
        [[phase]]
        duration_s = 1
        rate_start = 1
        rate_end = 1
        [customer]
        mix = { kb = 1.0, out_of_scope = 0.0, human = 0.0, complaint = 0.0 }
        questions = [1, 1]
        think = { dist = "fixed", ms = 1 }
        patience = { dist = "fixed", ms = 1 }
        [[agents.pool]]
        count = 1
        groups = ["pre_sale"]
        capacity = 1
        "#,
    )
    .unwrap()
}

async fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .await
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn healthy(cluster: &Cluster, i: usize) -> bool {
    matches!(
        net::http_get(cluster.targets[i].0, "/healthz", Duration::from_secs(2)).await,
        Ok((200, _))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_restarted_node_and_redis_come_back() {
    let mut cluster = Cluster::start(2, &profile(), &gateway_bin())
        .await
        .expect("two nodes and redis start");
    let port = cluster.redis_port().expect("redis runs with two nodes");
    assert_eq!(redis_cli(port, &["SET", "kefu-it:aof", "kept"]).await, "OK");
    let pids_before = cluster.pids.clone();

    let list: Vec<String> = ["kill:2@0s", "restart:1@0s", "redis-restart@0s"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let plan = FaultPlan::parse(&list, Duration::from_millis(500)).unwrap();
    plan.check(cluster.node_count() as u32, cluster.has_redis())
        .unwrap();
    let log = faults::Log::default();
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(120),
        faults::execute(&mut cluster, &plan, started, &log),
    )
    .await
    .expect("the faults finish");

    let records = log.lock().unwrap().clone();
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        assert!(r.error.is_none(), "{r:?}");
        let (done, back) = (r.done_at_s.unwrap(), r.back_at_s.unwrap());
        assert!(done <= back, "{r:?}");
    }
    let kill = &records[0];
    assert_eq!((kill.kind.as_str(), kill.node), ("kill", Some(2)));
    // Down for restart_after before it was started again.
    assert!(
        kill.back_at_s.unwrap() - kill.done_at_s.unwrap() >= 0.5,
        "{kill:?}"
    );
    assert_eq!(
        (records[1].kind.as_str(), records[1].node),
        ("restart", Some(1))
    );
    assert_eq!(records[2].kind, "redis-restart");

    // Same ports, new processes, answering again.
    for (i, before) in pids_before.iter().enumerate() {
        assert_ne!(cluster.pids[i], *before, "node {} has a new pid", i + 1);
        assert!(
            healthy(&cluster, i).await,
            "node {} answers /healthz",
            i + 1
        );
    }
    // Redis kept what it acknowledged before `shutdown`.
    assert_eq!(redis_cli(port, &["GET", "kefu-it:aof"]).await, "kept");
    assert_eq!(
        redis_cli(port, &["CONFIG", "GET", "appendonly"]).await,
        "appendonly\nyes"
    );
    cluster.stop().await;
}
