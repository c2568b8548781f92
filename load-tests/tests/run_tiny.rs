//! Runs a tiny profile (a few seconds) against the real gateway, in-process on port 0, through
//! the same library entry point the `kefu-load run` command uses.

// Test scaffolding: a setup failure should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::{Application, Settings};
use load_tests::net::Target;
use load_tests::report::Report;
use load_tests::RunOptions;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh temp dir for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kefu-load-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A profile file in a fresh temp dir, pointing at the shipped questions.
fn tiny_profile(extra: &str) -> PathBuf {
    let dir = temp_dir("tiny");
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

/// The real gateway on port 0 with `settings` adjusted by `adjust`; stop it by sending on
/// the returned channel.
async fn start_gateway(
    adjust: impl FnOnce(&mut Settings),
) -> (
    Target,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut settings = Settings::embedded();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.kb.path = workspace().join("config/kb");
    // No conversation store here (it needs an encryption key); the load is what is measured.
    settings.store.url = String::new();
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("gateway builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    (Target(addr), stop, server)
}

async fn run_profile(profile: PathBuf, target: Target, tokens: Option<Vec<String>>) -> Report {
    let opts = RunOptions {
        overrides: Vec::new(),
        profile,
        targets: vec![target],
        workers: Some(1),
        seed: 7,
        agent_tokens: tokens,
        exe: None,
        progress: false,
    };
    let report = tokio::time::timeout(Duration::from_secs(90), load_tests::run(opts))
        .await
        .expect("the run is bounded")
        .expect("the run completes");
    println!("{}", report.summary());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_profile_against_a_real_gateway() {
    let (target, stop, server) = start_gateway(|_| {}).await;
    let report = run_profile(tiny_profile(""), target, None).await;

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

/// Every customer wants a person and answers the survey; a 4 or 5 reopens the chat as a
/// complaint, which the customer then talks through with the complaint agent. Every message
/// both ways is accounted for, over the real gateway's routing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_a_real_gateway_and_reopened_complaints_lose_nothing() {
    let dir = temp_dir("agents");
    let groups = r#"["pre_sale", "after_sale", "logistics", "complaint"]"#;
    let mut roster = String::new();
    let mut tokens = Vec::new();
    for i in 1..=3 {
        let token = format!("a00{i}.load-test-{i}");
        let hash = gateway::roster::hash_token(&token).unwrap();
        roster.push_str(&format!(
            "[[agent]]\nid = \"a00{i}\"\nname = \"客服{i}\"\ngroups = {groups}\ncapacity = 3\ntoken_hash = {hash:?}\n\n"
        ));
        tokens.push(token);
    }
    let roster_path = dir.join("roster.toml");
    std::fs::write(&roster_path, roster).unwrap();
    let (target, stop, server) = start_gateway(|s| s.agents.file = roster_path).await;

    let questions = workspace().join("config/load/questions.jsonl");
    let profile = dir.join("agents.toml");
    std::fs::write(
        &profile,
        format!(
            r#"
name = "agents"
questions_file = {questions:?}
drain_s = 25

[[phase]]
duration_s = 6
rate_start = 4
rate_end = 4

[customer]
mix = {{ kb = 0.0, out_of_scope = 0.0, human = 0.6, complaint = 0.4 }}
questions = [1, 1]
think = {{ dist = "uniform", min_ms = 20, max_ms = 120 }}
patience = {{ dist = "fixed", ms = 20000 }}
drop_share = 0.3
resume_after = {{ dist = "uniform", min_ms = 50, max_ms = 300 }}
survey_share = 1.0
reply_timeout_ms = 2000

[agents]
reply = {{ dist = "uniform", min_ms = 30, max_ms = 150 }}
exchanges_per_chat = [1, 2]

[[agents.pool]]
count = 3
groups = {groups}
capacity = 3

[slo]
lost_messages = 0
duplicate_messages = 0
require = ["relay_ms", "assign_ms"]
"#
        ),
    )
    .unwrap();
    let r = run_profile(profile, target, Some(tokens)).await;

    assert_eq!(r.sessions, 24);
    assert_eq!(r.errors.get("agent_connect_failed"), None, "{:?}", r.errors);
    assert!(r.counters.agent_joined >= 24, "{:?}", r.counters);
    // Every chat the agent closed is followed by a survey, and every survey is answered.
    assert!(
        r.counters.surveys_answered >= r.counters.closed_by_agent.min(24),
        "{:?}",
        r.counters
    );
    assert!(
        r.counters.reopened_as_complaint > 0,
        "some surveys reopen the chat: {:?}",
        r.counters
    );
    assert!(r.relay_ms.count > 0 && r.assign_ms.count > 0);
    assert_eq!(r.lost_messages, 0, "{:?} {:?}", r.loss, r.lost_examples);
    assert_eq!(r.duplicate_messages, 0, "{:?}", r.loss);
    assert_eq!(r.agent_over_capacity, 0);
    assert!(r.slo_pass, "{}", r.summary());

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}

/// Issue #17: a share of customers are identified returning customers; the report counts how
/// many came back to a person and how many of them reached the agent of their last chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_customers_are_counted_with_their_last_agent() {
    let dir = temp_dir("returning");
    let mut roster = String::new();
    let mut tokens = Vec::new();
    for i in 1..=2 {
        let token = format!("r00{i}.load-test-{i}");
        let hash = gateway::roster::hash_token(&token).unwrap();
        roster.push_str(&format!(
            "[[agent]]\nid = \"r00{i}\"\nname = \"客服{i}\"\ngroups = [\"pre_sale\", \"after_sale\", \"logistics\", \"complaint\"]\ncapacity = 4\ntoken_hash = {hash:?}\n\n"
        ));
        tokens.push(token);
    }
    let roster_path = dir.join("roster.toml");
    std::fs::write(&roster_path, roster).unwrap();
    let store = format!("sqlite://{}/store.db", dir.display());
    let (target, stop, server) = start_gateway(|s| {
        s.agents.file = roster_path;
        s.store.url = store;
        s.store.key = gateway::store::KeySource {
            env_key: Some(gateway::config::Secret::new(
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )),
            env_key_id: None,
        };
        s.identity.secret = Some(gateway::config::Secret::new(
            load_tests::profile::DEFAULT_IDENTITY_SECRET,
        ));
    })
    .await;
    let questions = workspace().join("config/load/questions.jsonl");
    let profile = dir.join("returning.toml");
    std::fs::write(
        &profile,
        format!(
            r#"
name = "returning"
questions_file = {questions:?}
drain_s = 20

[[phase]]
duration_s = 6
rate_start = 1.5
rate_end = 1.5

[customer]
mix = {{ kb = 0.0, out_of_scope = 0.0, human = 1.0, complaint = 0.0 }}
questions = [1, 1]
think = {{ dist = "uniform", min_ms = 20, max_ms = 100 }}
patience = {{ dist = "fixed", ms = 15000 }}
reply_timeout_ms = 2000
returning_share = 1.0
returning_pool = 2

[agents]
reply = {{ dist = "uniform", min_ms = 30, max_ms = 100 }}
exchanges_per_chat = [1, 1]

[[agents.pool]]
count = 2
groups = ["pre_sale", "after_sale", "logistics", "complaint"]
capacity = 4
"#
        ),
    )
    .unwrap();
    let r = run_profile(profile, target, Some(tokens)).await;
    assert!(r.counters.agent_joined >= 6, "{:?}", r.counters);
    assert!(r.counters.returning_served >= 4, "{:?}", r.counters);
    assert!(r.counters.reached_last_agent > 0, "{:?}", r.counters);
    assert!(
        r.summary().contains("reached their last agent"),
        "{}",
        r.summary()
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
