//! Where each account signed in from, for the `new_sign_in` alerts.
//!
//! Addresses and user agents are kept only as keyed hashes (the key derived from the store
//! key, or random per process without one), per account, with when they were last used. The
//! store's `kefu_sign_ins` table is the durable copy (rows unused for `sign_in.history_days`
//! are deleted); a bounded map in memory answers repeated sign-ins without a query, and is
//! the only copy when the store is off.

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use blake2::digest::Mac;
use dashmap::DashMap;
use rand::Rng;

use crate::session::now_ms;
use crate::store::{KeyRing, Store};

/// What is new about a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Novelty {
    /// The account has no sign-in in the window at all.
    pub first: bool,
    pub new_ip: bool,
    pub new_user_agent: bool,
}

#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    digest: String,
    last_ms: u64,
}

/// Addresses and user agents remembered per account in memory (oldest forgotten first).
const PER_ACCOUNT: usize = 32;
/// A sign-in already known is written to the store again at most this often.
const TOUCH_EVERY_MS: u64 = 3_600_000;

pub struct History {
    memory: DashMap<String, Vec<Seen>>,
    key: [u8; 32],
    store: Option<Arc<Store>>,
    window_ms: u64,
    max_accounts: usize,
}

impl History {
    pub fn new(
        keys: Option<&KeyRing>,
        store: Option<Arc<Store>>,
        window_days: u64,
        max_accounts: usize,
    ) -> Self {
        let key = keys
            .and_then(|k| k.derived_key("kefu sign-in history v1"))
            .unwrap_or_else(|| rand::rng().random());
        Self {
            memory: DashMap::new(),
            key,
            store,
            window_ms: window_days.saturating_mul(86_400_000),
            max_accounts: max_accounts.max(1),
        }
    }

    /// The keyed hash of `value` (of `kind`), as stored and audited.
    pub fn digest(&self, kind: &str, value: &str) -> String {
        let Ok(mut mac) = blake2::Blake2bMac512::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        B64.encode(&mac.finalize().into_bytes()[..16])
    }

    /// Remembers a successful sign-in of `account`; says what is new about it, if anything.
    pub async fn record(&self, account: &str, ip: IpAddr, user_agent: &str) -> Option<Novelty> {
        let now = now_ms();
        let since = now.saturating_sub(self.window_ms);
        let seen = [
            ("ip", self.digest("ip", &ip.to_string())),
            ("ua", self.digest("ua", user_agent)),
        ];
        let (in_memory, known, due) = self.remember(account, &seen, now, since);
        if !due {
            return None;
        }
        let mut novelty = Novelty {
            first: !in_memory,
            new_ip: !known[0],
            new_user_agent: !known[1],
        };
        if let Some(store) = &self.store {
            match store.sign_ins_since(account, since).await {
                Ok(rows) => {
                    let has = |(kind, digest): &(&str, String)| {
                        rows.iter().any(|(k, d)| k == kind && d == digest)
                    };
                    novelty = Novelty {
                        first: rows.is_empty(),
                        new_ip: !has(&seen[0]),
                        new_user_agent: !has(&seen[1]),
                    };
                }
                Err(err) => tracing::error!(error = %err, "cannot read the sign-in history"),
            }
            for (kind, digest) in &seen {
                if let Err(err) = store.touch_sign_in(account, kind, digest, now).await {
                    tracing::error!(error = %err, "cannot write the sign-in history");
                }
            }
        }
        (novelty.new_ip || novelty.new_user_agent).then_some(novelty)
    }

    /// Marks `seen` used now in memory (before any await, so a second sign-in racing this one
    /// does not raise the alert again). Returns whether the account was in memory, which of
    /// `seen` were known within the window, and whether the store must be asked or written.
    fn remember(
        &self,
        account: &str,
        seen: &[(&'static str, String); 2],
        now: u64,
        since: u64,
    ) -> (bool, [bool; 2], bool) {
        if self.memory.len() >= self.max_accounts && !self.memory.contains_key(account) {
            self.make_room(since);
        }
        let in_memory = self.memory.contains_key(account);
        let mut entries = self.memory.entry(account.to_string()).or_default();
        entries.retain(|s| s.last_ms >= since);
        let mut known = [false; 2];
        let mut due = false;
        for (i, (kind, digest)) in seen.iter().enumerate() {
            match entries
                .iter_mut()
                .find(|s| s.kind == *kind && s.digest == *digest)
            {
                Some(s) => {
                    known[i] = true;
                    due |= s.last_ms + TOUCH_EVERY_MS < now;
                    s.last_ms = now;
                }
                None => {
                    due = true;
                    entries.push(Seen {
                        kind,
                        digest: digest.clone(),
                        last_ms: now,
                    });
                }
            }
        }
        if entries.len() > PER_ACCOUNT {
            entries.sort_by_key(|s| std::cmp::Reverse(s.last_ms));
            entries.truncate(PER_ACCOUNT);
        }
        (in_memory, known, due)
    }

    /// Forgets accounts with nothing in the window, then, if still full, the one signed in
    /// longest ago (with the store on, it still knows them).
    fn make_room(&self, since: u64) {
        self.memory
            .retain(|_, entries| entries.iter().any(|s| s.last_ms >= since));
        if self.memory.len() < self.max_accounts {
            return;
        }
        let oldest = self
            .memory
            .iter()
            .min_by_key(|e| e.value().iter().map(|s| s.last_ms).max().unwrap_or(0))
            .map(|e| e.key().clone());
        if let Some(account) = oldest {
            self.memory.remove(&account);
        }
    }

    /// Deletes history older than the window, in memory and in the store.
    pub async fn prune(&self) {
        let since = now_ms().saturating_sub(self.window_ms);
        self.memory.retain(|_, entries| {
            entries.retain(|s| s.last_ms >= since);
            !entries.is_empty()
        });
        if let Some(store) = &self.store {
            match store.prune_sign_ins(since).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "old sign-in history deleted"),
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "cannot prune the sign-in history"),
            }
        }
    }
}

/// An address with its host part hidden: `203.0.113.x`, or the /48 of an IPv6 address.
pub fn masked_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_new_addresses_and_agents_are_news() {
        let history = History::new(None, None, 30, 2);
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let away: IpAddr = "10.0.9.9".parse().unwrap();
        let first = history.record("agent:a01", home, "ua-1").await.unwrap();
        assert!(first.first && first.new_ip && first.new_user_agent);
        assert_eq!(history.record("agent:a01", home, "ua-1").await, None);
        let moved = history.record("agent:a01", away, "ua-1").await.unwrap();
        assert!(!moved.first && moved.new_ip && !moved.new_user_agent);
        // Bounded: a third account pushes out the one signed in longest ago.
        history.record("agent:a02", home, "ua-1").await;
        history.record("agent:a03", home, "ua-1").await;
        assert!(history.memory.len() <= 2);
        assert_eq!(masked_ip(away), "10.0.9.x");
    }
}
