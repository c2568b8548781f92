//! Traffic profiles: the TOML files in `config/load/`.
//!
//! A profile is everything a run needs besides where the gateway is: the arrival rate over time,
//! how customers and agents behave, and the SLO thresholds the run is judged by. Parsing rejects
//! unknown keys, and validation names the offending key, because a typo in a sale-day profile
//! should fail in the first second rather than after a 20-minute run measured the wrong thing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rng::Rng;

/// Why a profile could not be used. Every variant names the file or key involved.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("profile key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("questions file {path}: {reason}")]
    Questions { path: PathBuf, reason: String },
}

/// Sets `a.b.c=value` in `table`, making the tables on the way.
fn set_key(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or("an override is KEY=VALUE, e.g. customer.returning_share=0.1")?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err("empty key segment".into());
    }
    let value = format!("v = {}", raw.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut at = table;
    for part in parents {
        let next = at
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = next
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a table"))?;
    }
    at.insert(last.to_string(), value);
    Ok(())
}

fn invalid(key: &str, reason: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// A whole profile, as read from TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// JSONL file of `{"question": …, "kind": …, "lang": …}`; relative to the profile file.
    pub questions_file: PathBuf,
    /// Seconds to let sessions finish after the last arrival before they are cut off.
    #[serde(default = "default_drain_s")]
    pub drain_s: u64,
    /// Customer worker processes (1 = all in this process).
    #[serde(default = "one")]
    pub workers: u32,
    /// Loopback source addresses per worker (127.0.0.2, …). The gateway limits connections per
    /// client address (`limits.max_connections_per_ip`, 1,000 by default), so a worker holding
    /// 15,000 sessions needs at least 15 of them; customers are spread round-robin.
    #[serde(default = "default_sources")]
    pub source_addresses: u32,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    pub customer: CustomerProfile,
    #[serde(default)]
    pub agents: AgentsProfile,
    #[serde(default)]
    pub slo: Slo,
    /// Faults to inject (needs `--spawn`); `--fault` on the command line replaces the list.
    #[serde(default)]
    pub faults: FaultsProfile,
}

/// `[faults]`: `list = ["kill:2@40s", "restart:all@70s", "redis-restart@120s"]`,
/// `restart_after = "5s"` (how long a killed node stays down).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsProfile {
    #[serde(default)]
    pub list: Vec<String>,
    pub restart_after: Option<String>,
}

impl FaultsProfile {
    /// The plan from the profile; `cli` faults and `cli_restart_after`, when given, win.
    pub fn plan(
        &self,
        cli: &[String],
        cli_restart_after: Option<&str>,
    ) -> Result<crate::faults::FaultPlan, String> {
        let list = if cli.is_empty() { &self.list } else { cli };
        let restart_after = match cli_restart_after.or(self.restart_after.as_deref()) {
            Some(s) => {
                crate::faults::parse_duration(s).map_err(|e| format!("restart_after: {e}"))?
            }
            None => crate::faults::DEFAULT_RESTART_AFTER,
        };
        crate::faults::FaultPlan::parse(list, restart_after)
    }
}

fn default_drain_s() -> u64 {
    30
}
fn one() -> u32 {
    1
}
fn default_sources() -> u32 {
    16
}

/// One piece of the arrival curve: the rate moves linearly from `rate_start` to `rate_end`
/// (new sessions per second) over `duration_s`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub duration_s: f64,
    pub rate_start: f64,
    pub rate_end: f64,
}

/// A duration distribution in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    Fixed {
        ms: u64,
    },
    Uniform {
        min_ms: u64,
        max_ms: u64,
    },
    /// Exponential with the given mean, cut at `max_ms` so one sample cannot outlive the run.
    Exp {
        mean_ms: u64,
        max_ms: u64,
    },
}

impl Dist {
    pub fn sample(&self, rng: &mut Rng) -> std::time::Duration {
        let ms = match *self {
            Dist::Fixed { ms } => ms,
            Dist::Uniform { min_ms, max_ms } => rng.range_u64(min_ms, max_ms),
            Dist::Exp { mean_ms, max_ms } => {
                let u = rng.f64().max(1e-12);
                ((-u.ln()) * mean_ms as f64).min(max_ms as f64) as u64
            }
        };
        std::time::Duration::from_millis(ms)
    }

    fn validate(&self, key: &str) -> Result<(), ProfileError> {
        match *self {
            Dist::Uniform { min_ms, max_ms } if min_ms > max_ms => Err(invalid(
                key,
                format!("min_ms {min_ms} is above max_ms {max_ms}"),
            )),
            Dist::Exp { mean_ms, max_ms } if mean_ms == 0 || max_ms < mean_ms => Err(invalid(
                key,
                "mean_ms must be > 0 and max_ms at least mean_ms",
            )),
            _ => Ok(()),
        }
    }
}

