//! The shop's order data (issue #18): for an identified customer, the gateway asks the shop's
//! own endpoint (`GET {integrations.orders_url}?customer=SUB`, HMAC-signed) for their recent
//! orders, so the agent sees them beside the chat and the bot can answer "where is my parcel"
//! with the real status.
//!
//! The shop's endpoint is someone else's service on sale day: every lookup is bounded in time
//! (`orders_timeout_ms`, the wait for a free slot included) and in number
//! (`orders_concurrency`), answers are cached briefly per customer and failures for a few
//! seconds (so a dead endpoint costs one timeout per customer, not one per question), and two
//! questions at once share one request. Nothing the shop says about a customer is logged.

mod answer;
mod shop;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Deserialize;
use tokio::sync::{OnceCell, Semaphore};

pub use answer::{agent_request, bot_text};
pub use shop::{signature, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::protocol::ShopOrder;
use crate::redact::Secret;
use crate::telemetry::metric;

/// Environment variable holding the request-signing secret.
pub const SECRET_ENV: &str = "KEFU_ORDERS_SECRET";

/// Customers whose orders are cached at once; past it, lookups go uncached.
const MAX_CACHED: usize = 20_000;
/// How long a failed lookup is remembered (the next question falls back at once).
const FAILURE_TTL: Duration = Duration::from_secs(5);
/// Shortest signing secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;

/// `[integrations]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSettings {
    /// The shop's order endpoint (`http(s)://…`); empty: no order data.
    #[serde(default)]
    pub orders_url: String,
    /// Longest a lookup may take, the wait for a free slot included.
    #[serde(default = "default_timeout_ms")]
    pub orders_timeout_ms: u64,
    /// Lookups in flight at once on a node.
    #[serde(default = "default_concurrency")]
    pub orders_concurrency: usize,
    /// How long a customer's orders are reused (seconds).
    #[serde(default = "default_cache_s")]
    pub orders_cache_s: u64,
    /// A file holding the signing secret (first line); else [`SECRET_ENV`], else the identity
    /// secret (the shop's backend already shares that one).
    #[serde(default)]
    pub orders_secret_file: PathBuf,
    /// Filled from the environment by [`crate::Settings::load`].
    #[serde(skip)]
    pub orders_secret: Option<Secret>,
}

fn default_timeout_ms() -> u64 {
    800
}
fn default_concurrency() -> usize {
    32
}
fn default_cache_s() -> u64 {
    30
}

impl Default for IntegrationSettings {
    fn default() -> Self {
        IntegrationSettings {
            orders_url: String::new(),
            orders_timeout_ms: default_timeout_ms(),
            orders_concurrency: default_concurrency(),
            orders_cache_s: default_cache_s(),
            orders_secret_file: PathBuf::new(),
            orders_secret: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("integrations.orders_url `{0}` is not an http(s) URL with a host")]
    Url(String),
    #[error("integrations.orders_secret_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "integrations.orders_url needs a signing secret ({SECRET_ENV}, \
         integrations.orders_secret_file or the identity secret) of at least \
         {MIN_SECRET_BYTES} bytes"
    )]
    NoSecret,
    #[error("integrations: {0}")]
    Client(String),
}

/// Why a lookup has no orders to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `orders_timeout_ms`.
    Timeout,
    /// The connection failed or broke.
    Error,
    /// The endpoint answered with a status other than 2xx.
    Refused,
    /// The answer was not the expected JSON, or too large.
    BadAnswer,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Error => "error",
            Failure::Refused => "refused",
            Failure::BadAnswer => "bad_answer",
        }
    }
}

type Lookup = Result<Arc<Vec<ShopOrder>>, Failure>;

struct Cached {
    at: Instant,
    cell: Arc<OnceCell<Lookup>>,
}

/// The client of the shop's order endpoint, shared by the node.
pub struct Orders {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    timeout: Duration,
    cache_ttl: Duration,
    permits: Semaphore,
    cache: DashMap<String, Cached>,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Orders")
    }
}

