//! The agent roster (`[agents] file`): who may sign in, their skill groups and capacities.
//!
//! Tokens are stored only as argon2 hashes (`kefu-gateway hash-token TOKEN`). Verifying one is
//! deliberately slow, so it runs on the blocking pool behind a small semaphore (a flood of bad
//! tokens cannot starve the node), and a token of the form `AGENT_ID.SECRET` is checked only
//! against that agent's hash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::files::Watched;
use crate::signin::RosterKeys;
use crate::telemetry::metric;

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("cannot read the agent roster {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("agent roster {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot hash the token: {0}")]
    Hash(String),
}

/// One agent of the roster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    pub capacity: u32,
    pub token_hash: String,
    /// Two-step sign-in: the secret sealed with the store key (`kefu-gateway totp-enroll
    /// ID`). An entry with it is enrolled and must give a code.
    #[serde(default)]
    pub totp: Option<String>,
    /// `totp`, opened at load (a value that does not open stops the load).
    #[serde(skip)]
    pub otp: Option<crate::signin::TotpSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    #[serde(default)]
    agent: Vec<AgentEntry>,
}

/// A validated roster.
#[derive(Debug, Default)]
pub struct Roster {
    agents: Vec<AgentEntry>,
}

impl Roster {
    pub fn parse(text: &str, path: &str) -> Result<Roster, RosterError> {
        Self::parse_with(text, path, &RosterKeys::none())
    }

    /// As [`Self::parse`], opening enrolled entries' `totp` with `keys`.
    pub fn parse_with(text: &str, path: &str, keys: &RosterKeys) -> Result<Roster, RosterError> {
        let invalid = |message: String| RosterError::Invalid {
            path: path.to_string(),
            message,
        };
        let mut file: RosterFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for (i, a) in file.agent.iter_mut().enumerate() {
            let which = format!("agent #{} ({:?})", i + 1, a.id);
            if a.id.is_empty() || a.id.contains('.') || a.id.len() > 64 {
                return Err(invalid(format!(
                    "{which}: id must be 1-64 bytes without '.'"
                )));
            }
            if !seen.insert(a.id.clone()) {
                return Err(invalid(format!("{which}: duplicate id")));
            }
            if a.groups.is_empty() {
                return Err(invalid(format!("{which}: groups must not be empty")));
            }
            if a.capacity == 0 {
                return Err(invalid(format!("{which}: capacity must be at least 1")));
            }
            PasswordHash::new(&a.token_hash).map_err(|e| {
                invalid(format!("{which}: token_hash is not an argon2 hash ({e}); use `kefu-gateway hash-token`"))
            })?;
            if let Some(sealed) = &a.totp {
                let opened = keys.open_totp(&a.id, sealed);
                a.otp = Some(opened.map_err(|e| invalid(format!("{which}: {e}")))?);
            }
        }
        Ok(Roster { agents: file.agent })
    }

    pub fn load(path: &Path, keys: &RosterKeys) -> Result<Roster, RosterError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RosterError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse_with(&text, &shown, keys)
    }

    pub fn get(&self, id: &str) -> Option<&AgentEntry> {
        self.agents.iter().find(|a| a.id == id)
    }

    pub fn agents(&self) -> &[AgentEntry] {
        &self.agents
    }

    /// The agent a token claims to be: `KNOWN_ID.SECRET`. Anything else is refused without
    /// hashing (cheap), so a bad token can cost at most one argon2 check, never one per agent.
    pub fn claimed(&self, token: &str) -> Option<&AgentEntry> {
        let (id, secret) = token.split_once('.')?;
        if secret.is_empty() {
            return None;
        }
        self.get(id)
    }

    /// The agent whose hash matches `token` (slow: call from a blocking thread).
    pub fn verify(&self, token: &str) -> Option<AgentEntry> {
        self.claimed(token)
            .filter(|a| verify_token(token, &a.token_hash))
            .cloned()
    }
}

/// The argon2 hash of a token, for the roster's `token_hash`.
pub fn hash_token(token: &str) -> Result<String, RosterError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| RosterError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| RosterError::Hash(e.to_string()))
}

