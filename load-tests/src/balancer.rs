//! The load tool as the load balancer: every client holds the list of gateway nodes and, when
//! its socket is lost, connects to a live one itself.
//!
//! There is no proxy in front of the spawned nodes, so the client-side choice *is* the balancing
//! policy, and it has to be simple enough to reason about in a report: round-robin starting at
//! a given node, skipping nodes that refuse (a killed node refuses at once on loopback, a
//! draining one answers 503 to the upgrade), a short backoff after a full round of refusals
//! (a rolling restart can leave no node up for a moment with one node), and a total deadline so
//! a client never waits forever for a cluster that is gone.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::net::{self, ConnectError, Target, Ws};

/// How long a client keeps trying to reach some node after losing its socket.
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);

/// Longest a single connection attempt may take: a node that accepts TCP but does not answer
/// the upgrade (paused, overloaded) must not eat the whole deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The pause after the first full round of refusals; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The order in which `n` targets are tried, starting at `first`: `first, first+1, …`, wrapping.
pub fn order(n: usize, first: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (first + k) % n.max(1))
}

/// Where a client that lost its socket on `current` starts looking: the next node, so the
/// clients of a dead node spread in a known way and the dead node itself is tried last.
pub fn next_after(n: usize, current: usize) -> usize {
    if n == 0 {
        0
    } else {
        (current + 1) % n
    }
}

/// The pause after `round` full rounds of refusals (round 1 is the first).
pub fn backoff(round: u32) -> Duration {
    let shift = round.saturating_sub(1).min(10);
    (FIRST_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

/// A successful connection: the node's index among the targets and the socket.
pub struct Connected {
    pub node: usize,
    pub ws: Ws,
    /// Attempts that were refused before this one.
    pub refused: u32,
}

/// Connects to the first target in round-robin order from `first` that accepts the upgrade of
/// `path`, retrying rounds with [`backoff`] until `deadline`. The error is the last refusal.
pub async fn connect_any(
    targets: &[Target],
    first: usize,
    source: Option<IpAddr>,
    path: &str,
    deadline: Instant,
) -> Result<Connected, ConnectError> {
    let mut refused = 0u32;
    let mut round = 0u32;
    let mut last = ConnectError::Timeout;
    loop {
        for node in order(targets.len(), first) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            match net::connect(targets[node], source, path, left.min(ATTEMPT_TIMEOUT)).await {
                Ok(ws) => return Ok(Connected { node, ws, refused }),
                Err(e) => {
                    refused += 1;
                    last = e;
                }
            }
        }
        if targets.is_empty() {
            return Err(last);
        }
        round += 1;
        let pause = backoff(round);
        if Instant::now() + pause >= deadline {
            return Err(last);
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_starts_at_the_next_node_and_tries_the_lost_one_last() {
        let first = next_after(4, 1);
        assert_eq!(order(4, first).collect::<Vec<_>>(), [2, 3, 0, 1]);
        assert_eq!(order(4, next_after(4, 3)).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // One node: the only choice is to wait for it to come back.
        assert_eq!(order(1, next_after(1, 0)).collect::<Vec<_>>(), [0]);
        assert_eq!(order(0, 0).count(), 0);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(5), Duration::from_millis(800));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn skips_refusing_targets_and_gives_up_at_the_deadline() {
        // Two ports nobody listens on, one live WebSocket server.
        let dead = [
            crate::spawn::free_port().unwrap(),
            crate::spawn::free_port().unwrap(),
        ];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(s).await {
                        let _ = net::recv(&mut ws).await;
                    }
                });
            }
        });
        let t = |p: u16| Target(([127, 0, 0, 1], p).into());
        let targets = [t(dead[0]), t(dead[1]), Target(live)];
        let deadline = Instant::now() + Duration::from_secs(5);
        let c = connect_any(&targets, 0, None, "/", deadline).await.unwrap();
        assert_eq!((c.node, c.refused), (2, 2));
        let all_dead = [t(dead[0]), t(dead[1])];
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        assert!(connect_any(&all_dead, 1, None, "/", deadline)
            .await
            .is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
