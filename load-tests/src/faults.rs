//! Faults on purpose: `--fault kill:2@120s`, `restart:3@150s`, `restart:all@150s`,
//! `redis-restart@180s`, carried out on the nodes `--spawn` started while the run goes on.
//!
//! A durable gateway promises that a crash or a deploy loses nothing; the only way to show it
//! is to crash and deploy during a measured run. The faults run one after another in time
//! order on the one [`Cluster`]: a fault whose time comes while an earlier one is still in
//! progress (a node still coming back) starts when that one is done, and its record says when
//! it really happened, so the report never claims a fault at a time it did not occur.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::spawn::Cluster;

/// How long a node stopped with SIGTERM may drain before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Default pause between a `kill` and the node's start again.
pub const DEFAULT_RESTART_AFTER: Duration = Duration::from_secs(5);

/// Which node(s) a fault is about; nodes are numbered from 1 as the run's node list shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    One(u32),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL, then start again after `restart_after`.
    Kill(u32),
    /// SIGTERM, wait for the exit, start again at once; `All` is a rolling restart.
    Restart(Nodes),
    /// `redis-cli shutdown` (AOF on), start again on the same port.
    RedisRestart,
}

/// One planned fault, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Time into the run (from the first arrival).
    pub at: Duration,
    pub text: String,
}

