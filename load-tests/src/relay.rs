//! `kefu-load relay`: agent-to-customer relay throughput of one gateway node.
//!
//! Customers connect (spread over loopback source addresses), each asks for a person; agents say
//! `ready` and collect their `assigned` chats. Then every agent sends `message` frames to its
//! chats, round-robin, keeping up to `window` unacknowledged frames in flight, for `duration`.
//! Customers count what they receive. The report gives deliveries per second over the measured
//! interval, the agent-send to customer-receive latency, and deliveries per gateway CPU second
//! (from `/proc/<pid>/stat`).
//!
//! Message ids are `r<n>.<send time µs>`: `n` counts per chat, so a customer sees a duplicate as
//! an `n` it already had, and the latency needs no lookup (one process, one clock).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::metrics::{now_us, Hist, Latency};
use crate::net::{self, Target};

#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub target: Target,
    /// Agent tokens; one agent per token.
    pub tokens: Vec<String>,
    pub customers: u32,
    /// Measured interval.
    pub duration: Duration,
    /// Unacknowledged messages each agent keeps in flight.
    pub window: u32,
    /// The gateway's pid (default: found from the target's listening port).
    pub pid: Option<u32>,
    /// Most time to wait for every customer to be assigned.
    pub assign_timeout: Duration,
    /// After the measured interval: how long to wait for the last deliveries.
    pub drain: Duration,
    /// New customer connections per second.
    pub connect_rate: u32,
    /// Lines about the setup (limits raised…) repeated in the report.
    pub notes: Vec<String>,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayReport {
    pub relay_throughput: RelayThroughput,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayThroughput {
    pub customers: u32,
    pub agents: u32,
    /// Customers that got `agent_joined` before sending started.
    pub assigned: u64,
    pub window: u32,
    pub duration_s: f64,
    /// Messages customers received during the measured interval.
    pub delivered: u64,
    pub per_second: f64,
    /// Deliveries per second of gateway CPU time (user + system).
    pub per_core_second: f64,
    pub gateway_cpu_s: f64,
    /// Gateway CPU seconds per wall second during the interval (2.0 = both cores of this machine).
    pub gateway_cores_busy: f64,
    pub gateway_pid: Option<u32>,
    pub latency_ms: Latency,
    /// Totals over the whole run (measured interval plus drain).
    pub sent: u64,
    pub acked: u64,
    pub delivered_total: u64,
    /// Acknowledged by the gateway but never received by the customer by the end of the drain.
    pub lost: u64,
    pub duplicated: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub errors: u64,
    pub notes: Vec<String>,
}

const SENDING: u8 = 1;
const STOP_SENDING: u8 = 2;
const SHUTDOWN: u8 = 3;
const SHARDS: usize = 16;

#[derive(Default)]
struct Shared {
    greeted: AtomicU64,
    joined: AtomicU64,
    chats: AtomicU64,
    agents_ready: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    duplicated: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicUsize,
    hists: Vec<Mutex<Hist>>,
}

/// The fields of a server frame this tool looks at, borrowed from the text.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    session: Option<&'a str>,
    #[serde(default)]
    duplicate: bool,
}

/// `r<n>.<chat>.<t_us>` → (n, t_us). The chat number keeps ids unique per agent: the gateway
/// de-duplicates an agent's message ids across all its chats.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (n, rest) = id.strip_prefix('r')?.split_once('.')?;
    let (_chat, t) = rest.split_once('.')?;
    Some((n.parse().ok()?, t.parse().ok()?))
}

/// Gateway CPU time (user + system) in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based over the whole line).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) as f64 / 100.0)
}

fn phase(rx: &watch::Receiver<u8>) -> u8 {
    *rx.borrow()
}

