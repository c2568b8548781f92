//! Admission control: a global connection budget, a per-IP budget, and per-session rate
//! limiting. Refusals are cheap and counted; nothing here ever blocks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::telemetry::metric;

/// Why a connection was refused before its upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `limits.max_connections` already (HTTP 503).
    NodeFull,
    /// This address holds `limits.max_connections_per_ip` already (HTTP 429).
    PerIpLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NodeFull => "node_full",
            Refusal::PerIpLimit => "per_ip_limit",
        }
    }
}

/// Connection budgets shared by all sockets of the node.
pub struct ConnectionLimits {
    global: Arc<Semaphore>,
    max: u32,
    per_ip: DashMap<IpAddr, u32>,
    max_per_ip: u32,
}

/// Held for the lifetime of one WebSocket; returns both budgets on drop.
pub struct ConnectionPermit {
    _global: OwnedSemaphorePermit,
    ip: IpAddr,
    limits: Arc<ConnectionLimits>,
}

impl ConnectionLimits {
    pub fn new(max: u32, max_per_ip: u32) -> Arc<Self> {
        Arc::new(Self {
            global: Arc::new(Semaphore::new(max as usize)),
            max,
            per_ip: DashMap::new(),
            max_per_ip,
        })
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        {
            let mut count = self.per_ip.entry(ip).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(Refusal::PerIpLimit);
            }
            *count += 1;
        }
        match self.global.clone().try_acquire_owned() {
            Ok(permit) => Ok(ConnectionPermit {
                _global: permit,
                ip,
                limits: self.clone(),
            }),
            Err(_) => {
                self.release_ip(ip);
                Err(Refusal::NodeFull)
            }
        }
    }

    /// Connections held now.
    pub fn in_use(&self) -> usize {
        self.max as usize - self.global.available_permits()
    }

    /// Waits until every connection has ended, or `timeout` passes. Returns whether all ended.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let all = tokio::time::timeout(timeout, self.global.acquire_many(self.max)).await;
        matches!(all, Ok(Ok(_)))
    }

    fn release_ip(&self, ip: IpAddr) {
        // Remove the entry at zero so the map does not grow with every address ever seen.
        self.per_ip.remove_if_mut(&ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.release_ip(self.ip);
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            last: Instant::now(),
            rate,
            burst: f64::from(burst),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed sign-ins per client address within a one-minute window: past the allowance the
/// address is refused (429) before any token is looked at, so guessing is slow and a flood of
/// bad tokens cannot keep the argon2 workers busy. The map is bounded: when it is full and
/// nothing in it has expired, new addresses are not tracked (the argon2 queue still bounds
/// the work), rather than evicting an address that is being throttled.
pub struct FailureThrottle {
    failures: DashMap<IpAddr, (Instant, u32)>,
    allowed: u32,
    window: Duration,
}

/// Addresses tracked by one [`FailureThrottle`].
const THROTTLED_ADDRESSES: usize = 10_000;

impl FailureThrottle {
    pub fn new(allowed_per_minute: u32) -> Self {
        Self {
            failures: DashMap::new(),
            allowed: allowed_per_minute,
            window: Duration::from_secs(60),
        }
    }

    /// Whether `ip` has used up its failures for the current window.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.failures.get(&ip).is_some_and(|e| {
            now.saturating_duration_since(e.0) < self.window && e.1 >= self.allowed
        })
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        if self.failures.len() >= THROTTLED_ADDRESSES && !self.failures.contains_key(&ip) {
            let window = self.window;
            self.failures
                .retain(|_, e| now.saturating_duration_since(e.0) < window);
            if self.failures.len() >= THROTTLED_ADDRESSES {
                return;
            }
        }
        let mut entry = self.failures.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// What to do with an inbound frame, by the party's frame budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Within budget: handle it.
    Handle,
    /// Over budget: drop it and tell the client (`rate_limited`).
    DropAndTell,
    /// Over budget and told within the last second: drop it silently, so a flood cannot make
    /// the server write an error per frame (that would fill the flooder's own queue).
    Drop,
}

/// The budget every inbound frame of one party counts against (typing, junk, messages…).
#[derive(Debug, Clone)]
pub struct FrameBudget {
    bucket: RateLimiter,
    told_at: Option<Instant>,
}

impl FrameBudget {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            bucket: RateLimiter::new(rate, burst),
            told_at: None,
        }
    }

    pub fn take(&mut self, now: Instant) -> FrameVerdict {
        if self.bucket.try_take(now) {
            return FrameVerdict::Handle;
        }
        metrics::counter!(metric::FRAMES_DROPPED_TOTAL, "reason" => "over_budget").increment(1);
        let tell = self
            .told_at
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if tell {
            self.told_at = Some(now);
            FrameVerdict::DropAndTell
        } else {
            FrameVerdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_global_budgets() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let _p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Refusal::PerIpLimit));
        let _p3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Refusal::NodeFull));
        assert_eq!(limits.in_use(), 3);
        drop(p1);
        assert_eq!(limits.in_use(), 2);
        assert!(limits.admit(a).is_ok());
    }

    #[test]
    fn per_ip_entries_are_removed_at_zero() {
        let limits = ConnectionLimits::new(10, 10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drop(limits.admit(a).unwrap());
        assert!(limits.per_ip.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_block_an_address_for_the_rest_of_the_minute() {
        let throttle = FailureThrottle::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(!throttle.is_blocked(a));
            throttle.record_failure(a);
        }
        assert!(throttle.is_blocked(a));
        assert!(!throttle.is_blocked(b));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!throttle.is_blocked(a));
    }

    #[tokio::test(start_paused = true)]
    async fn frame_budget_tells_at_most_once_a_second() {
        let mut budget = FrameBudget::new(1.0, 1);
        let now = Instant::now();
        assert_eq!(budget.take(now), FrameVerdict::Handle);
        assert_eq!(budget.take(now), FrameVerdict::DropAndTell);
        assert_eq!(budget.take(now), FrameVerdict::Drop);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(budget.take(Instant::now()), FrameVerdict::Handle);
        assert_eq!(budget.take(Instant::now()), FrameVerdict::DropAndTell);
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_at_rate() {
        let mut bucket = RateLimiter::new(2.0, 3);
        let now = Instant::now();
        assert!((0..3).all(|_| bucket.try_take(now)));
        assert!(!bucket.try_take(now));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(bucket.try_take(Instant::now()));
        assert!(!bucket.try_take(Instant::now()));
    }
}
