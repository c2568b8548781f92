//! `kefu-load relay` with tiny numbers against the real gateway, in-process on port 0 (as
//! `run_tiny.rs` does), through the same library entry point the command uses.

// Test scaffolding: a setup failure should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::{Application, Settings};
use load_tests::net::Target;
use load_tests::relay::{self, RelayOptions};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_delivers_everything_it_had_acknowledged() {
    let dir = std::env::temp_dir().join(format!("kefu-load-it-{}-relay", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let groups = r#"["pre_sale", "after_sale", "logistics", "complaint"]"#;
    let mut roster = String::new();
    let mut tokens = Vec::new();
    for i in 1..=5 {
        let token = format!("a00{i}.relay-test-{i}");
        let hash = gateway::roster::hash_token(&token).unwrap();
        roster.push_str(&format!(
            "[[agent]]\nid = \"a00{i}\"\nname = \"客服{i}\"\ngroups = {groups}\ncapacity = 10\ntoken_hash = {hash:?}\n\n"
        ));
        tokens.push(token);
    }
    let roster_path = dir.join("roster.toml");
    std::fs::write(&roster_path, roster).unwrap();

    let mut settings = Settings::embedded();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.kb.path = workspace().join("config/kb");
    settings.store.url = String::new();
    settings.agents.file = roster_path;
    settings.limits.outbound_queue = 1024;
    let app = Application::build(settings).await.expect("gateway builds");
    let target = Target(app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });

    let opts = RelayOptions {
        target,
        tokens,
        customers: 50,
        duration: Duration::from_secs(3),
        window: 4,
        // In-process: the CPU figure is this test process's (gateway and load together).
        pid: Some(std::process::id()),
        assign_timeout: Duration::from_secs(20),
        drain: Duration::from_secs(5),
        connect_rate: 200,
        notes: Vec::new(),
        progress: false,
    };
    let report = tokio::time::timeout(Duration::from_secs(60), relay::relay(opts))
        .await
        .expect("the relay run is bounded")
        .expect("the relay run completes");
    print!("{}", report.summary());
    let r = &report.relay_throughput;
    assert_eq!(r.assigned, 50, "{r:?}");
    assert!(r.delivered > 0, "{r:?}");
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.duplicated, 0, "{r:?}");
    assert_eq!(r.connect_failures, 0, "{r:?}");
    assert!(r.latency_ms.count > 0 && r.latency_ms.p99 >= r.latency_ms.p50);
    assert!(r.gateway_cpu_s > 0.0 && r.per_core_second > 0.0, "{r:?}");

    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let t = &json["relay_throughput"];
    for key in [
        "customers",
        "agents",
        "assigned",
        "duration_s",
        "delivered",
        "per_second",
        "per_core_second",
        "gateway_cpu_s",
        "lost",
        "duplicated",
    ] {
        assert!(t.get(key).is_some(), "report lacks {key}: {t}");
    }
    for key in ["p50", "p99", "max"] {
        assert!(t["latency_ms"].get(key).is_some(), "latency_ms lacks {key}");
    }

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
