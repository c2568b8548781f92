//! Numbered, replayable outbound frames for one party (a customer session or an agent).
//!
//! Every frame gets the next `seq`, is kept in a bounded replay log and is pushed to the
//! attached connection's bounded queue if there is one. A connection that falls behind is
//! kicked, not waited for, so one slow phone never holds up the node; it resumes with
//! `last_seq` and gets what it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::telemetry::metric;

/// A frame with its sequence number, as written on the wire.
#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    pub seq: u64,
    #[serde(flatten)]
    pub frame: &'a T,
}

impl<T: Serialize> Envelope<'_, T> {
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail; fall back to a valid frame regardless.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"type":"error","seq":{},"code":"internal","message":"unserialisable frame"}}"#,
                self.seq
            )
        })
    }
}

/// Cheap to clone: clones share the one log (the journal's writer holds one to mark frames
/// durable).
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    next_seq: u64,
    /// The highest `seq` a connection may take: with a durable log, a frame is written only
    /// once the log has it (so an `ack` means durable); without one, every frame at once.
    durable: u64,
    /// Frames wait for [`Outbox::mark_durable`] (a durable log exists).
    journaled: bool,
    /// Another node took the session over: nothing more is delivered from here.
    fenced: bool,
    replay: VecDeque<(u64, Utf8Bytes)>,
    replay_cap: usize,
    link: Option<Link>,
    detached_since: Option<Instant>,
}

/// The attached connection: where it is in the log, how far behind it may fall, and how to
/// wake it. There is no per-connection queue: the replay log is the queue, and the
/// connection pulls from it. A channel per idle connection cost more memory than the rest
/// of the session together.
struct Link {
    conn: u64,
    /// The first `seq` the connection has not taken yet.
    next: u64,
    /// How many frames may wait for it before it counts as a slow consumer: `queue`, or
    /// more while it writes a replay that is longer than that.
    max_pending: u64,
    queue: u64,
    /// The latest unnumbered frame (typing) not taken yet: one slot, a newer one replaces it.
    ephemeral: Option<Utf8Bytes>,
    wake: Arc<Notify>,
}

/// The connection was dropped by the outbox: too slow, or another connection took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kicked;