async fn customer(i: u32, target: Target, shared: Arc<Shared>, mut phase_rx: watch::Receiver<u8>) {
    // The gateway caps connections per client address: 500 per source address.
    let source = Some(net::source_addr(i / 500));
    let path = format!("/ws/customer?visitor=relay-{i}&lang=zh");
    let Ok(mut ws) = net::connect(target, source, &path, Duration::from_secs(20)).await else {
        shared.connect_failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let shard = i as usize % SHARDS;
    let mut last_n = 0u64;
    loop {
        let msg = tokio::select! {
            _ = phase_rx.changed() => {
                if phase(&phase_rx) >= SHUTDOWN { break; }
                continue;
            }
            m = ws.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                if phase(&phase_rx) < SHUTDOWN {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Some(Ok(_)) => continue,
        };
        let Ok(f) = serde_json::from_str::<Peek>(text.as_str()) else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match f.kind {
            "message" => {
                let Some((n, t)) = f.id.and_then(parse_id) else {
                    continue; // the gateway's automatic agent greeting
                };
                let now = now_us();
                if n <= last_n {
                    shared.duplicated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                last_n = n;
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                if shared.measuring.load(Ordering::Relaxed) == 1 {
                    if let Ok(mut h) = shared.hists[shard].lock() {
                        h.record_us(now.saturating_sub(t));
                    }
                }
            }
            "greeting" => {
                shared.greeted.fetch_add(1, Ordering::Relaxed);
                let ok = ws
                    .send(Message::Text(r#"{"type":"request_human"}"#.into()))
                    .await
                    .is_ok();
                if !ok {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            "agent_joined" => {
                shared.joined.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}

struct Chat {
    session: String,
    next: u64,
}

enum Got {
    Ack,
    Other,
    Closed,
}

fn on_agent_frame(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    chats: &mut Vec<Chat>,
    shared: &Shared,
) -> Got {
    let text = match msg {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Got::Closed,
        Some(Ok(_)) => return Got::Other,
    };
    let Ok(f) = serde_json::from_str::<Peek>(text.as_str()) else {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        return Got::Other;
    };
    match f.kind {
        "ack" => {
            if f.duplicate {
                // Not forwarded by the gateway: an id clash, a bug of this tool.
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            return Got::Ack;
        }
        "assigned" => {
            if let Some(s) = f.session {
                chats.push(Chat {
                    session: s.to_owned(),
                    next: 1,
                });
                shared.chats.fetch_add(1, Ordering::Relaxed);
            }
        }
        "welcome" => {
            shared.agents_ready.fetch_add(1, Ordering::Relaxed);
        }
        "error" => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    Got::Other
}

async fn agent(
    token: String,
    target: Target,
    window: u32,
    shared: Arc<Shared>,
    mut phase_rx: watch::Receiver<u8>,
) {
    let path = format!("/ws/agent?token={}", net::enc(&token));
    let Ok(mut ws) = net::connect_buffered(target, None, &path, Duration::from_secs(20)).await
    else {
        shared.connect_failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if ws
        .send(Message::Text(r#"{"type":"ready"}"#.into()))
        .await
        .is_err()
    {
        shared.disconnects.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut chats: Vec<Chat> = Vec::new();
    // Until sending starts: collect the assigned chats.
    while phase(&phase_rx) < SENDING {
        tokio::select! {
            _ = phase_rx.changed() => {}
            m = ws.next() => {
                if let Got::Closed = on_agent_frame(m, &mut chats, &shared) {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    let mut in_flight = 0u32;
    let mut rr = 0usize;
    loop {
        let p = phase(&phase_rx);
        if p >= SHUTDOWN || (p >= STOP_SENDING && in_flight == 0) {
            break;
        }
        if p < STOP_SENDING && !chats.is_empty() && in_flight < window {
            let mut fed = 0u64;
            while in_flight < window {
                let k = rr % chats.len();
                let chat = &mut chats[k];
                rr = rr.wrapping_add(1);
                let frame = format!(
                    r#"{{"type":"message","session":"{}","id":"r{}.{k}.{}","text":"relay {}"}}"#,
                    chat.session,
                    chat.next,
                    now_us(),
                    chat.next
                );
                chat.next += 1;
                if ws.feed(Message::Text(frame.into())).await.is_err() {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                in_flight += 1;
                fed += 1;
            }
            shared.sent.fetch_add(fed, Ordering::Relaxed);
            if ws.flush().await.is_err() {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let first = tokio::select! {
            _ = phase_rx.changed() => continue,
            m = ws.next() => m,
        };
        let mut next = Some(first);
        let mut acks = 0u64;
        // Everything already read off the socket, without waiting again.
        while let Some(m) = next.take() {
            match on_agent_frame(m, &mut chats, &shared) {
                Got::Ack => {
                    acks += 1;
                    in_flight = in_flight.saturating_sub(1);
                }
                Got::Other => {}
                Got::Closed => {
                    shared.acked.fetch_add(acks, Ordering::Relaxed);
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            next = ws.next().now_or_never();
        }
        shared.acked.fetch_add(acks, Ordering::Relaxed);
    }
    while phase(&phase_rx) < SHUTDOWN {
        if phase_rx.changed().await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}

pub async fn relay(opts: RelayOptions) -> anyhow::Result<RelayReport> {
    if opts.tokens.is_empty() {
        bail!("no agent tokens: give --agent-token (repeatable) or use --spawn 1");
    }
    if opts.customers == 0 || opts.customers + opts.tokens.len() as u32 > 19_000 {
        bail!("--customers must be between 1 and 19000 minus the agents (this process may open 20,000 files)");
    }
    if opts.window == 0 {
        bail!("--window must be at least 1");
    }
    let pid = opts
        .pid
        .or_else(|| crate::idle::pid_listening_on(opts.target.0.port()));
    let shared = Arc::new(Shared {
        hists: (0..SHARDS).map(|_| Mutex::new(Hist::new())).collect(),
        ..Shared::default()
    });
    let (phase_tx, phase_rx) = watch::channel(0u8);
    let mut tasks = JoinSet::new();
    let agents = opts.tokens.len() as u32;
    for t in &opts.tokens {
        tasks.spawn(agent(
            t.clone(),
            opts.target,
            opts.window,
            shared.clone(),
            phase_rx.clone(),
        ));
    }
    let until = Instant::now() + Duration::from_secs(20);
    while shared.agents_ready.load(Ordering::Relaxed)
        + shared.connect_failures.load(Ordering::Relaxed)
        < u64::from(agents)
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gap = Duration::from_secs_f64(1.0 / f64::from(opts.connect_rate.max(1)));
    let t0 = Instant::now();
    for i in 0..opts.customers {
        tokio::time::sleep_until(Instant::now().max(t0 + gap * i)).await;
        tasks.spawn(customer(i, opts.target, shared.clone(), phase_rx.clone()));
    }
    let want = u64::from(opts.customers);
    let until = Instant::now() + opts.assign_timeout;
    let mut last_print = Instant::now();
    loop {
        let joined = shared.joined.load(Ordering::Relaxed);
        let chats = shared.chats.load(Ordering::Relaxed);
        let failed = shared.connect_failures.load(Ordering::Relaxed)
            + shared.disconnects.load(Ordering::Relaxed);
        if (joined >= want && chats >= want) || joined + failed >= want || Instant::now() >= until {
            break;
        }
        if opts.progress && last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "relay: {} greeted, {joined} assigned of {want} ({chats} chats on the agents' side)",
                shared.greeted.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the agents' side catch up with the last `assigned` frames.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let assigned = shared.joined.load(Ordering::Relaxed);
    if opts.progress {
        eprintln!(
            "relay: {assigned} of {want} customers assigned ({} chats seen by agents); sending for {:.0} s, window {}",
            shared.chats.load(Ordering::Relaxed),
            opts.duration.as_secs_f64(),
            opts.window
        );
    }
    let cpu0 = pid.and_then(cpu_seconds);
    let d0 = shared.delivered.load(Ordering::Relaxed);
    shared.measuring.store(1, Ordering::Relaxed);
    let _ = phase_tx.send(SENDING);
    let started = Instant::now();
    let end = started + opts.duration;
    let mut prev = (d0, started);
    while Instant::now() < end {
        tokio::time::sleep_until(end.min(Instant::now() + Duration::from_secs(5))).await;
        if opts.progress {
            let d = shared.delivered.load(Ordering::Relaxed);
            let dt = prev.1.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "relay: {:.0} s: {} delivered ({:.0}/s)",
                started.elapsed().as_secs_f64(),
                d - d0,
                (d - prev.0) as f64 / dt
            );
            prev = (d, Instant::now());
        }
    }
    let d1 = shared.delivered.load(Ordering::Relaxed);
    let cpu1 = pid.and_then(cpu_seconds);
    let elapsed = started.elapsed().as_secs_f64();
    shared.measuring.store(0, Ordering::Relaxed);
    let _ = phase_tx.send(STOP_SENDING);
    let drain_until = Instant::now() + opts.drain;
    while Instant::now() < drain_until {
        let sent = shared.sent.load(Ordering::Relaxed);
        let acked = shared.acked.load(Ordering::Relaxed);
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if acked >= sent && delivered >= acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = phase_tx.send(SHUTDOWN);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();

    let mut hist = Hist::new();
    for h in &shared.hists {
        if let Ok(h) = h.lock() {
            hist.merge(&h);
        }
    }
    let delivered = d1 - d0;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let round = |x: f64, k: f64| (x * k).round() / k;
    let sent = shared.sent.load(Ordering::Relaxed);
    let acked = shared.acked.load(Ordering::Relaxed);
    let delivered_total = shared.delivered.load(Ordering::Relaxed);
    Ok(RelayReport {
        relay_throughput: RelayThroughput {
            customers: opts.customers,
            agents,
            assigned,
            window: opts.window,
            duration_s: round(elapsed, 1000.0),
            delivered,
            per_second: round(delivered as f64 / elapsed.max(1e-3), 1.0),
            per_core_second: if cpu > 0.0 {
                round(delivered as f64 / cpu, 1.0)
            } else {
                0.0
            },
            gateway_cpu_s: round(cpu, 100.0),
            gateway_cores_busy: round(cpu / elapsed.max(1e-3), 100.0),
            gateway_pid: pid,
            latency_ms: hist.summary(),
            sent,
            acked,
            delivered_total,
            lost: acked.saturating_sub(delivered_total),
            duplicated: shared.duplicated.load(Ordering::Relaxed),
            connect_failures: shared.connect_failures.load(Ordering::Relaxed),
            disconnects: shared.disconnects.load(Ordering::Relaxed),
            errors: shared.errors.load(Ordering::Relaxed),
            notes: opts.notes,
        },
    })
}

impl RelayReport {
    pub fn summary(&self) -> String {
        let r = &self.relay_throughput;
        let mut s = format!(
            "relay: {} customers, {} agents (window {}), {} assigned\n\
             relay: {} delivered in {:.1} s = {:.0} deliveries/s; gateway CPU {:.2} s ({:.2} cores) = {:.0} deliveries per core-second\n\
             relay: latency agent send -> customer receive p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
             relay: sent {}, acked {}, delivered {} in all; lost {}, duplicated {}; connect failures {}, disconnects {}, errors {}\n",
            r.customers,
            r.agents,
            r.window,
            r.assigned,
            r.delivered,
            r.duration_s,
            r.per_second,
            r.gateway_cpu_s,
            r.gateway_cores_busy,
            r.per_core_second,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.sent,
            r.acked,
            r.delivered_total,
            r.lost,
            r.duplicated,
            r.connect_failures,
            r.disconnects,
            r.errors
        );
        if r.gateway_pid.is_none() {
            s.push_str("relay: gateway pid unknown: no CPU figure (pass --pid)\n");
        }
        for n in &r.notes {
            s.push_str(&format!("relay: note: {n}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_count_and_the_send_time() {
        assert_eq!(
            parse_id("r12.3.1700000000123456"),
            Some((12, 1_700_000_000_123_456))
        );
        assert_eq!(parse_id("a-17"), None);
        assert_eq!(parse_id("r1"), None);
    }

    #[test]
    fn own_cpu_time_is_read() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
