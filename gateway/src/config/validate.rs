//! Rules of the settings that serde cannot express, checked at every load (start and
//! `check-config` alike), so a bad value stops the gateway with the key named.

use std::collections::HashMap;

use super::{ConfigError, Settings};

/// `http(s)://host[:port]`, nothing else (the value goes into a CSP header verbatim).
fn is_origin(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    })
}

/// Shortest `server.admin_token` accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;

impl Settings {
    /// Rules serde cannot express. A short admin token can be guessed online even with the
    /// failure throttle, and it guards every stored conversation.
    pub(super) fn validate(&self, origins: &HashMap<String, String>) -> Result<(), ConfigError> {
        for (key, list) in [
            ("server.widget_origins", &self.server.widget_origins),
            ("server.allowed_origins", &self.server.allowed_origins),
        ] {
            if let Some(bad) = list.iter().find(|o| !is_origin(o)) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    origin: String::new(),
                    message: format!(
                        "`{bad}` is not an origin like https://shop.example.com[:port]"
                    ),
                });
            }
        }
        let token = self.server.admin_token.expose();
        if !token.is_empty() && token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            let key = "server.admin_token";
            return Err(ConfigError::Invalid {
                key: key.into(),
                origin: origins
                    .get(key)
                    .map(|v| format!(" (from {v})"))
                    .unwrap_or_default(),
                message: format!(
                    "is {} characters; use at least {MIN_ADMIN_TOKEN_CHARS} (or leave it empty to \
                     disable the admin API)",
                    token.chars().count()
                ),
            });
        }
        let origin_of = |key: &str| {
            origins
                .get(key)
                .map(|v| format!(" (from {v})"))
                .unwrap_or_default()
        };
        // What start-up would refuse later is refused here, so `check-config` agrees with it.
        if self.store.enabled() {
            let min = crate::store::MIN_RETENTION_DAYS;
            if self.store.retention_days < min {
                let key = "store.retention_days";
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    origin: origin_of(key),
                    message: format!(
                        "is {}; transcripts are kept at least {min} days (six months)",
                        self.store.retention_days
                    ),
                });
            }
            for (key, value) in [
                ("store.queue", self.store.queue),
                ("store.batch", self.store.batch),
            ] {
                if value == 0 {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        origin: origin_of(key),
                        message: "must be at least 1".into(),
                    });
                }
            }
        }
        self.validate_integrations(&origin_of)?;
        let mut dispatch = self.dispatch.clone();
        if dispatch.redis_url.as_deref() == Some("") {
            dispatch.redis_url = None;
        }
        if let Err(err) = dispatch.validate() {
            return Err(ConfigError::Invalid {
                key: "dispatch".into(),
                origin: String::new(),
                message: err.to_string(),
            });
        }
        Ok(())
    }

    /// The order endpoint: a URL the client can use, limits that let a lookup happen, and a
    /// secret to sign with (a file's is checked when it is read, at start).
    fn validate_integrations(&self, origin_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let orders = &self.integrations;
        if orders.orders_url.trim().is_empty() {
            return Ok(());
        }
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            origin: origin_of(key),
            message,
        };
        if let Err(err) = crate::orders::parse_url(&orders.orders_url) {
            return Err(invalid("integrations.orders_url", err.to_string()));
        }
        if !(1..=30_000).contains(&orders.orders_timeout_ms) {
            let message = "must be 1 to 30000 (ms); the default is 800".to_string();
            return Err(invalid("integrations.orders_timeout_ms", message));
        }
        if orders.orders_concurrency == 0 {
            let message = "must be at least 1".to_string();
            return Err(invalid("integrations.orders_concurrency", message));
        }
        let from_files = !orders.orders_secret_file.as_os_str().is_empty()
            || !self.identity.secret_file.as_os_str().is_empty();
        let from_env = orders
            .orders_secret
            .as_ref()
            .or(self.identity.secret.as_ref())
            .map(|s| s.expose().len());
        let short = from_env.is_some_and(|n| n < crate::orders::MIN_SECRET_BYTES);
        if (from_env.is_none() && !from_files) || (short && orders.orders_secret.is_some()) {
            let err = crate::orders::OrdersError::NoSecret;
            return Err(invalid("integrations.orders_url", err.to_string()));
        }
        Ok(())
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
    fn what_start_up_refuses_the_load_refuses_too() {
        let err = Settings::load(None, &env(&[("KEFU__STORE__RETENTION_DAYS", "30")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.retention_days"), "{err}");
        let err = Settings::load(None, &env(&[("KEFU__DISPATCH__BACKEND", "redis")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis_url"), "{err}");
        // Without a store, its retention does not matter.
        let ok = env(&[
            ("KEFU__STORE__URL", ""),
            ("KEFU__STORE__RETENTION_DAYS", "30"),
        ]);
        assert!(Settings::load(None, &ok).is_ok());
    }

    #[test]
    fn the_order_endpoint_is_checked_at_load() {
        let url = (
            "KEFU__INTEGRATIONS__ORDERS_URL",
            "http://127.0.0.1:9/orders",
        );
        let secret = (crate::orders::SECRET_ENV, "0123456789abcdef");
        let err = Settings::load(None, &env(&[url])).unwrap_err().to_string();
        assert!(err.contains("signing secret"), "{err}");
        assert!(Settings::load(None, &env(&[url, secret])).is_ok());
        let short = (crate::orders::SECRET_ENV, "short");
        let err = Settings::load(None, &env(&[url, short]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signing secret"), "{err}");
        let identity = (crate::identity::SECRET_ENV, "0123456789abcdef0123");
        assert!(Settings::load(None, &env(&[url, identity])).is_ok());
        for bad in ["ftp://shop/orders", "not a url", "http://"] {
            let url = ("KEFU__INTEGRATIONS__ORDERS_URL", bad);
            let err = Settings::load(None, &env(&[url, secret]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("integrations.orders_url"), "{bad}: {err}");
            assert!(
                err.contains("KEFU__INTEGRATIONS__ORDERS_URL"),
                "{bad}: {err}"
            );
        }
        let slow = ("KEFU__INTEGRATIONS__ORDERS_TIMEOUT_MS", "0");
        let err = Settings::load(None, &env(&[url, secret, slow]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("orders_timeout_ms"), "{err}");
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let err = Settings::load(None, &env(&[("KEFU__SERVER__ADMIN_TOKEN", "short-token")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.admin_token"), "{err}");
        assert!(err.contains("KEFU__SERVER__ADMIN_TOKEN"), "{err}");
        let long = "x".repeat(MIN_ADMIN_TOKEN_CHARS);
        assert!(Settings::load(None, &env(&[("KEFU__SERVER__ADMIN_TOKEN", &long)])).is_ok());
    }
}