impl Orders {
    /// The client for `settings`, or `None` when no endpoint is configured. Reads the secret
    /// file: call off the runtime.
    pub fn load(
        settings: &IntegrationSettings,
        identity: &crate::identity::IdentitySettings,
    ) -> Result<Option<Orders>, OrdersError> {
        if settings.orders_url.trim().is_empty() {
            return Ok(None);
        }
        let url = parse_url(&settings.orders_url)?;
        let secret = match &settings.orders_secret {
            Some(s) => s.clone(),
            None if !settings.orders_secret_file.as_os_str().is_empty() => {
                read_secret(&settings.orders_secret_file)?
            }
            None => match &identity.secret {
                Some(s) => s.clone(),
                None if !identity.secret_file.as_os_str().is_empty() => {
                    read_secret(&identity.secret_file)?
                }
                None => return Err(OrdersError::NoSecret),
            },
        };
        if secret.expose().len() < MIN_SECRET_BYTES {
            return Err(OrdersError::NoSecret);
        }
        let timeout = Duration::from_millis(settings.orders_timeout_ms.max(1));
        let concurrency = settings.orders_concurrency.max(1);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(concurrency)
            // A redirect would carry the signed request somewhere the shop did not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kefu-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OrdersError::Client(e.to_string()))?;
        Ok(Some(Orders {
            client,
            url,
            secret,
            timeout,
            cache_ttl: Duration::from_secs(settings.orders_cache_s),
            permits: Semaphore::new(concurrency),
            cache: DashMap::new(),
        }))
    }

    /// The customer's recent orders, newest first (as the shop lists them). `shop_id` is the
    /// shop's id of the customer, `customer` their hash (the cache key). Never takes longer
    /// than `orders_timeout_ms`.
    pub async fn recent(&self, shop_id: &str, customer: &str) -> Lookup {
        let Some(cell) = self.cell(customer) else {
            return self.fetch(shop_id).await;
        };
        if let Some(done) = cell.get() {
            metrics::counter!(metric::ORDER_LOOKUPS_TOTAL, "outcome" => "cached").increment(1);
            return done.clone();
        }
        cell.get_or_init(|| self.fetch(shop_id)).await.clone()
    }

    /// The cache cell of `customer`: a fresh one when there is none or it has aged out;
    /// `None` when the cache is full of fresh entries.
    fn cell(&self, customer: &str) -> Option<Arc<OnceCell<Lookup>>> {
        let now = Instant::now();
        let fresh = |c: &Cached| match c.cell.get() {
            None => true, // in flight: join it
            Some(Ok(_)) => now.duration_since(c.at) < self.cache_ttl,
            Some(Err(_)) => now.duration_since(c.at) < FAILURE_TTL.min(self.cache_ttl),
        };
        if let Some(c) = self.cache.get(customer).filter(|c| fresh(c)) {
            return Some(c.cell.clone());
        }
        if self.cache.len() >= MAX_CACHED {
            self.cache.retain(|_, c| fresh(c));
            if self.cache.len() >= MAX_CACHED {
                return None;
            }
        }
        let cell = Arc::new(OnceCell::new());
        let mut entry = self.cache.entry(customer.to_string()).or_insert(Cached {
            at: now,
            cell: cell.clone(),
        });
        if !fresh(&entry) {
            *entry = Cached {
                at: now,
                cell: cell.clone(),
            };
        }
        Some(entry.cell.clone())
    }

    /// One request, bounded by the timeout (the wait for a slot included), counted.
    async fn fetch(&self, shop_id: &str) -> Lookup {
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, async {
            let _permit = self.permits.acquire().await.map_err(|_| Failure::Error)?;
            shop::request(&self.client, &self.url, &self.secret, shop_id).await
        })
        .await
        .unwrap_or(Err(Failure::Timeout));
        metrics::histogram!(metric::ORDER_LOOKUP_SECONDS).record(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(failure) => failure.label(),
        };
        metrics::counter!(metric::ORDER_LOOKUPS_TOTAL, "outcome" => outcome).increment(1);
        if let Err(failure) = &answer {
            tracing::warn!(outcome = failure.label(), "order lookup failed");
        }
        answer.map(Arc::new)
    }
}

/// `http(s)://host…`, as the settings check and the client both need it.
pub fn parse_url(raw: &str) -> Result<reqwest::Url, OrdersError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| OrdersError::Url(raw.into()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(OrdersError::Url(raw.into()));
    }
    Ok(url)
}

fn read_secret(path: &std::path::Path) -> Result<Secret, OrdersError> {
    let text = std::fs::read_to_string(path).map_err(|source| OrdersError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Secret::new(text.lines().next().unwrap_or("").trim()))
}