/// Rewrites a frame as it is written to one connection (`None`: as it is). Signed links in
/// frames are made fresh this way (see `attachments::links`).
pub type Refresh = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a connection gets when it attaches: a cursor into the outbox's log.
pub struct Attachment {
    /// Applied to each frame written to this connection.
    pub refresh: Option<Refresh>,
    inner: Arc<Mutex<Inner>>,
    conn: u64,
    /// Notified when frames are ready (first: the replay) or the connection was kicked.
    pub wake: Arc<Notify>,
    /// The replay log could not cover `last_seq` (see [`Outbox::attach`]).
    pub gap: bool,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding this lock leaves plain data behind; keep serving.
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl Outbox {
    pub fn new(replay_cap: usize) -> Self {
        Self::with_log(replay_cap, false)
    }

    /// An outbox whose frames wait for the durable log when `journaled`.
    pub fn with_log(replay_cap: usize, journaled: bool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_seq: 1,
                durable: 0,
                journaled,
                fenced: false,
                replay: VecDeque::new(),
                replay_cap: replay_cap.max(1),
                link: None,
                detached_since: Some(Instant::now()),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Numbers `frame`, logs it for replay and wakes the attached connection.
    /// Returns its `seq`.
    pub fn emit<T: Serialize>(&self, frame: &T) -> u64 {
        self.emit_with(frame, |_, _| {})
    }

    /// Like [`Outbox::emit`], calling `log(seq, text)` under the outbox's lock first, so that
    /// frames reach the durable log in `seq` order.
    pub fn emit_with<T: Serialize>(&self, frame: &T, log: impl FnOnce(u64, &str)) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let text = Utf8Bytes::from(Envelope { seq, frame }.to_json());
        log(seq, text.as_str());
        inner.replay.push_back((seq, text));
        if inner.replay.len() > inner.replay_cap {
            inner.replay.pop_front();
        }
        if !inner.journaled {
            inner.durable = seq;
        }
        // Lag is what the connection could write and has not: frames still on their way to
        // the log (a Redis restart) are the node's wait, not the client's.
        let writable = inner.durable;
        if let Some(link) = &inner.link {
            if (writable + 1).saturating_sub(link.next) > link.max_pending {
                metrics::counter!(metric::SLOW_CONSUMERS_TOTAL).increment(1);
                tracing::info!("client too slow, disconnecting");
                link.wake.notify_one();
                inner.link = None;
                inner.detached_since = Some(Instant::now());
            } else {
                link.wake.notify_one();
            }
        }
        seq
    }

    /// The log has every frame up to `seq`: the connection may write them.
    pub fn mark_durable(&self, seq: u64) {
        let mut inner = self.lock();
        if seq <= inner.durable {
            return;
        }
        inner.durable = seq;
        let Some(link) = &inner.link else {
            return;
        };
        link.wake.notify_one();
        if (seq + 1).saturating_sub(link.next) > link.max_pending {
            metrics::counter!(metric::SLOW_CONSUMERS_TOTAL).increment(1);
            tracing::info!("client too slow, disconnecting");
            inner.link = None;
            inner.detached_since = Some(Instant::now());
        }
    }

    /// Another node owns the session now: drop the connection, deliver nothing more.
    pub fn fence(&self) {
        let mut inner = self.lock();
        if inner.fenced {
            return;
        }
        inner.fenced = true;
        if let Some(link) = inner.link.take() {
            link.wake.notify_one();
        }
        inner.detached_since = Some(Instant::now());
    }

    pub fn is_fenced(&self) -> bool {
        self.lock().fenced
    }

    /// Starts from a log read back: `frames` are the last ones sent (ascending `seq`), all
    /// durable; numbering goes on after `last_seq`.
    pub fn restore(&self, frames: Vec<(u64, String)>, last_seq: u64) {
        let mut inner = self.lock();
        inner.replay.clear();
        let skip = frames.len().saturating_sub(inner.replay_cap);
        for (seq, text) in frames.into_iter().skip(skip) {
            inner.replay.push_back((seq, Utf8Bytes::from(text)));
        }
        inner.next_seq = last_seq + 1;
        inner.durable = last_seq;
    }

    /// The last `seq` that is durable (what a client may have seen).
    pub fn durable_seq(&self) -> u64 {
        self.lock().durable
    }

    /// Sends `frame` to the attached connection only, with `seq` 0 and no replay-log entry.
    /// It waits in a single slot, so a newer one replaces one not yet written: it is only a
    /// typing notice, and a flood of them must never cost a client its connection.
    pub fn emit_ephemeral<T: Serialize>(&self, frame: &T) {
        let mut inner = self.lock();
        let Some(link) = inner.link.as_mut() else {
            return;
        };
        let text = Utf8Bytes::from(Envelope { seq: 0, frame }.to_json());
        if link.ephemeral.replace(text).is_some() {
            metrics::counter!(metric::FRAMES_DROPPED_TOTAL, "reason" => "ephemeral_behind")
                .increment(1);
        }
        link.wake.notify_one();
    }

    /// Attaches connection `conn`, replacing (and kicking) any other; the connection then
    /// pulls the frames after `last_seq` first. At most `queue` frames may wait for it.
    pub fn attach(&self, conn: u64, last_seq: u64, queue: usize) -> Attachment {
        let wake = Arc::new(Notify::new());
        let mut inner = self.lock();
        if let Some(old) = inner.link.take() {
            old.wake.notify_one();
        }
        let oldest = inner.replay.front().map_or(inner.next_seq, |(seq, _)| *seq);
        // Pending frames are read from the replay log, so they can be no more than it holds.
        let queue = queue.max(1).min(inner.replay_cap) as u64;
        let next = last_seq.saturating_add(1).max(oldest);
        // The log cannot cover the client: frames after `last_seq` were dropped from it, or
        // the client has seen more than this outbox ever numbered (it was forgotten and
        // recreated). A replay would silently skip; the caller must rebuild instead.
        let last = inner.next_seq - 1;
        let gap = last_seq > 0 && (last_seq > last || (last_seq < last && oldest > last_seq + 1));
        // A replay longer than the live queue is written in one go, not counted as lag.
        let backlog = inner.next_seq.saturating_sub(next);
        inner.link = Some(Link {
            conn,
            next,
            max_pending: backlog + queue,
            queue,
            ephemeral: None,
            wake: wake.clone(),
        });
        inner.detached_since = None;
        wake.notify_one();
        Attachment {
            refresh: None,
            inner: self.inner.clone(),
            conn,
            wake,
            gap,
        }
    }

    /// Detaches `conn` if it is still the attached one; the grace period starts now.
    pub fn detach(&self, conn: u64) {
        let mut inner = self.lock();
        if inner.link.as_ref().is_some_and(|l| l.conn == conn) {
            inner.link = None;
            inner.detached_since = Some(Instant::now());
        }
    }

    /// When the connection went away, if it is away.
    pub fn detached_since(&self) -> Option<Instant> {
        self.lock().detached_since
    }

    /// Numbers the next frame after `seq` if it is behind it, so that frames after a rebuild
    /// are above what the client has seen (and not dropped by it as already seen).
    pub fn skip_to(&self, seq: u64) {
        let mut inner = self.lock();
        if seq < u64::MAX / 2 && inner.next_seq <= seq {
            inner.next_seq = seq + 1;
            // The log stays a run of consecutive numbers (a cursor indexes into it); what it
            // held is below what the client has seen, so no replay needs it.
            inner.replay.clear();
            if let Some(link) = inner.link.as_mut() {
                link.next = link.next.max(seq + 1);
            }
        }
    }

    /// Highest `seq` handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }
}

impl Attachment {
    /// Skips what the log holds for this connection: it is rebuilt instead (see `gap`).
    pub fn skip_backlog(&self) {
        let mut inner = lock(&self.inner);
        let next_seq = inner.next_seq;
        if let Some(link) = inner.link.as_mut().filter(|l| l.conn == self.conn) {
            link.next = link.next.max(next_seq);
            link.max_pending = link.queue;
        }
    }

