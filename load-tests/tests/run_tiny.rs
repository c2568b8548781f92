//! Runs a tiny profile (a few seconds) against the real gateway, in-process on port 0, through
//! the same library entry point the `kefu-load run` command uses.

// Test scaffolding: a setup failure should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::{Application, Settings};
use load_tests::net::Target;
use load_tests::RunOptions;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A profile file in a fresh temp dir, pointing at the shipped questions.
fn tiny_profile(extra: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kefu-load-it-{}-{}",
        std::process::id(),
        extra.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let questions = workspace().join("config/load/questions.jsonl");
    let text = format!(
        r#"
name = "tiny"
questions_file = {questions:?}
drain_s = 10

[[phase]]
duration_s = 3
rate_start = 10
rate_end = 10

[customer]
mix = {{ kb = 0.8, out_of_scope = 0.2, human = 0.0, complaint = 0.0 }}
questions = [1, 2]
think = {{ dist = "uniform", min_ms = 10, max_ms = 100 }}
patience = {{ dist = "fixed", ms = 1000 }}
drop_share = 0.3
resume_after = {{ dist = "fixed", ms = 100 }}
reply_timeout_ms = 3000

[slo]
greeting_p99_ms = 5000 # the machine is shared; latency targets are for real runs
greeting_within_6s_ratio = 1.0
lost_messages = 0
duplicate_messages = 0
require = ["greeting_ms", "ack_ms"]
{extra}
"#
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_profile_against_a_real_gateway() {
    let mut settings = Settings::embedded();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.kb.path = workspace().join("config/kb");
    // No conversation store here (it needs an encryption key); the load is what is measured.
    settings.store.url = String::new();
    let app = Application::build(settings).await.expect("gateway builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let opts = RunOptions {
        profile: tiny_profile(""),
        targets: vec![Target(addr)],
        workers: Some(1),
        seed: 7,
        agent_tokens: None,
        exe: None,
        progress: false,
    };
    let report = tokio::time::timeout(Duration::from_secs(60), load_tests::run(opts))
        .await
        .expect("the run is bounded")
        .expect("the run completes");
    println!("{}", report.summary());

    assert_eq!(report.sessions, 30, "3 s at 10/s");
    assert_eq!(report.connect_failures, 0);
    assert_eq!(report.greeting_ms.count, 30);
    assert_eq!(report.greeting_within_6s_ratio, 1.0);
    assert!(report.ack_ms.count >= 30, "every question is acknowledged");
    assert!(report.counters.drops > 0 && report.counters.resumes == report.counters.drops);
    assert_eq!(report.lost_messages, 0, "{:?}", report.loss);
    assert_eq!(report.duplicate_messages, 0);
    assert!(report.peak_concurrent > 0);
    assert!(!report.timeline.is_empty());
    assert!(report.slo_pass, "{}", report.summary());

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
