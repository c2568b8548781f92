//! Typed settings, layered: the embedded `config/gateway.toml`, then an optional file, then
//! `KEFU__SECTION__KEY` environment variables.
//!
//! The environment is passed in as a map so tests can inject it. Every struct denies unknown
//! fields, and errors carry the dotted key path (and the variable that set it), because a
//! typo in a sale-day override must stop the node at start, not be silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The defaults, compiled in so the binary runs from anywhere.
pub const EMBEDDED_TOML: &str = include_str!("../../config/gateway.toml");

/// Prefix of environment overrides; `__` separates the path segments.
pub const ENV_PREFIX: &str = "KEFU__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`{origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub limits: LimitSettings,
    pub websocket: WebSocketSettings,
    pub session: SessionSettings,
    pub greeting: GreetingSettings,
    pub kb: KbSettings,
    pub handoff: HandoffSettings,
    pub agents: AgentSettings,
    pub routing: RoutingSettings,
    pub console: ConsoleSettings,
    pub dispatch: crate::dispatch::DispatchSettings,
    pub store: crate::store::StoreSettings,
    pub leaks: crate::leaks::LeakSettings,
    pub sign_in: sign_in::SignInSettings,
    pub attachments: crate::attachments::AttachmentSettings,
    /// Identified customers (issue #17); the secret comes from the environment or a file.
    #[serde(default)]
    pub identity: crate::identity::IdentitySettings,
    /// Business hours per skill group (issue #17); none: always open.
    #[serde(default)]
    pub hours: crate::hours::HoursSettings,
    /// The shop's own services the gateway asks (issue #18): its order endpoint.
    #[serde(default)]
    pub integrations: crate::orders::IntegrationSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub file: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    pub agent_greeting_s: u64,
    pub first_response_sla_s: u64,
    pub avg_handle_s: u64,
    pub agent_greeting_zh: String,
    pub agent_greeting_en: String,
    /// A returning customer whose last chat was at most this many days ago is offered to
    /// that chat's agent first (issue #17); 0: never.
    #[serde(default = "default_last_agent_days")]
    pub last_agent_days: u64,
    /// How long a returning customer waits for their last agent's free slot (seconds).
    #[serde(default = "default_prefer_last_agent_s")]
    pub prefer_last_agent_s: u64,
}

fn default_last_agent_days() -> u64 {
    7
}

fn default_prefer_last_agent_s() -> u64 {
    30
}

/// What the agent console offers (served as `/console/config.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Standard scripts an agent inserts with one click.
    pub canned_replies: Vec<String>,
}

/// The knowledge base the bot answers from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbSettings {
    pub path: std::path::PathBuf,
    pub answer: f32,
    pub suggest: f32,
    pub suggestions: usize,
    pub search_concurrency: usize,
    pub search_timeout_ms: u64,
    pub watch_interval_s: u64,
    pub answer_cache_entries: usize,
}

/// When and where the bot hands a customer to a human.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffSettings {
    pub human_words: Vec<String>,
    pub unanswered_in_a_row: u32,
    pub on_not_helpful: bool,
    pub complaint_level1: Vec<String>,
    pub complaint_level2: Vec<String>,
    pub complaint_level3: Vec<String>,
    pub complaint_group: String,
    pub default_group: String,
    pub category_groups: BTreeMap<String, String>,
    /// What the first question in a row the bot cannot place does (issue #19).
    pub first_miss: FirstMiss,
    /// The request to rephrase, by language, sent with the main topics.
    pub clarify_zh: String,
    pub clarify_en: String,
    /// Entry ids offered as quick replies when asking to rephrase (those of the customer's
    /// language that the knowledge base has).
    pub clarify_topics: Vec<String>,
}

/// `handoff.first_miss`: on the first question in a row below the suggestion threshold, ask
/// the customer to rephrase with the main topics as quick replies (`clarify`), or hand off at
/// once (`handoff`, the behaviour before). A single unclear question handing off flooded the
/// queues at a peak; the second miss in a row, a request for a person or a complaint still
/// hand off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstMiss {
    Clarify,
    Handoff,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub shutdown_timeout_ms: u64,
    pub node_id: String,
    pub admin_token: Secret,
    pub widget_origins: Vec<String>,
    pub header_read_timeout_ms: u64,
    pub allowed_origins: Vec<String>,
    pub operators_file: std::path::PathBuf,
    /// Runtime threads; 0: one per core.
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub max_tcp_connections_per_ip: u32,
    pub max_frame_bytes: usize,
    pub max_text_chars: usize,
    pub messages_per_second: f64,
    pub message_burst: u32,
    pub frames_per_second: f64,
    pub frame_burst: u32,
    pub auth_failures_per_minute: u32,
    pub sign_in_queue: usize,
    pub outbound_queue: usize,
    pub write_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSettings {
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
    pub ping_interval_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub grace_period_s: u64,
    pub replay_frames: usize,
    pub dedup_ids: usize,
    pub transcript_entries: usize,
    pub transcript_bytes: usize,
}

/// Greeting scripts by language, with per-channel overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreetingSettings {
    pub zh: String,
    pub en: String,
    #[serde(default)]
    pub channels: BTreeMap<crate::protocol::Channel, LangText>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LangText {
    pub zh: Option<String>,
    pub en: Option<String>,
}

