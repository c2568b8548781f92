//! The agent half of the protocol (queue, assignment, relay both ways, resume during a chat)
//! against the in-memory mock gateway, and proof that lost and duplicated agent messages are
//! caught by the accounting.

// Test scaffolding: a setup failure should panic loudly.
#![allow(clippy::unwrap_used)]

mod support {
    pub mod mock;
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use load_tests::net::Target;
use load_tests::report::Report;
use load_tests::RunOptions;
use support::mock::{self, Faults};

fn profile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kefu-load-mock-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let questions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/load/questions.jsonl");
    let text = format!(
        r#"
name = "{name}"
questions_file = {questions:?}
drain_s = 20

[[phase]]
duration_s = 4
rate_start = 8
rate_end = 8

[customer]
mix = {{ kb = 0.3, out_of_scope = 0.0, human = 0.5, complaint = 0.2 }}
questions = [1, 1]
think = {{ dist = "uniform", min_ms = 10, max_ms = 80 }}
patience = {{ dist = "fixed", ms = 15000 }}
drop_share = 0.4
resume_after = {{ dist = "uniform", min_ms = 50, max_ms = 300 }}
survey_share = 1.0
reply_timeout_ms = 1000

[agents]
token_prefix = "t-"
reply = {{ dist = "uniform", min_ms = 30, max_ms = 150 }}
exchanges_per_chat = [2, 3]

[[agents.pool]]
count = 4
groups = ["pre_sale"]
capacity = 2

[slo]
greeting_within_6s_ratio = 1.0
relay_p99_ms = 2000 # generous: the machine is shared; this test is about accounting
lost_messages = 0
duplicate_messages = 0
agent_load_spread_max = 1
require = ["relay_ms", "queue_wait_ms", "assign_ms"]
"#
    );
    let path = dir.join("p.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn run_against_mock(name: &str, faults: Faults) -> Report {
    let addr = mock::start(faults).await;
    let opts = RunOptions {
        overrides: Vec::new(),
        profile: profile(name),
        targets: vec![Target(addr)],
        workers: Some(1),
        seed: 3,
        agent_tokens: None,
        exe: None,
        progress: false,
    };
    let r = tokio::time::timeout(Duration::from_secs(60), load_tests::run(opts))
        .await
        .expect("bounded")
        .expect("runs");
    println!("{}", r.summary());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_chat_and_nothing_is_lost_across_resumes() {
    let r = run_against_mock("clean", Faults::default()).await;
    assert_eq!(r.sessions, 32);
    assert!(r.assignments > 0 && r.queue_wait_ms.count > 0 && r.assign_ms.count > 0);
    assert!(r.relay_ms.count > 0, "agent messages reached customers");
    assert!(r.agent_first_reply_ms.count > 0);
    assert!(r.counters.resumes > 0);
    assert!(r.counters.closed_by_agent > 0 && r.counters.surveys_answered > 0);
    assert_eq!(r.loss.customer_to_agent_lost, 0, "{:?}", r.loss);
    assert_eq!(r.lost_messages, 0, "{:?}", r.loss);
    assert_eq!(r.duplicate_messages, 0);
    assert!(r.agent_load_spread_max <= 1);
    assert_eq!(r.agent_over_capacity, 0);
    assert!(r.slo_pass, "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_and_duplicated_agent_messages_fail_the_run() {
    let faults = Faults {
        lose_every: 4,
        duplicate_every: 5,
        ..Faults::default()
    };
    let r = run_against_mock("faulty", faults).await;
    assert!(r.loss.agent_to_customer_lost > 0, "{:?}", r.loss);
    assert!(r.loss.agent_to_customer_duplicated > 0, "{:?}", r.loss);
    assert!(!r.slo_pass);
    assert!(r.slo.iter().any(|c| c.name == "lost_messages" && !c.pass));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_frames_fail_over_and_resume_with_nothing_lost() {
    // Mid-run every customer is told `reconnect` and closed with 1012: each must resume its
    // session (same ids, replay after last_seq) with no loss, no duplicate, no lost session.
    let faults = Faults {
        reconnect_at_ms: 4_500,
        ..Faults::default()
    };
    let r = run_against_mock("reconnect", faults).await;
    assert!(r.counters.reconnect_frames > 0, "{:?}", r.counters);
    assert_eq!(r.counters.failover_reconnects, r.counters.reconnect_frames);
    assert!(r.failover_resume_ms.count > 0);
    assert!(
        r.failover_resume_ms.p99 < 5_000.0,
        "{:?}",
        r.failover_resume_ms
    );
    assert_eq!(r.sessions_lost, 0);
    assert_eq!(r.counters.stale_frames, 0);
    assert_eq!(r.lost_messages, 0, "{:?}", r.loss);
    assert_eq!(r.duplicate_messages, 0, "{:?}", r.loss);
    assert!(!r.errors.contains_key("disconnected"), "{:?}", r.errors);
}