    /// The next frame to write, `None` when the connection is up to date, `Err` when the
    /// outbox dropped this connection.
    pub fn pull(&self) -> Result<Option<Utf8Bytes>, Kicked> {
        let mut inner = lock(&self.inner);
        let Some(link) = inner.link.as_mut().filter(|l| l.conn == self.conn) else {
            return Err(Kicked);
        };
        if let Some(text) = link.ephemeral.take() {
            return Ok(Some(text));
        }
        let next = link.next;
        if next > inner.durable {
            return Ok(None); // not in the log yet
        }
        let Some((front, _)) = inner.replay.front() else {
            return Ok(None);
        };
        let Some(index) = next.checked_sub(*front) else {
            return Err(Kicked); // its frames left the log before it took them
        };
        let Some((_, text)) = inner.replay.get(index as usize) else {
            return Ok(None);
        };
        let text = text.clone();
        let next_seq = inner.next_seq;
        if let Some(link) = inner.link.as_mut() {
            link.next = next + 1;
            // Once the replay is written, the live bound applies again (see `attach`).
            if next_seq.saturating_sub(link.next) <= link.queue {
                link.max_pending = link.queue;
            }
        }
        Ok(Some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Frame {
        Typing {},
    }

    fn seq_of(t: &Utf8Bytes) -> u64 {
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        v["seq"].as_u64().unwrap()
    }

    /// Everything the attachment can take right now.
    fn drain(a: &Attachment) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(t) = a.pull().unwrap() {
            seqs.push(seq_of(&t));
        }
        seqs
    }

    #[tokio::test]
    async fn replays_frames_after_last_seq_in_order() {
        let out = Outbox::new(4);
        for _ in 0..3 {
            out.emit(&Frame::Typing {});
        }
        let a = out.attach(1, 1, 8);
        assert_eq!(drain(&a), vec![2, 3]);
        // The replay log is bounded: the oldest frames go first.
        for _ in 0..3 {
            out.emit(&Frame::Typing {});
        }
        let b = out.attach(2, 0, 8);
        assert_eq!(drain(&b), vec![3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn a_replay_that_cannot_cover_last_seq_is_a_gap() {
        let out = Outbox::new(2);
        for _ in 0..5 {
            out.emit(&Frame::Typing {});
        }
        assert!(!out.attach(1, 3, 8).gap, "4 and 5 are kept");
        assert!(!out.attach(2, 5, 8).gap, "nothing missed");
        assert!(out.attach(3, 2, 8).gap, "3 was dropped from the log");
        assert!(out.attach(4, 9, 8).gap, "more than was ever sent");
        assert!(!out.attach(5, 0, 8).gap, "a first connection");
    }

    #[tokio::test]
    async fn ephemeral_frames_are_not_replayed_and_never_kick() {
        let out = Outbox::new(4);
        let a = out.attach(1, 0, 1);
        out.emit_ephemeral(&Frame::Typing {});
        out.emit_ephemeral(&Frame::Typing {}); // slot taken: replaced, not kicked
        assert!(out.detached_since().is_none());
        assert_eq!(out.last_seq(), 0);
        assert_eq!(drain(&a), vec![0], "one typing notice, unnumbered");
        drop(a);
        assert!(drain(&out.attach(2, 0, 8)).is_empty());
    }

    #[tokio::test]
    async fn a_rebuild_skips_the_backlog_and_numbers_after_what_the_client_saw() {
        let out = Outbox::new(4);
        for _ in 0..3 {
            out.emit(&Frame::Typing {});
        }
        let a = out.attach(1, 9, 8);
        assert!(a.gap);
        a.skip_backlog();
        out.skip_to(9);
        out.emit(&Frame::Typing {});
        assert_eq!(drain(&a), vec![10]);
    }

    #[tokio::test]
    async fn live_frames_wake_the_attached_connection() {
        let out = Outbox::new(4);
        let a = out.attach(1, 0, 8);
        a.wake.notified().await; // the (empty) replay
        assert_eq!(drain(&a), Vec::<u64>::new());
        let seq = out.emit(&Frame::Typing {});
        tokio::time::timeout(std::time::Duration::from_secs(1), a.wake.notified())
            .await
            .unwrap();
        assert_eq!(drain(&a), vec![seq]);
    }

    #[tokio::test]
    async fn slow_consumer_is_kicked_and_frames_stay_for_replay() {
        let out = Outbox::new(4);
        let a = out.attach(1, 0, 1);
        out.emit(&Frame::Typing {});
        out.emit(&Frame::Typing {}); // one frame may wait, two may not: kicked
        assert_eq!(a.pull(), Err(Kicked));
        assert!(out.detached_since().is_some());
        let b = out.attach(2, 0, 8);
        assert_eq!(drain(&b), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_replay_longer_than_the_queue_is_not_lag() {
        let out = Outbox::new(16);
        for _ in 0..10 {
            out.emit(&Frame::Typing {});
        }
        let a = out.attach(1, 0, 2);
        assert_eq!(a.pull().unwrap().map(|t| seq_of(&t)), Some(1));
        out.emit(&Frame::Typing {}); // 10 waiting, but they are the replay
        assert_eq!(drain(&a), (2..=11).collect::<Vec<_>>());
        // Caught up: the live bound of 2 applies again.
        for _ in 0..3 {
            out.emit(&Frame::Typing {});
        }
        assert_eq!(a.pull(), Err(Kicked));
    }

    #[tokio::test]
    async fn with_a_log_frames_wait_until_durable_and_a_fence_drops_the_connection() {
        let out = Outbox::with_log(8, true);
        let a = out.attach(1, 0, 4);
        let first = out.emit(&Frame::Typing {});
        let second = out.emit(&Frame::Typing {});
        assert!(
            drain(&a).is_empty(),
            "nothing is written before the log has it"
        );
        out.mark_durable(first);
        assert_eq!(drain(&a), vec![first]);
        out.mark_durable(second);
        assert_eq!(drain(&a), vec![second]);
        // Waiting for the log is not the client's lag: many pending frames do not kick it.
        for _ in 0..6 {
            out.emit(&Frame::Typing {});
        }
        assert!(a.pull().is_ok());
        out.fence();
        assert_eq!(a.pull(), Err(Kicked));
        assert!(out.is_fenced());
    }

    #[tokio::test]
    async fn a_restored_log_replays_after_last_seq_and_numbers_on() {
        let out = Outbox::with_log(4, true);
        let frames = (5..=9).map(|seq| (seq, format!(r#"{{"seq":{seq},"type":"typing"}}"#)));
        out.restore(frames.collect(), 9);
        let a = out.attach(1, 7, 8);
        assert!(!a.gap);
        assert_eq!(drain(&a), vec![8, 9]);
        assert_eq!(out.emit(&Frame::Typing {}), 10);
        assert!(out.attach(2, 4, 8).gap, "frame 5 is no longer kept (cap 4)");
    }

    #[tokio::test]
    async fn attaching_again_kicks_the_old_connection() {
        let out = Outbox::new(4);
        let a = out.attach(1, 0, 8);
        let _b = out.attach(2, 0, 8);
        assert_eq!(a.pull(), Err(Kicked));
        out.detach(1); // the old connection ending must not detach the new one
        assert!(out.detached_since().is_none());
    }
}
