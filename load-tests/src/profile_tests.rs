//! Profile parsing: good profiles load, bad ones name the key that is wrong.

use super::*;

const GOOD: &str = r#"
name = "t"
questions_file = "q.jsonl"
[[phase]]
duration_s = 10
rate_start = 1
rate_end = 5
[customer]
mix = { kb = 0.5, out_of_scope = 0.2, human = 0.2, complaint = 0.1 }
questions = [1, 3]
think = { dist = "uniform", min_ms = 100, max_ms = 200 }
patience = { dist = "exp", mean_ms = 1000, max_ms = 5000 }
[agents]
token_prefix = "tok-"
[[agents.pool]]
count = 2
groups = ["pre_sale"]
capacity = 3
[slo]
greeting_p99_ms = 100
require = ["greeting_ms"]
"#;

fn err(text: &str) -> String {
    Profile::parse(text).unwrap_err().to_string()
}

#[test]
fn good_profile_parses_with_defaults() {
    let p = Profile::parse(GOOD).unwrap();
    assert_eq!(p.duration_s(), 10.0);
    assert_eq!(p.agents.total(), 2);
    assert_eq!(p.workers, 1);
    assert_eq!(p.drain_s, 30);
    assert_eq!(p.customer.linger, Dist::Fixed { ms: 0 });
    assert_eq!(p.slo.greeting_p99_ms, Some(100.0));
    assert_eq!(p.slo.lost_messages, None);
}

#[test]
fn shipped_profiles_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/load");
    for name in [
        "smoke.toml",
        "sale-day.toml",
        "one-node.toml",
        "failover.toml",
    ] {
        let p = Profile::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        Questions::load(&p.questions_file).unwrap();
    }
    let smoke = Profile::load(&dir.join("smoke.toml")).unwrap();
    assert!(
        smoke.duration_s() + smoke.drain_s as f64 <= 60.0,
        "smoke must stay under 60 s"
    );
    let sale = Profile::load(&dir.join("sale-day.toml")).unwrap();
    assert_eq!(sale.agents.total(), 200);
}

#[test]
fn unknown_key_is_named() {
    let e = err(&GOOD.replace("questions = [1, 3]", "questions = [1, 3]\nqestions = 2"));
    assert!(e.contains("qestions"), "{e}");
}

#[test]
fn mix_must_add_up_to_one() {
    let e = err(&GOOD.replace("complaint = 0.1", "complaint = 0.3"));
    assert!(
        e.contains("customer.mix") && e.contains("add up to 1"),
        "{e}"
    );
}

#[test]
fn bad_phase_values_name_the_phase() {
    let e = err(&GOOD.replace("duration_s = 10", "duration_s = 0"));
    assert!(e.contains("phase[0].duration_s"), "{e}");
    let e = err(&GOOD.replace("rate_end = 5", "rate_end = -5"));
    assert!(e.contains("phase[0].rate_end"), "{e}");
    let e = err(&GOOD.replace(
        "[[phase]]\nduration_s = 10\nrate_start = 1\nrate_end = 5\n",
        "",
    ));
    assert!(e.contains("phase"), "{e}");
}

