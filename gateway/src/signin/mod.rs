//! Two-step sign-in and abnormal sign-in alerts (issue #16).
//!
//! - [`totp`]: RFC 6238 codes; a roster entry with `totp = "…"` (the secret sealed with the
//!   store key by `kefu-gateway totp-enroll ID`) is enrolled and must give a code;
//! - [`pass`]: after a good code, a signed pass (`otp_session`) stands in for new codes for
//!   `sign_in.pass_ttl_s`, so a polling page or a reconnecting console asks only once;
//! - [`history`]: where each account signed in from; a new address or user agent is audited
//!   (`new_sign_in`), counted and pushed to supervisors through [`alerts`]
//!   (`GET /ws/supervisor`), which also carries the leak-rule blocks.
//!
//! The agent socket's second step is [`agent_step`]; operators' is in
//! [`crate::admin::authorize`].

pub mod agent_step;
pub mod alerts;
pub mod history;
pub mod pass;
pub mod totp;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::HeaderName;
use serde_json::json;

use crate::config::sign_in::SignInSettings;
use crate::protocol::ErrorCode;
use crate::session::now_ms;
use crate::store::{AuditEntry, KeyRing, Store, StoreSettings};
use crate::telemetry::metric;
pub use totp::TotpSecret;

/// Header with an operator's 6-digit code.
pub const OTP_HEADER: HeaderName = HeaderName::from_static("x-kefu-otp");
/// Header with an operator's sign-in pass (from `POST /admin/otp-session`).
pub const PASS_HEADER: HeaderName = HeaderName::from_static("x-kefu-otp-session");

/// The store's key ring as the rosters need it to open `totp` values: loaded once at start
/// whether or not the store is on; why it could not be loaded is kept, and only matters
/// (as a start-up error naming the entry) when some entry is enrolled.
#[derive(Clone)]
pub struct RosterKeys(Arc<Result<KeyRing, String>>);

impl RosterKeys {
    /// Reads the key from the environment or `store.key_file` (blocking: call at start).
    pub fn load(store: &StoreSettings) -> Self {
        let key_file = if store.key_file.as_os_str().is_empty() {
            PathBuf::new()
        } else {
            crate::files::resolve_path(&store.key_file)
        };
        Self(Arc::new(
            KeyRing::load(&store.key, &key_file).map_err(|e| e.to_string()),
        ))
    }

    /// No key at all (rosters without enrolled entries, tests).
    pub fn none() -> Self {
        Self(Arc::new(Err("no store key was given".into())))
    }

    pub fn ring(&self) -> Option<&KeyRing> {
        self.0.as_ref().as_ref().ok()
    }

    /// The secret of entry `id`'s `totp` value, or why not (for the roster's error).
    pub fn open_totp(&self, id: &str, sealed: &str) -> Result<TotpSecret, String> {
        match self.0.as_ref() {
            Ok(keys) => totp::open(keys, id, sealed).map_err(|e| {
                format!("totp does not open with the store key ({e}); enroll again with `kefu-gateway totp-enroll {id}`")
            }),
            Err(why) => Err(format!("totp needs the store key to open: {why}")),
        }
    }
}

/// Why a second step failed; each is a stable protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpError {
    /// The account is enrolled and no code (or no valid pass) was given.
    Required,
    /// A wrong, stale or already used code, or a forged pass.
    Bad,
}

impl OtpError {
    pub fn code(self) -> ErrorCode {
        match self {
            OtpError::Required => ErrorCode::OtpRequired,
            OtpError::Bad => ErrorCode::BadOtp,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            OtpError::Required => {
                "otp_required: this account signs in with a 6-digit code from its authenticator app"
            }
            OtpError::Bad => "bad_otp: the code is wrong, expired or already used",
        }
    }
}

/// An account signing in.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    /// `agent` or `operator`.
    pub role: &'static str,
    pub id: &'a str,
    pub secret: Option<&'a TotpSecret>,
    /// Its token hash: passes are bound to it, so changing the token ends them.
    pub token_hash: &'a str,
}

impl Account<'_> {
    fn key(&self) -> String {
        format!("{}:{}", self.role, self.id)
    }
}

/// The node's two-step checks, sign-in history and alert channel.
pub struct SignIn {
    used: totp::UsedCodes,
    passes: pass::Passes,
    history: history::History,
    pub alerts: alerts::Alerts,
    store: Option<Arc<Store>>,
    /// `sign_in.otp_frame_timeout_ms`.
    pub frame_timeout: std::time::Duration,
}

impl SignIn {
    pub fn new(keys: &RosterKeys, store: Option<Arc<Store>>, settings: &SignInSettings) -> Self {
        Self {
            used: totp::UsedCodes::default(),
            passes: pass::Passes::new(keys.ring(), settings.pass_ttl_s),
            history: history::History::new(
                keys.ring(),
                store.clone(),
                settings.history_days,
                settings.history_accounts,
            ),
            alerts: alerts::Alerts::new(settings.alert_queue),
            store,
            frame_timeout: std::time::Duration::from_millis(settings.otp_frame_timeout_ms),
        }
    }