pub(crate) fn verify_token(token: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(token.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Why a sign-in did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Bad or unknown token (401).
    Refused,
    /// Too many verifications in flight (503).
    Busy,
}

/// argon2 checks run at once (each takes a core for tens of milliseconds).
const VERIFY_WORKERS: usize = 2;

/// The live roster: reloadable, with bounded token verification.
pub struct RosterStore {
    current: RwLock<Arc<Roster>>,
    path: PathBuf,
    verifying: Arc<Semaphore>,
    /// Admission to `verifying`: bounds the sign-ins waiting for a worker.
    queue: Arc<Semaphore>,
    /// The roster file as last loaded, to notice edits.
    watched: Watched,
    keys: RosterKeys,
}

impl RosterStore {
    /// Loads the roster at start (blocking is fine there).
    /// `queue` bounds the sign-ins allowed to wait or run at once (`limits.sign_in_queue`).
    /// `keys` opens enrolled entries' `totp`, now and on every reload.
    pub fn load(path: &Path, queue: usize, keys: RosterKeys) -> Result<RosterStore, RosterError> {
        let path = crate::files::resolve_path(path);
        let roster = Roster::load(&path, &keys)?;
        tracing::info!(path = %path.display(), agents = roster.agents.len(), "agent roster loaded");
        Ok(RosterStore {
            current: RwLock::new(Arc::new(roster)),
            watched: Watched::new(path.clone()),
            path,
            verifying: Arc::new(Semaphore::new(VERIFY_WORKERS)),
            queue: Arc::new(Semaphore::new(queue.max(1))),
            keys,
        })
    }

    /// The roster name of an agent (its id if unknown).
    pub fn name_of(&self, id: &str) -> String {
        self.current()
            .get(id)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn current(&self) -> Arc<Roster> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks a token on the blocking pool. A token that names no known agent is refused at
    /// once; when the verification queue is full the answer is [`AuthError::Busy`] at once
    /// (fail fast: a sign-in flood must not pile up waiting connections).
    pub async fn authenticate(&self, token: String) -> Result<AgentEntry, AuthError> {
        let roster = self.current();
        if roster.claimed(&token).is_none() {
            return Err(AuthError::Refused);
        }
        let Ok(_queued) = self.queue.clone().try_acquire_owned() else {
            metrics::counter!(metric::AUTH_BUSY_TOTAL).increment(1);
            return Err(AuthError::Busy);
        };
        let _worker = self
            .verifying
            .acquire()
            .await
            .map_err(|_| AuthError::Busy)?;
        tokio::task::spawn_blocking(move || roster.verify(&token))
            .await
            .map_err(|_| AuthError::Busy)?
            .ok_or(AuthError::Refused)
    }

    /// Reloads when the file changed; a bad file is refused and the old roster kept.
    pub async fn reload_if_changed(&self) {
        let print = self.watched.now().await;
        if !self.watched.differs(&print) {
            return;
        }
        self.watched.saw(print);
        let path = self.path.clone();
        let keys = self.keys.clone();
        let Ok(loaded) = tokio::task::spawn_blocking(move || Roster::load(&path, &keys)).await
        else {
            return;
        };
        match loaded {
            Ok(roster) => {
                tracing::info!(agents = roster.agents.len(), "agent roster reloaded");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(roster);
            }
            Err(err) => {
                tracing::error!(error = %err, "new agent roster refused; keeping the old one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster_with(token: &str) -> Roster {
        let hash = hash_token(token).unwrap();
        let text = format!(
            "[[agent]]\nid = \"a01\"\nname = \"小王\"\ngroups = [\"pre_sale\"]\ncapacity = 3\ntoken_hash = \"{hash}\"\n\
             [[agent]]\nid = \"a02\"\nname = \"小李\"\ngroups = [\"after_sale\"]\ncapacity = 3\ntoken_hash = \"{}\"\n",
            hash_token("other").unwrap()
        );
        Roster::parse(&text, "test").unwrap()
    }

    #[test]
    fn tokens_verify_against_their_hash_only() {
        let roster = roster_with("a01.secret");
        assert_eq!(roster.verify("a01.secret").unwrap().id, "a01");
        assert!(roster.verify("a01.wrong").is_none());
        assert!(roster.verify("a02.secret").is_none());
        // Not of the form KNOWN_ID.SECRET: refused without hashing, whatever it would match.
        assert!(roster.claimed("other").is_none());
        assert!(roster.verify("other").is_none());
        assert!(roster.claimed("a09.secret").is_none());
        assert!(roster.claimed("a01.").is_none());
    }

    #[test]
    fn bad_rosters_are_refused_with_the_reason() {
        let err = Roster::parse("[[agent]]\nid = \"a\"\n", "r.toml").unwrap_err();
        assert!(err.to_string().contains("r.toml"), "{err}");
        let text = "[[agent]]\nid = \"a\"\nname = \"n\"\ngroups = [\"g\"]\ncapacity = 1\ntoken_hash = \"plain\"\n";
        let err = Roster::parse(text, "r.toml").unwrap_err();
        assert!(err.to_string().contains("hash-token"), "{err}");
    }
}