#[test]
fn bad_distribution_is_named() {
    let e = err(&GOOD.replace("min_ms = 100, max_ms = 200", "min_ms = 300, max_ms = 200"));
    assert!(e.contains("customer.think") && e.contains("min_ms"), "{e}");
    let e = err(&GOOD.replace(r#"dist = "uniform""#, r#"dist = "gaussian""#));
    assert!(e.contains("gaussian"), "{e}");
}

#[test]
fn wrong_type_reports_the_key() {
    let e = err(&GOOD.replace("capacity = 3", r#"capacity = "three""#));
    assert!(e.contains("capacity"), "{e}");
}

#[test]
fn unknown_required_metric_lists_known_ones() {
    let e = err(&GOOD.replace(
        r#"require = ["greeting_ms"]"#,
        r#"require = ["greting_ms"]"#,
    ));
    assert!(
        e.contains("slo.require") && e.contains("greeting_ms"),
        "{e}"
    );
}

#[test]
fn both_token_sources_are_refused() {
    let e = err(&GOOD.replace(
        r#"token_prefix = "tok-""#,
        "token_prefix = \"a\"\ntokens_file = \"t\"",
    ));
    assert!(e.contains("agents.tokens_file"), "{e}");
}

#[test]
fn missing_file_and_bad_questions_are_clear() {
    let e = Profile::load(Path::new("/nonexistent/p.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/p.toml"), "{e}");
    let e = Questions::parse("{\"question\":\"a\"}\nnot json\n").unwrap_err();
    assert!(e.starts_with("line 2"), "{e}");
    let e = Questions::parse("{\"question\":\"x\",\"kind\":\"complaint\"}\n").unwrap_err();
    assert!(e.contains("kb"), "{e}");
}

#[test]
fn questions_pick_by_kind_with_fallback() {
    let q = Questions::parse(
        "{\"question\":\"kb1\"}\n{\"question\":\"oos\",\"kind\":\"out_of_scope\"}\n",
    )
    .unwrap();
    let mut rng = Rng::new(1);
    assert_eq!(q.pick(QuestionKind::OutOfScope, &mut rng), "oos");
    assert_eq!(q.pick(QuestionKind::Complaint, &mut rng), "kb1");
}

#[test]
fn mix_draw_follows_shares() {
    let m = Mix {
        kb: 0.5,
        out_of_scope: 0.0,
        human: 0.5,
        complaint: 0.0,
    };
    let mut rng = Rng::new(7);
    let n = (0..10_000)
        .filter(|_| m.draw(&mut rng) == Intent::Human)
        .count();
    assert!((4_700..5_300).contains(&n), "{n}");
}

#[test]
fn failover_profile_plans_its_faults_within_three_minutes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/load");
    let p = Profile::load(&dir.join("failover.toml")).unwrap();
    let plan = p.faults.plan(&[], None).unwrap();
    let kinds: Vec<&str> = plan.faults.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(
        kinds,
        ["kill:2@30s", "restart:all@60s", "redis-restart@110s"]
    );
    assert_eq!(plan.restart_after, std::time::Duration::from_secs(5));
    assert!(plan.check(4, true).is_ok());
    assert!(p.duration_s() + p.drain_s as f64 <= 170.0);
    assert_eq!(p.slo.sessions_lost, Some(0));
    assert_eq!(p.slo.failover_resume_p99_ms, Some(5000.0));
    // The command line replaces the profile's list and pause.
    let cli = p.faults.plan(&["kill:1@5s".into()], Some("1s")).unwrap();
    assert_eq!(cli.faults.len(), 1);
    assert_eq!(cli.restart_after, std::time::Duration::from_secs(1));
}

#[test]
fn bad_fault_in_a_profile_names_it() {
    let e = err(&format!(
        "{GOOD}\n[faults]\nlist = [\"kill:2@1s\", \"explode:1@2s\"]\n"
    ));
    assert!(
        e.contains("faults.list") && e.contains("explode:1@2s"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[faults]\nrestart_after = \"soon\"\n"));
    assert!(e.contains("faults.restart_after"), "{e}");
}

#[test]
fn set_overrides_one_key_and_is_checked_like_the_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/load");
    let sale = dir.join("sale-day.toml");
    let set = |o: &[&str]| {
        let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
        Profile::load_with(&sale, &o)
    };
    assert_eq!(Profile::load(&sale).unwrap().customer.returning_share, 0.0);
    let p = set(&[
        "customer.returning_share=0.1",
        "customer.returning_pool=500",
    ])
    .unwrap();
    assert_eq!(p.customer.returning_share, 0.1);
    assert_eq!(p.customer.returning_pool, 500);
    // Relative paths still resolve against the profile's directory.
    assert!(p.questions_file.starts_with(&dir));
    // Unknown keys, bad types and malformed overrides are refused, naming the override.
    let unknown = set(&["customer.no_such_key=1"]).unwrap_err().to_string();
    assert!(unknown.contains("no_such_key"), "{unknown}");
    let typed = set(&["customer.returning_pool=many"])
        .unwrap_err()
        .to_string();
    assert!(typed.contains("returning_pool"), "{typed}");
    let bare = set(&["customer.returning_share"]).unwrap_err().to_string();
    assert!(bare.contains("KEY=VALUE"), "{bare}");
    let range = set(&["customer.returning_share=2"])
        .unwrap_err()
        .to_string();
    assert!(range.contains("returning_share"), "{range}");
}