/// Parses `5s`, `500ms`, `2m` or a bare number of seconds (`120`, `1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (like 5s, 500ms, 2m)"))?;
    if !(v.is_finite() && v >= 0.0 && v * scale <= 86_400.0) {
        return Err(format!("`{s}` is not a duration between 0 and a day"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Fault, String> {
        let bad = |why: &str| {
            format!("fault `{text}`: {why} (expected kill:K@T, restart:K@T, restart:all@T or redis-restart@T, e.g. kill:2@120s)")
        };
        let (what, at) = text.split_once('@').ok_or_else(|| bad("no @TIME"))?;
        let at = parse_duration(at).map_err(|e| bad(&e))?;
        let node = |n: &str| -> Result<u32, String> {
            match n.parse::<u32>() {
                Ok(k) if k >= 1 => Ok(k),
                _ => Err(bad(&format!("`{n}` is not a node number (from 1)"))),
            }
        };
        let kind = match what.split_once(':') {
            Some(("kill", n)) => FaultKind::Kill(node(n)?),
            Some(("restart", "all")) => FaultKind::Restart(Nodes::All),
            Some(("restart", n)) => FaultKind::Restart(Nodes::One(node(n)?)),
            None if what == "redis-restart" => FaultKind::RedisRestart,
            _ => return Err(bad(&format!("unknown fault `{what}`"))),
        };
        Ok(Fault {
            kind,
            at,
            text: text.to_owned(),
        })
    }
}

/// Every fault of a run, in time order, and how long a killed node stays down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
    pub restart_after: Duration,
}

impl FaultPlan {
    /// Parses fault strings; the error names the bad one.
    pub fn parse(list: &[String], restart_after: Duration) -> Result<FaultPlan, String> {
        let mut faults = list
            .iter()
            .map(|s| s.parse::<Fault>())
            .collect::<Result<Vec<_>, _>>()?;
        faults.sort_by_key(|f| f.at);
        Ok(FaultPlan {
            faults,
            restart_after,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Checks the plan against what was spawned: nodes that exist, Redis for `redis-restart`.
    pub fn check(&self, nodes: u32, redis: bool) -> Result<(), String> {
        for f in &self.faults {
            match f.kind {
                FaultKind::Kill(k) | FaultKind::Restart(Nodes::One(k)) if k > nodes => {
                    return Err(format!(
                        "fault `{}`: there is no node {k} (the run has {nodes})",
                        f.text
                    ))
                }
                FaultKind::RedisRestart if !redis => {
                    return Err(format!(
                        "fault `{}`: Redis runs only with --spawn 2 or more",
                        f.text
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What happened to one node (or Redis), for the report. Times are seconds since the run's
/// start; `None` means it did not happen before the run ended (or failed: see `error`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultRecord {
    /// `kill`, `restart` or `redis-restart`.
    pub kind: String,
    /// The node (from 1); absent for Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// The fault as given (`restart:all@150s` for each node of a rolling restart).
    pub fault: String,
    /// When it was planned.
    pub at_s: f64,
    /// When the process was gone (killed, or exited after SIGTERM / shutdown).
    pub done_at_s: Option<f64>,
    /// When it answered again (`/healthz` 200, or PING for Redis).
    pub back_at_s: Option<f64>,
    /// A node that did not exit within [`STOP_GRACE`] of SIGTERM and was killed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced_kill: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The records of a run, shared so that they survive the executor being cut at the run's end.
pub type Log = Arc<Mutex<Vec<FaultRecord>>>;

fn with_log<R>(log: &Log, f: impl FnOnce(&mut Vec<FaultRecord>) -> R) -> R {
    f(&mut log.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Carries out `plan` on `cluster`, timed from `start`, writing a record per node touched.
pub async fn execute(cluster: &mut Cluster, plan: &FaultPlan, start: Instant, log: &Log) {
    for f in &plan.faults {
        tokio::time::sleep_until(start + f.at).await;
        let nodes: Vec<u32> = match f.kind {
            FaultKind::Kill(k) | FaultKind::Restart(Nodes::One(k)) => vec![k],
            FaultKind::Restart(Nodes::All) => (1..=cluster.node_count() as u32).collect(),
            FaultKind::RedisRestart => vec![],
        };
        let (kind, targets) = match f.kind {
            FaultKind::Kill(_) => ("kill", nodes),
            FaultKind::Restart(_) => ("restart", nodes),
            FaultKind::RedisRestart => ("redis-restart", vec![0]),
        };
        // A rolling restart: each node once the previous one is healthy again.
        for k in targets {
            let node = (k > 0).then_some(k);
            let idx = with_log(log, |l| {
                l.push(FaultRecord {
                    kind: kind.into(),
                    node,
                    fault: f.text.clone(),
                    at_s: f.at.as_secs_f64(),
                    ..FaultRecord::default()
                });
                l.len() - 1
            });
            let since = |at: Instant| round_s(at.saturating_duration_since(start));
            let set = |g: &dyn Fn(&mut FaultRecord)| with_log(log, |l| g(&mut l[idx]));
            let result = one(cluster, f.kind, k, plan.restart_after, |ev| match ev {
                Step::Gone { forced } => set(&|r| {
                    r.done_at_s = Some(since(Instant::now()));
                    r.forced_kill = forced;
                }),
                Step::Back => set(&|r| r.back_at_s = Some(since(Instant::now()))),
            })
            .await;
            if let Err(e) = result {
                let msg = format!("{e:#}");
                eprintln!("kefu-load: fault `{}`: {msg}", f.text);
                set(&|r| r.error = Some(msg.clone()));
            } else {
                eprintln!(
                    "kefu-load: fault `{}`{} done",
                    f.text,
                    node.map(|n| format!(" (node {n})")).unwrap_or_default()
                );
            }
        }
    }
}

enum Step {
    Gone { forced: bool },
    Back,
}

async fn one(
    cluster: &mut Cluster,
    kind: FaultKind,
    node: u32,
    restart_after: Duration,
    mut step: impl FnMut(Step),
) -> anyhow::Result<()> {
    let i = node.saturating_sub(1) as usize;
    match kind {
        FaultKind::Kill(_) => {
            cluster.kill_node(i).await?;
            step(Step::Gone { forced: false });
            tokio::time::sleep(restart_after).await;
            cluster.start_node(i)?;
            cluster.wait_node_healthy(i).await?;
        }
        FaultKind::Restart(_) => {
            let exited = cluster.terminate_node(i, STOP_GRACE).await?;
            step(Step::Gone { forced: !exited });
            cluster.start_node(i)?;
            cluster.wait_node_healthy(i).await?;
        }
        FaultKind::RedisRestart => {
            cluster.stop_redis().await?;
            step(Step::Gone { forced: false });
            cluster.start_redis().await?;
        }
    }
    step(Step::Back);
    Ok(())
}

fn round_s(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        let f: Fault = "kill:2@120s".parse().unwrap();
        assert_eq!(f.kind, FaultKind::Kill(2));
        assert_eq!(f.at, Duration::from_secs(120));
        let f: Fault = "restart:3@150".parse().unwrap();
        assert_eq!(f.kind, FaultKind::Restart(Nodes::One(3)));
        let f: Fault = "restart:all@1.5m".parse().unwrap();
        assert_eq!(f.kind, FaultKind::Restart(Nodes::All));
        assert_eq!(f.at, Duration::from_secs(90));
        let f: Fault = "redis-restart@500ms".parse().unwrap();
        assert_eq!(f.kind, FaultKind::RedisRestart);
        assert_eq!(f.at, Duration::from_millis(500));
    }

    #[test]
    fn bad_faults_are_named() {
        for bad in [
            "kill:2",
            "kill:0@1s",
            "kill:x@1s",
            "kill@1s",
            "reboot:1@1s",
            "restart:1@soon",
            "redis-restart:1@1s",
            "kill:1@-5s",
        ] {
            let e = bad.parse::<Fault>().unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn plan_is_sorted_and_checked_against_the_cluster() {
        let list: Vec<String> = ["redis-restart@180s", "kill:2@120s", "restart:all@150s"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let p = FaultPlan::parse(&list, DEFAULT_RESTART_AFTER).unwrap();
        let at: Vec<u64> = p.faults.iter().map(|f| f.at.as_secs()).collect();
        assert_eq!(at, [120, 150, 180]);
        assert!(p.check(4, true).is_ok());
        let e = p.check(1, true).unwrap_err();
        assert!(e.contains("kill:2@120s") && e.contains("no node 2"), "{e}");
        let e = p.check(4, false).unwrap_err();
        assert!(e.contains("redis-restart@180s"), "{e}");
        let e = FaultPlan::parse(&["kill:1@1s".into(), "oops".into()], Duration::ZERO).unwrap_err();
        assert!(e.contains("`oops`"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 3 "), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("").is_err());
    }
}