/// What a customer does, as shares that sum to 1.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Asks questions the knowledge base answers.
    pub kb: f64,
    /// Asks questions it cannot answer (expects suggestions or nothing useful).
    pub out_of_scope: f64,
    /// Asks a question, then requests a human.
    pub human: f64,
    /// Complains (the bot may hand off by itself), then requests a human if it did not.
    pub complaint: f64,
}

/// The intent drawn for one customer from [`Mix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Kb,
    OutOfScope,
    Human,
    Complaint,
}

impl Mix {
    pub fn draw(&self, rng: &mut Rng) -> Intent {
        let x = rng.f64();
        if x < self.kb {
            Intent::Kb
        } else if x < self.kb + self.out_of_scope {
            Intent::OutOfScope
        } else if x < self.kb + self.out_of_scope + self.human {
            Intent::Human
        } else {
            Intent::Complaint
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfile {
    pub mix: Mix,
    /// Questions per session, inclusive range `[min, max]`.
    pub questions: [u32; 2],
    pub think: Dist,
    /// How long a customer waits in the queue for a person before closing the chat.
    pub patience: Dist,
    /// How long the customer keeps the widget open, quiet, after it is done (holds concurrency).
    #[serde(default = "zero_dist")]
    pub linger: Dist,
    /// Share of customers whose socket drops once mid-session and who resume.
    #[serde(default)]
    pub drop_share: f64,
    /// Pause between the drop and the resume.
    #[serde(default = "default_resume_after")]
    pub resume_after: Dist,
    /// Share of customers answering the satisfaction survey.
    #[serde(default)]
    pub survey_share: f64,
    /// Share of customers with `lang=zh` (the rest `en`).
    #[serde(default = "default_zh_share")]
    pub zh_share: f64,
    /// Share of customers who are identified returning customers (issue #17): they connect
    /// with a signed `identity` token for one of `returning_pool` shop customers per worker, so
    /// the same customer comes back during the run and the report counts how many reached the
    /// agent who served their previous chat.
    #[serde(default)]
    pub returning_share: f64,
    #[serde(default = "default_returning_pool")]
    pub returning_pool: u32,
    /// The HS256 secret the gateway checks identity tokens with (its `KEFU_IDENTITY_SECRET`;
    /// spawned nodes get it).
    #[serde(default = "default_identity_secret")]
    pub identity_secret: String,
    /// Give up waiting for a greeting after this long (counted as a greeting timeout).
    #[serde(default = "default_greeting_timeout")]
    pub greeting_timeout_ms: u64,
    /// Give up waiting for an `ack` or a bot reply after this long.
    #[serde(default = "default_reply_timeout")]
    pub reply_timeout_ms: u64,
}

fn zero_dist() -> Dist {
    Dist::Fixed { ms: 0 }
}
fn default_resume_after() -> Dist {
    Dist::Uniform {
        min_ms: 200,
        max_ms: 2000,
    }
}
fn default_returning_pool() -> u32 {
    50
}
/// A test secret, not a real one: spawned nodes are given it.
pub const DEFAULT_IDENTITY_SECRET: &str = "kefu-load-identity-secret-0123456789";
fn default_identity_secret() -> String {
    DEFAULT_IDENTITY_SECRET.to_owned()
}
fn default_zh_share() -> f64 {
    0.8
}
fn default_greeting_timeout() -> u64 {
    10_000
}
fn default_reply_timeout() -> u64 {
    3_000
}

/// A set of identical agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPool {
    pub count: u32,
    pub groups: Vec<String>,
    pub capacity: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsProfile {
    #[serde(default, rename = "pool")]
    pub pools: Vec<AgentPool>,
    /// Time from a customer message (or the assignment) to the agent's reply.
    #[serde(default = "default_reply")]
    pub reply: Dist,
    /// Agent messages per chat before the agent closes it, inclusive range.
    #[serde(default = "default_exchanges")]
    pub exchanges_per_chat: [u32; 2],
    /// With `--target`: agent `i` (from 1) uses token `{token_prefix}{i:03}`.
    pub token_prefix: Option<String>,
    /// With `--target`: one token per line, agent `i` uses line `i`; relative to the profile.
    pub tokens_file: Option<PathBuf>,
}

impl Default for AgentsProfile {
    fn default() -> Self {
        AgentsProfile {
            pools: Vec::new(),
            reply: default_reply(),
            exchanges_per_chat: default_exchanges(),
            token_prefix: None,
            tokens_file: None,
        }
    }
}

fn default_reply() -> Dist {
    Dist::Uniform {
        min_ms: 500,
        max_ms: 3000,
    }
}
fn default_exchanges() -> [u32; 2] {
    [1, 3]
}

impl AgentsProfile {
    pub fn total(&self) -> u32 {
        self.pools.iter().map(|p| p.count).sum()
    }
}

/// Thresholds the run is judged by. An absent threshold is not checked. A latency metric with no
/// samples passes (and is printed as "no samples") unless it is listed in `require`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub greeting_p99_ms: Option<f64>,
    pub greeting_within_6s_ratio: Option<f64>,
    pub bot_answer_p99_ms: Option<f64>,
    pub relay_p99_ms: Option<f64>,
    pub relay_same_node_p99_ms: Option<f64>,
    pub relay_cross_node_p99_ms: Option<f64>,
    pub queue_wait_p99_ms: Option<f64>,
    pub assign_p99_ms: Option<f64>,
    pub lost_messages: Option<u64>,
    pub duplicate_messages: Option<u64>,
    pub connect_failure_ratio: Option<f64>,
    pub agent_load_spread_max: Option<u64>,
    pub min_peak_concurrent: Option<u64>,
    /// Customers who had to start a new session because of a fault (resume refused, or the
    /// chat closed with `shutting_down`).
    pub sessions_lost: Option<u64>,
    /// Socket lost to the session resumed on a live node, for reconnects caused by a fault.
    pub failover_resume_p99_ms: Option<f64>,
    /// Error codes tolerated up to a count, e.g. `{ rate_limited = 10 }`; codes not listed: 0.
    pub max_errors: Option<BTreeMap<String, u64>>,
    /// Metric names (`greeting_ms`, `bot_answer_ms`, `relay_ms`, …) that must have samples.
    #[serde(default)]
    pub require: Vec<String>,
}

/// Metric names `slo.require` accepts.
pub const LATENCY_METRICS: &[&str] = &[
    "greeting_ms",
    "bot_answer_ms",
    "ack_ms",
    "queue_wait_ms",
    "assign_ms",
    "relay_ms",
    "relay_same_node_ms",
    "relay_cross_node_ms",
    "agent_first_reply_ms",
    "failover_resume_ms",
];

impl Profile {
    /// Reads and validates a profile; relative paths inside it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        Profile::load_with(path, &[])
    }

    /// [`Profile::load`] with `KEY=VALUE` overrides (`--set customer.returning_share=0.1`)
    /// applied before the profile is checked, so a run can vary one key of a committed profile.
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut p = Profile::parse_with(&text, overrides).map_err(|e| match e {
            ProfileError::Parse { message, .. } => ProfileError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if p.questions_file.is_relative() {
            p.questions_file = dir.join(&p.questions_file);
        }
        if let Some(f) = p.agents.tokens_file.as_mut() {
            if f.is_relative() {
                *f = dir.join(&*f);
            }
        }
        Ok(p)
    }

    /// Parses and validates profile text (paths are left as written).
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse_with(text, &[])
    }

    /// [`Profile::parse`] with `KEY=VALUE` overrides; a value is read as TOML (`0.1`, `true`,
    /// `[1, 3]`), else as a string.
    pub fn parse_with(text: &str, overrides: &[String]) -> Result<Profile, ProfileError> {
        let parse_error = |message: String| ProfileError::Parse {
            path: PathBuf::from("<text>"),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        for o in overrides {
            set_key(&mut table, o).map_err(|reason| invalid(o, reason))?;
        }
        let p: Profile = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Seconds from the first to the last possible arrival.
    pub fn duration_s(&self) -> f64 {
        self.phases.iter().map(|p| p.duration_s).sum()
    }

    fn validate(&self) -> Result<(), ProfileError> {
        if self.phases.is_empty() {
            return Err(invalid("phase", "at least one [[phase]] is needed"));
        }
        for (i, ph) in self.phases.iter().enumerate() {
            let key = format!("phase[{i}]");
            if !(ph.duration_s > 0.0 && ph.duration_s.is_finite()) {
                return Err(invalid(
                    &format!("{key}.duration_s"),
                    "must be a positive number",
                ));
            }
            for (k, v) in [("rate_start", ph.rate_start), ("rate_end", ph.rate_end)] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(invalid(&format!("{key}.{k}"), "must be zero or more"));
                }
            }
        }
        if self.duration_s() > 3600.0 {
            return Err(invalid(
                "phase",
                "the phases add up to more than an hour; runs are bounded",
            ));
        }
        if self.drain_s > 600 {
            return Err(invalid("drain_s", "at most 600"));
        }
        if self.workers == 0 || self.workers > 16 {
            return Err(invalid("workers", "between 1 and 16"));
        }
        if self.source_addresses == 0 || self.source_addresses > 200 {
            return Err(invalid("source_addresses", "between 1 and 200"));
        }
        let c = &self.customer;
        let m = c.mix;
        for (k, v) in [
            ("kb", m.kb),
            ("out_of_scope", m.out_of_scope),
            ("human", m.human),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(
                    &format!("customer.mix.{k}"),
                    "a share between 0 and 1",
                ));
            }
        }
        let sum = m.kb + m.out_of_scope + m.human + m.complaint;
        if (sum - 1.0).abs() > 1e-6 || m.complaint < 0.0 {
            return Err(invalid(
                "customer.mix",
                format!("the shares must add up to 1, not {sum}"),
            ));
        }
        if c.questions[0] > c.questions[1] || c.questions[1] > 50 {
            return Err(invalid(
                "customer.questions",
                "[min, max] with min <= max <= 50",
            ));
        }
        for (k, v) in [
            ("customer.drop_share", c.drop_share),
            ("customer.survey_share", c.survey_share),
            ("customer.zh_share", c.zh_share),
            ("customer.returning_share", c.returning_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(k, "a share between 0 and 1"));
            }
        }
        if c.returning_share > 0.0 && (c.returning_pool == 0 || c.identity_secret.len() < 16) {
            return Err(invalid(
                "customer.returning_pool",
                "returning customers need returning_pool >= 1 and an identity_secret of 16+ bytes",
            ));
        }
        c.think.validate("customer.think")?;
        c.patience.validate("customer.patience")?;
        c.linger.validate("customer.linger")?;
        c.resume_after.validate("customer.resume_after")?;
        let a = &self.agents;
        a.reply.validate("agents.reply")?;
        if a.exchanges_per_chat[0] == 0 || a.exchanges_per_chat[0] > a.exchanges_per_chat[1] {
            return Err(invalid(
                "agents.exchanges_per_chat",
                "[min, max] with 1 <= min <= max",
            ));
        }
        for (i, pool) in a.pools.iter().enumerate() {
            if pool.groups.is_empty() || pool.groups.iter().any(|g| g.trim().is_empty()) {
                return Err(invalid(
                    &format!("agents.pool[{i}].groups"),
                    "name at least one group",
                ));
            }
            if pool.capacity == 0 || pool.capacity > 50 {
                return Err(invalid(
                    &format!("agents.pool[{i}].capacity"),
                    "between 1 and 50",
                ));
            }
        }
        if a.total() > 2000 {
            return Err(invalid("agents.pool", "at most 2000 agents in total"));
        }
        if a.token_prefix.is_some() && a.tokens_file.is_some() {
            return Err(invalid(
                "agents.tokens_file",
                "give token_prefix or tokens_file, not both",
            ));
        }
        for name in &self.slo.require {
            if !LATENCY_METRICS.contains(&name.as_str()) {
                return Err(invalid(
                    "slo.require",
                    format!(
                        "unknown metric `{name}`; known: {}",
                        LATENCY_METRICS.join(", ")
                    ),
                ));
            }
        }
        if let Err(e) = self.faults.plan(&[], None) {
            let key = if e.starts_with("restart_after") {
                "faults.restart_after"
            } else {
                "faults.list"
            };
            return Err(invalid(key, e));
        }
        if let Some(r) = self.slo.greeting_within_6s_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(invalid(
                    "slo.greeting_within_6s_ratio",
                    "a ratio between 0 and 1",
                ));
            }
        }
        Ok(())
    }
}

