//! Queue positions: what a waiting customer is told, and how often.

use std::time::Duration;

use tokio::time::Instant;

use super::Relay;
use crate::protocol::ServerFrame;
use crate::session::Session;

/// Positions up to this are told at every change; farther back, see [`worth_telling`].
const ALWAYS_TELL_WITHIN: usize = 100;

/// A customer far back is told a changed position at least this often.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Whether a customer told `last` (`since` ago) should hear of `now`. In the first hundred
/// every step counts; far back (thousands queued at a sale-day peak) a step of one is noise and
/// a frame to each of them every second is real work, so they hear of every 10% of progress, a
/// step back, or any change once what they were told is 10 s old.
fn worth_telling(last: Option<usize>, since: Duration, now: usize) -> bool {
    match last {
        None => true,
        Some(last) if now == last => false,
        Some(last) => {
            now <= ALWAYS_TELL_WITHIN || now > last || now * 10 <= last * 9 || since >= STALE_AFTER
        }
    }
}

/// Sends `queued` with the estimated wait when the position changed enough to tell; returns
/// whether it did.
pub(super) fn tell_position(
    relay: &Relay,
    session: &Session,
    group: &str,
    position: usize,
) -> bool {
    let changed = session.with_service(|c| {
        let since = c.position_told_at.map_or(Duration::MAX, |at| at.elapsed());
        let tell = worth_telling(c.last_position, since, position);
        if tell {
            c.last_position = Some(position);
            c.position_told_at = Some(Instant::now());
        }
        tell
    });
    if changed {
        let capacity = relay.group_capacity(group);
        let agents = capacity.max(1) as u64;
        let estimated_wait_s = (position as u64 * relay.routing.avg_handle_s).div_ceil(agents);
        session.emit(&ServerFrame::Queued {
            position,
            estimated_wait_s,
            no_agent_available: capacity == 0,
        });
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUST: Duration = Duration::from_secs(1);

    #[test]
    fn positions_in_the_first_hundred_are_told_at_every_step() {
        assert!(worth_telling(None, JUST, 500));
        assert!(worth_telling(Some(3), JUST, 2));
        assert!(worth_telling(Some(104), JUST, 100));
        assert!(!worth_telling(Some(2), JUST, 2));
        assert!(!worth_telling(Some(2), STALE_AFTER, 2));
    }

    #[test]
    fn far_back_every_tenth_of_progress_a_step_back_or_when_stale() {
        assert!(!worth_telling(Some(1000), JUST, 999));
        assert!(!worth_telling(Some(1000), JUST, 901));
        assert!(worth_telling(Some(1000), JUST, 900));
        assert!(worth_telling(Some(1000), JUST, 1001));
        assert!(worth_telling(Some(1000), STALE_AFTER, 999));
        assert!(worth_telling(Some(120), JUST, 108));
        assert!(!worth_telling(Some(120), JUST, 109));
    }
}