impl GreetingSettings {
    /// The script for a channel and language: the channel's own, else the language default.
    pub fn script(&self, channel: crate::protocol::Channel, lang: crate::protocol::Lang) -> &str {
        use crate::protocol::Lang;
        let own = self.channels.get(&channel).and_then(|t| match lang {
            Lang::Zh => t.zh.as_deref(),
            Lang::En => t.en.as_deref(),
        });
        own.unwrap_or(match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        })
    }
}

pub use crate::redact::Secret;

pub mod sign_in;
mod validate;
pub use validate::MIN_ADMIN_TOKEN_CHARS;

impl Settings {
    /// The embedded defaults alone.
    pub fn embedded() -> Settings {
        // The embedded file is part of the build and checked by tests; failing here is a bug.
        #[allow(clippy::expect_used)]
        Self::load(None, &HashMap::new()).expect("embedded config/gateway.toml is valid")
    }

    /// Embedded defaults, then `file`, then the `KEFU__…` entries of `env`.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut table = parse_table(EMBEDDED_TOML, "config/gateway.toml (embedded)")?;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            merge(&mut table, parse_table(&text, &shown)?);
        }
        let mut origins = HashMap::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid {
                    key: rest.to_string(),
                    origin: format!(" (from {name})"),
                    message: "empty path segment; use KEFU__SECTION__KEY".into(),
                });
            }
            origins.insert(path.join("."), name.clone());
            set_path(&mut table, &path, env_value(raw));
        }
        let deserializer = toml::Value::Table(table);
        let mut settings: Settings =
            serde_path_to_error::deserialize(deserializer).map_err(|err| {
                let key = err.path().to_string();
                let origin = origins
                    .iter()
                    .find(|(k, _)| key == **k || key.starts_with(&format!("{k}.")))
                    .map(|(_, var)| format!(" (from {var})"))
                    .unwrap_or_default();
                ConfigError::Invalid {
                    key,
                    origin,
                    message: err.into_inner().to_string(),
                }
            })?;
        settings
            .leaks
            .compile()
            .map_err(|bad| ConfigError::Invalid {
                origin: origins
                    .iter()
                    .find(|(k, _)| bad.key.starts_with(k.as_str()))
                    .map(|(_, var)| format!(" (from {var})"))
                    .unwrap_or_default(),
                key: bad.key,
                message: bad.message,
            })?;
        // The encryption key comes from the environment only, never from a config file.
        settings.store.key = crate::store::KeySource::from_env(env);
        settings.identity.secret = env
            .get(crate::identity::SECRET_ENV)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()));
        settings.integrations.orders_secret = env
            .get(crate::orders::SECRET_ENV)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()));
        settings
            .hours
            .compile()
            .map_err(|message| ConfigError::Invalid {
                key: "hours".into(),
                origin: String::new(),
                message,
            })?;
        settings.validate(&origins)?;
        Ok(settings)
    }
}

fn parse_table(text: &str, path: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_string(),
            message: e.to_string(),
        })
}

/// An environment value is read as a TOML value when it parses as one (numbers, booleans,
/// arrays), else as a plain string, so `KEFU__SERVER__LISTEN=127.0.0.1:9000` needs no quotes.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for segment in parents {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let s = Settings::embedded();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.limits.max_frame_bytes, 16 * 1024);
        assert_eq!(s.limits.max_text_chars, 2000);
        assert_eq!(s.session.grace_period_s, 120);
    }

    #[test]
    fn environment_overrides_keys_with_typed_values() {
        let s = Settings::load(
            None,
            &env(&[
                ("KEFU__SERVER__LISTEN", "127.0.0.1:9000"),
                ("KEFU__LIMITS__MAX_TEXT_CHARS", "50"),
                ("KEFU__GREETING__CHANNELS__H5__EN", "hi from h5"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9000);
        assert_eq!(s.limits.max_text_chars, 50);
        use crate::protocol::{Channel, Lang};
        assert_eq!(s.greeting.script(Channel::H5, Lang::En), "hi from h5");
        assert_eq!(s.greeting.script(Channel::H5, Lang::Zh), s.greeting.zh);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::load(None, &env(&[("KEFU__SERVER__LISTN", "x")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("server"), "{text}");
        assert!(text.contains("listn"), "{text}");
        assert!(text.contains("KEFU__SERVER__LISTN"), "{text}");
    }

    #[test]
    fn bad_value_names_key_and_expectation() {
        let err =
            Settings::load(None, &env(&[("KEFU__LIMITS__MAX_FRAME_BYTES", "lots")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("limits.max_frame_bytes"), "{text}");
        assert!(text.contains("KEFU__LIMITS__MAX_FRAME_BYTES"), "{text}");
        assert!(text.contains("expected"), "{text}");
        let err = Settings::load(None, &env(&[("KEFU__SERVER__LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("server.listen"), "{err}");
    }

    #[test]
    fn file_layer_overrides_only_what_it_sets() {
        let dir = std::env::temp_dir().join(format!("kefu-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("override.toml");
        std::fs::write(&file, "[session]\ngrace_period_s = 5\n").unwrap();
        let s = Settings::load(Some(&file), &HashMap::new()).unwrap();
        assert_eq!(s.session.grace_period_s, 5);
        assert_eq!(s.session.replay_frames, 512);
        std::fs::write(&file, "[session\n").unwrap();
        let err = Settings::load(Some(&file), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("override.toml"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