/// What kind of question a line of the questions file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    #[default]
    Kb,
    OutOfScope,
    Complaint,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    pub question: String,
    #[serde(default)]
    pub kind: QuestionKind,
}

/// The questions file, split by kind so customers draw the right sort of question.
#[derive(Debug, Clone, Default)]
pub struct Questions {
    pub kb: Vec<String>,
    pub out_of_scope: Vec<String>,
    pub complaint: Vec<String>,
}

impl Questions {
    pub fn load(path: &Path) -> Result<Questions, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Questions {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Questions::parse(&text).map_err(|reason| ProfileError::Questions {
            path: path.to_owned(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Questions, String> {
        let mut q = Questions::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let item: Question =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            if item.question.trim().is_empty() {
                return Err(format!("line {}: empty question", n + 1));
            }
            match item.kind {
                QuestionKind::Kb => q.kb.push(item.question),
                QuestionKind::OutOfScope => q.out_of_scope.push(item.question),
                QuestionKind::Complaint => q.complaint.push(item.question),
            }
        }
        if q.kb.is_empty() {
            return Err("no questions of kind `kb` (the default kind)".into());
        }
        Ok(q)
    }

    /// A question for this intent; falls back to the knowledge-base questions.
    pub fn pick(&self, kind: QuestionKind, rng: &mut Rng) -> &str {
        let list = match kind {
            QuestionKind::OutOfScope if !self.out_of_scope.is_empty() => &self.out_of_scope,
            QuestionKind::Complaint if !self.complaint.is_empty() => &self.complaint,
            _ => &self.kb,
        };
        &list[rng.below(list.len() as u64) as usize]
    }
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
