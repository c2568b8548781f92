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
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

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

pub struct Outbox {
    inner: Mutex<Inner>,
}

struct Inner {
    next_seq: u64,
    replay: VecDeque<(u64, Utf8Bytes)>,
    replay_cap: usize,
    link: Option<Link>,
    detached_since: Option<Instant>,
}

/// The attached connection: its outbound queue and a way to tell it to go.
struct Link {
    conn: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
}

/// What a connection gets when it attaches.
pub struct Attachment {
    /// Frames to write first, in order, before anything from `rx`.
    pub replay: Vec<Utf8Bytes>,
    pub rx: mpsc::Receiver<Utf8Bytes>,
    /// Notified when the outbox drops this connection (slow consumer, or taken over).
    pub kick: Arc<Notify>,
    /// The replay log could not cover `last_seq` (see [`Outbox::attach`]).
    pub gap: bool,
}

impl Outbox {
    pub fn new(replay_cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_seq: 1,
                replay: VecDeque::new(),
                replay_cap: replay_cap.max(1),
                link: None,
                detached_since: Some(Instant::now()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers `frame`, logs it for replay and pushes it to the attached connection.
    /// Returns its `seq`.
    pub fn emit<T: Serialize>(&self, frame: &T) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let text = Utf8Bytes::from(Envelope { seq, frame }.to_json());
        inner.replay.push_back((seq, text.clone()));
        if inner.replay.len() > inner.replay_cap {
            inner.replay.pop_front();
        }
        if let Some(link) = &inner.link {
            if let Err(err) = link.tx.try_send(text) {
                if matches!(err, mpsc::error::TrySendError::Full(_)) {
                    metrics::counter!("kefu_slow_consumers_total").increment(1);
                    tracing::info!("client too slow, disconnecting");
                }
                link.kick.notify_one();
                inner.link = None;
                inner.detached_since = Some(Instant::now());
            }
        }
        seq
    }

    /// Pushes `frame` to the attached connection only, with `seq` 0 and no replay-log entry.
    /// A full queue drops the frame instead of kicking the client: it is only a typing
    /// notice, and a flood of them must never cost a client its connection.
    pub fn emit_ephemeral<T: Serialize>(&self, frame: &T) {
        let inner = self.lock();
        let Some(link) = &inner.link else { return };
        let text = Utf8Bytes::from(Envelope { seq: 0, frame }.to_json());
        if link.tx.try_send(text).is_err() {
            metrics::counter!("kefu_frames_dropped_total", "reason" => "ephemeral_behind")
                .increment(1);
        }
    }

    /// Attaches connection `conn`, replacing (and kicking) any other, and returns the frames
    /// after `last_seq` to write first. `queue` bounds the outbound queue.
    pub fn attach(&self, conn: u64, last_seq: u64, queue: usize) -> Attachment {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let kick = Arc::new(Notify::new());
        let mut inner = self.lock();
        if let Some(old) = inner.link.take() {
            old.kick.notify_one();
        }
        let replay = inner
            .replay
            .iter()
            .filter(|(seq, _)| *seq > last_seq)
            .map(|(_, text)| text.clone())
            .collect();
        // The log cannot cover the client: frames after `last_seq` were dropped from it, or
        // the client has seen more than this outbox ever numbered (it was forgotten and
        // recreated). A replay would silently skip; the caller must rebuild instead.
        let last = inner.next_seq - 1;
        let oldest = inner.replay.front().map_or(inner.next_seq, |(seq, _)| *seq);
        let gap = last_seq > 0 && (last_seq > last || (last_seq < last && oldest > last_seq + 1));
        inner.link = Some(Link {
            conn,
            tx,
            kick: kick.clone(),
        });
        inner.detached_since = None;
        Attachment {
            replay,
            rx,
            kick,
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
        }
    }

    /// Highest `seq` handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
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

    fn seqs(frames: &[Utf8Bytes]) -> Vec<u64> {
        frames
            .iter()
            .map(|t| {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                v["seq"].as_u64().unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn replays_frames_after_last_seq_in_order() {
        let out = Outbox::new(4);
        for _ in 0..3 {
            out.emit(&Frame::Typing {});
        }
        let a = out.attach(1, 1, 8);
        assert_eq!(seqs(&a.replay), vec![2, 3]);
        // The replay log is bounded: the oldest frames go first.
        for _ in 0..3 {
            out.emit(&Frame::Typing {});
        }
        let b = out.attach(2, 0, 8);
        assert_eq!(seqs(&b.replay), vec![3, 4, 5, 6]);
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
        out.emit_ephemeral(&Frame::Typing {}); // queue full: dropped, not kicked
        assert!(out.detached_since().is_none());
        assert_eq!(out.last_seq(), 0);
        drop(a);
        assert!(out.attach(2, 0, 8).replay.is_empty());
    }

    #[tokio::test]
    async fn live_frames_go_to_the_attached_connection() {
        let out = Outbox::new(4);
        let mut a = out.attach(1, 0, 8);
        let seq = out.emit(&Frame::Typing {});
        assert_eq!(seqs(&[a.rx.recv().await.unwrap()]), vec![seq]);
    }

    #[tokio::test]
    async fn slow_consumer_is_kicked_and_frames_stay_for_replay() {
        let out = Outbox::new(4);
        let a = out.attach(1, 0, 1);
        out.emit(&Frame::Typing {});
        out.emit(&Frame::Typing {}); // queue full: kicked
        tokio::time::timeout(std::time::Duration::from_secs(1), a.kick.notified())
            .await
            .unwrap();
        assert!(out.detached_since().is_some());
        let b = out.attach(2, 0, 8);
        assert_eq!(seqs(&b.replay), vec![1, 2]);
    }

    #[tokio::test]
    async fn attaching_again_kicks_the_old_connection() {
        let out = Outbox::new(4);
        let a = out.attach(1, 0, 8);
        let _b = out.attach(2, 0, 8);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.kick.notified())
            .await
            .unwrap();
        out.detach(1); // the old connection ending must not detach the new one
        assert!(out.detached_since().is_none());
    }
}