    /// Whether `pass` stands in for a code for `account` (always, when not enrolled).
    pub fn pass_ok(&self, account: &Account<'_>, pass: Option<&str>) -> bool {
        account.secret.is_none()
            || pass.is_some_and(|p| self.passes.check(&account.key(), account.token_hash, p))
    }

    /// Checks a code (good once, within a step either side); a good one earns a pass.
    pub fn check_code(
        &self,
        account: &Account<'_>,
        code: Option<&str>,
    ) -> Result<Option<(String, u64)>, OtpError> {
        let Some(secret) = account.secret else {
            return Ok(None);
        };
        let code = code.map(str::trim).ok_or(OtpError::Required)?;
        if !self.used.accept(&account.key(), secret, code) {
            return Err(OtpError::Bad);
        }
        Ok(self.passes.issue(&account.key(), account.token_hash))
    }

    /// After a successful sign-in: checked against the history in the background; from an
    /// address or user agent new to the account, it is audited (`new_sign_in`, the address
    /// masked and both hashed), counted (`kefu_sign_in_alerts_total{role}`) and pushed to
    /// supervisors. Neither value is logged.
    pub fn signed_in(self: &Arc<Self>, role: &'static str, id: &str, ip: IpAddr, user_agent: &str) {
        let this = self.clone();
        let id = id.to_string();
        let user_agent: String = user_agent.chars().take(512).collect();
        tokio::spawn(async move {
            let account = format!("{role}:{id}");
            let Some(new) = this.history.record(&account, ip, &user_agent).await else {
                return;
            };
            metrics::counter!(metric::SIGN_IN_ALERTS_TOTAL, "role" => role).increment(1);
            tracing::info!(role, account = %id, first = new.first, new_ip = new.new_ip, new_user_agent = new.new_user_agent, "new sign-in");
            let at_ms = now_ms();
            let ip_shown = history::masked_ip(ip);
            if let Some(store) = &this.store {
                let entry = AuditEntry {
                    at_ms,
                    operator: account.clone(),
                    action: "new_sign_in".into(),
                    target: account.clone(),
                    peer: ip_shown.clone(),
                    detail: format!(
                        "first={} new_ip={} new_user_agent={} ip_hash={} ua_hash={}",
                        new.first,
                        new.new_ip,
                        new.new_user_agent,
                        this.history.digest("ip", &ip.to_string()),
                        this.history.digest("ua", &user_agent),
                    ),
                };
                if let Err(err) = store.audit(&entry).await {
                    tracing::error!(error = %err, "cannot audit a new sign-in");
                }
            }
            this.alerts.publish(&json!({
                "type": "alert",
                "kind": "new_sign_in",
                "role": role,
                "account": id,
                "first": new.first,
                "new_ip": new.new_ip,
                "new_user_agent": new.new_user_agent,
                "ip": ip_shown,
                "at_ms": at_ms,
            }));
        });
    }

    /// An agent message stopped by a leak rule: supervisors are told the rule and the chat,
    /// never the text.
    pub fn leak_blocked(&self, agent: &str, session: &str, rule: &str) {
        self.alerts.publish(&json!({
            "type": "alert",
            "kind": "leak_blocked",
            "rule": rule,
            "session": session,
            "agent": agent,
            "at_ms": now_ms(),
        }));
    }

    /// Deletes sign-in history older than `sign_in.history_days`.
    pub async fn prune(&self) {
        self.history.prune().await;
    }
}

/// What `kefu-gateway totp-enroll ID` prints: the secret for the authenticator app, its
/// `otpauth://` URI, and the roster line (the secret sealed with the store key).
pub fn enroll(keys: &RosterKeys, id: &str) -> Result<String, String> {
    let ring = match keys.0.as_ref() {
        Ok(ring) => ring,
        Err(why) => return Err(format!("totp-enroll needs the store key: {why}")),
    };
    let secret = TotpSecret::generate();
    let sealed = totp::seal(ring, id, &secret).map_err(|e| e.to_string())?;
    Ok(format!(
        "secret: {}\nuri: {}\nroster: totp = \"{sealed}\"\n",
        secret.base32(),
        totp::otpauth_uri(id, &secret)
    ))
}

/// `check-config`: the agent roster and the operators roster load, enrolled entries open.
pub fn check_rosters(settings: &crate::Settings) -> Result<(), String> {
    let keys = RosterKeys::load(&settings.store);
    let agents = crate::files::resolve_path(&settings.agents.file);
    crate::roster::Roster::load(&agents, &keys).map_err(|e| e.to_string())?;
    crate::operators::Operators::load(&settings.server.operators_file, &keys)
        .map_err(|e| format!("operators roster (server.operators_file): {e}"))?;
    Ok(())
}
