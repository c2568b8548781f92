//! Queue positions: what a waiting customer is told, and how often.

use crate::protocol::ServerFrame;
use crate::server::AppState;
use crate::session::Session;

/// Positions up to this are told at every change; farther back, see [`worth_telling`].
const ALWAYS_TELL_WITHIN: usize = 20;

/// Whether a customer told `last` should hear of `now`. Near the front every step counts;
/// far back (thousands queued at a sale-day peak) a step of one is noise, and a frame to each
/// of them every second is real work, so they hear of every 10% of progress (or a step back).
fn worth_telling(last: Option<usize>, now: usize) -> bool {
    match last {
        None => true,
        Some(last) if now == last => false,
        Some(last) => now <= ALWAYS_TELL_WITHIN || now > last || now * 10 <= last * 9,
    }
}

/// Sends `queued` with the estimated wait when the position changed enough to tell.
pub(super) fn tell_position(app: &AppState, session: &Session, group: &str, position: usize) {
    let changed = session.with_conversation(|c| {
        let tell = worth_telling(c.last_position, position);
        if tell {
            c.last_position = Some(position);
        }
        tell
    });
    if changed {
        let agents = app.group_capacity(group).max(1) as u64;
        let estimated_wait_s =
            (position as u64 * app.settings.routing.avg_handle_s).div_ceil(agents);
        session.emit(&ServerFrame::Queued {
            position,
            estimated_wait_s,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::worth_telling;

    #[test]
    fn positions_near_the_front_are_told_at_every_step() {
        assert!(worth_telling(None, 500));
        assert!(worth_telling(Some(3), 2));
        assert!(worth_telling(Some(21), 20));
        assert!(!worth_telling(Some(2), 2));
    }

    #[test]
    fn far_back_only_every_tenth_of_progress_or_a_step_back() {
        assert!(!worth_telling(Some(1000), 999));
        assert!(!worth_telling(Some(1000), 901));
        assert!(worth_telling(Some(1000), 900));
        assert!(worth_telling(Some(1000), 1001));
        assert!(worth_telling(Some(60), 54));
        assert!(!worth_telling(Some(60), 55));
    }
}
