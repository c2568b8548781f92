//! `kefu-load idle`: open N quiet customer sessions and report the gateway's resident memory
//! per session, the figure that decides how many sessions one node can hold.
//!
//! Memory comes from `/proc/<pid>/status` (VmRSS) when the gateway's pid is known (`--pid`, or
//! found from the listening port), else from `process_resident_memory_bytes` in `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::{Hist, Latency};
use crate::net::{self, Incoming, Target};

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub sessions: u32,
    pub targets: Vec<Target>,
    pub pid: Option<u32>,
    /// New sessions per second while opening.
    pub rate: u32,
    /// How long to wait after the last greeting before measuring (allocator settling).
    pub settle: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub sessions_requested: u32,
    pub sessions_open: u64,
    pub connect_failures: u64,
    pub greeting_ms: Latency,
    pub rss_source: String,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub bytes_per_session: f64,
    pub kib_per_session: f64,
    /// Resident memory at the half-way point, and the cost of the second half of the sessions
    /// alone: robust against a baseline disturbed by memory an earlier run left behind.
    pub rss_half_bytes: u64,
    pub marginal_kib_per_session: f64,
}

/// VmRSS of a process, in bytes.
pub fn rss_of_pid(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The pid of the process listening on `port` (IPv4 or IPv6), from `/proc/net/tcp*` and the
/// fd tables it can read.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT, state 0A is LISTEN, inode is column 9.
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// `process_resident_memory_bytes` from a Prometheus text page.
pub fn rss_from_metrics(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("process_resident_memory_bytes"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Sums the resident memory of every target's process; names where it came from.
async fn measure(targets: &[Target], pids: &[u32]) -> anyhow::Result<(u64, String)> {
    if !pids.is_empty() {
        let mut total = 0;
        for pid in pids {
            match rss_of_pid(*pid) {
                Some(b) => total += b,
                None => bail!("cannot read /proc/{pid}/status"),
            }
        }
        return Ok((total, format!("/proc VmRSS of pid {pids:?}")));
    }
    let mut total = 0;
    for t in targets {
        let (status, body) = net::http_get(t.0, "/metrics", Duration::from_secs(5)).await?;
        match rss_from_metrics(&body) {
            Some(b) if status == 200 => total += b,
            _ => bail!(
                "{t}/metrics has no process_resident_memory_bytes and the gateway's pid is unknown: pass --pid"
            ),
        }
    }
    Ok((total, "/metrics process_resident_memory_bytes".into()))
}

pub async fn idle(opts: IdleOptions) -> anyhow::Result<IdleReport> {
    if opts.targets.is_empty() {
        bail!("no target: give --target ws://127.0.0.1:PORT");
    }
    if opts.sessions == 0 || opts.sessions > 19_000 {
        bail!("--sessions must be between 1 and 19000 (this process may open 20,000 files)");
    }
    let pids: Vec<u32> = match opts.pid {
        Some(p) => vec![p],
        None => opts
            .targets
            .iter()
            .filter_map(|t| pid_listening_on(t.0.port()))
            .collect(),
    };
    let pids = if pids.len() == opts.targets.len() {
        pids
    } else {
        Vec::new()
    };
    let (before, source) = measure(&opts.targets, &pids).await?;
    let open = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let greetings = Arc::new(std::sync::Mutex::new(Hist::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let t0 = Instant::now();
    let half = opts.sessions / 2;
    let mut rss_half = (0, 0u64);
    for i in 0..opts.sessions {
        if i == half && half > 0 {
            wait_open(&open, &failures, u64::from(half)).await;
            tokio::time::sleep(opts.settle).await;
            rss_half = (
                open.load(Ordering::Relaxed),
                measure(&opts.targets, &pids).await?.0,
            );
        }
        tokio::time::sleep_until(Instant::now().max(t0 + gap * i)).await;
        let target = opts.targets[i as usize % opts.targets.len()];
        // The gateway caps connections per client address (1,000 by default): 500 per address.
        let source = Some(net::source_addr(i / 500));
        let (open, failures, greetings, mut stop) = (
            open.clone(),
            failures.clone(),
            greetings.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(async move {
            let started = Instant::now();
            let path = format!("/ws/customer?visitor=idle-{i}&lang=zh");
            let Ok(mut ws) = net::connect(target, source, &path, Duration::from_secs(10)).await
            else {
                failures.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut greeted = false;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    f = net::recv(&mut ws) => match f {
                        Incoming::Frame(f) if f.kind == "greeting" && !greeted => {
                            greeted = true;
                            if let Ok(mut h) = greetings.lock() {
                                h.record(started.elapsed());
                            }
                            open.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::Closed => {
                            if greeted {
                                open.fetch_sub(1, Ordering::Relaxed);
                            }
                            failures.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        _ => {}
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        });
    }
    wait_open(&open, &failures, u64::from(opts.sessions)).await;
    tokio::time::sleep(opts.settle).await;
    let (after, _) = measure(&opts.targets, &pids).await?;
    let n = open.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let bytes = after.saturating_sub(before) as f64 / n.max(1) as f64;
    let greeting_ms = greetings.lock().map(|h| h.summary()).unwrap_or_default();
    let second_half = n.saturating_sub(rss_half.0).max(1) as f64;
    let marginal = after.saturating_sub(rss_half.1) as f64 / second_half / 1024.0;
    Ok(IdleReport {
        sessions_requested: opts.sessions,
        sessions_open: n,
        connect_failures: failures.load(Ordering::Relaxed),
        greeting_ms,
        rss_source: source,
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_session: bytes.round(),
        kib_per_session: (bytes / 1024.0 * 100.0).round() / 100.0,
        rss_half_bytes: rss_half.1,
        marginal_kib_per_session: (marginal * 100.0).round() / 100.0,
    })
}

/// Waits until `n` sessions (or sockets) are open or failed (at most 30 s).
pub(crate) async fn wait_open(open: &AtomicU64, failures: &AtomicU64, n: u64) {
    let until = Instant::now() + Duration::from_secs(30);
    while open.load(Ordering::Relaxed) + failures.load(Ordering::Relaxed) < n
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_prometheus_text() {
        let text = "# HELP x\nkefu_sessions_active 3\nprocess_resident_memory_bytes 1.2345e7\n";
        assert_eq!(rss_from_metrics(text), Some(12_345_000));
        assert_eq!(rss_from_metrics("kefu_sessions_active 3\n"), None);
    }

    #[test]
    fn own_rss_and_listening_pid_are_found() {
        assert!(rss_of_pid(std::process::id()).unwrap() > 0);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
    }
}
