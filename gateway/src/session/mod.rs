//! A customer session: its lifecycle state, its numbered outbound frames, and what was said.
//!
//! A session outlives its socket. Every frame the server sends is numbered (`seq`), kept in a
//! bounded replay log and pushed to the attached connection's bounded queue if there is one;
//! a connection that falls behind is kicked, not waited for, so one slow phone never holds up
//! the node. Resuming replays what the client has not seen.

mod registry;

pub use registry::{Resolved, Sessions};

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::limits::RateLimiter;
use crate::protocol::{Channel, Envelope, Lang, ServerFrame};

/// Where a session is in its life. The bot, routing and survey extend the middle states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Created; the greeting is being written.
    Greeting,
    /// The bot answers.
    Bot,
    /// Waiting for a human of `group`.
    Queued { group: String },
    /// Served by an agent.
    WithAgent { agent: String, group: String },
    /// The chat ended; waiting for the satisfaction survey.
    Survey,
    /// Over; the session is about to be forgotten.
    Closed { reason: String },
}

/// Who said something in a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Customer,
    Bot,
    Agent,
    System,
}

/// One line of what was said, kept for the agent who takes over and for the records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TranscriptEntry {
    pub from: Speaker,
    pub text: String,
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// How a customer message was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored now.
    New,
    /// Stored before (a re-send after a reconnect); not stored again.
    Duplicate,
    /// Over the session's rate; not stored.
    RateLimited,
}

/// Per-session limits, copied from the settings at creation.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub replay_frames: usize,
    pub dedup_ids: usize,
    pub messages_per_second: f64,
    pub message_burst: u32,
}

pub struct Session {
    pub id: Arc<str>,
    pub visitor: Option<String>,
    pub channel: Channel,
    pub lang: Lang,
    inner: Mutex<Inner>,
}

struct Inner {
    state: SessionState,
    next_seq: u64,
    replay: VecDeque<(u64, Utf8Bytes)>,
    seen_ids: HashSet<String>,
    seen_order: VecDeque<String>,
    transcript: Vec<TranscriptEntry>,
    link: Option<Link>,
    detached_since: Option<Instant>,
    rate: RateLimiter,
    limits: SessionLimits,
    conversation: Conversation,
}

/// What the bot remembers of the conversation to decide when to hand off, and where.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// Questions in a row the bot could not answer.
    pub unanswered: u32,
    /// Knowledge-base category of the last question's best match (picks the skill group).
    pub last_category: Option<String>,
    /// Entry ids offered in the last suggestions.
    pub suggested: Vec<String>,
    /// Highest complaint level heard (0: none).
    pub complaint_level: u8,
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
    /// Notified when the session drops this connection (slow consumer, or taken over).
    pub kick: Arc<Notify>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Session {
    pub fn new(
        id: Arc<str>,
        visitor: Option<String>,
        channel: Channel,
        lang: Lang,
        limits: SessionLimits,
    ) -> Self {
        Self {
            id,
            visitor,
            channel,
            lang,
            inner: Mutex::new(Inner {
                state: SessionState::Greeting,
                next_seq: 1,
                replay: VecDeque::new(),
                seen_ids: HashSet::new(),
                seen_order: VecDeque::new(),
                transcript: Vec::new(),
                link: None,
                detached_since: Some(Instant::now()),
                rate: RateLimiter::new(limits.messages_per_second, limits.message_burst),
                limits,
                conversation: Conversation::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> SessionState {
        self.lock().state.clone()
    }

    pub fn set_state(&self, state: SessionState) {
        self.lock().state = state;
    }

    /// Numbers `frame`, logs it for replay and pushes it to the attached connection.
    /// Returns its `seq`.
    pub fn emit(&self, frame: &ServerFrame) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let text = Utf8Bytes::from(Envelope { seq, frame }.to_json());
        inner.replay.push_back((seq, text.clone()));
        if inner.replay.len() > inner.limits.replay_frames {
            inner.replay.pop_front();
        }
        if let Some(link) = &inner.link {
            if let Err(err) = link.tx.try_send(text) {
                if matches!(err, mpsc::error::TrySendError::Full(_)) {
                    metrics::counter!("kefu_slow_consumers_total").increment(1);
                    tracing::info!(session = %self.id, "client too slow, disconnecting");
                }
                link.kick.notify_one();
                inner.link = None;
                inner.detached_since = Some(Instant::now());
            }
        }
        seq
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
        inner.link = Some(Link {
            conn,
            tx,
            kick: kick.clone(),
        });
        inner.detached_since = None;
        Attachment { replay, rx, kick }
    }

    /// Detaches `conn` if it is still the attached one; the grace period starts now.
    pub fn detach(&self, conn: u64) {
        let mut inner = self.lock();
        if inner.link.as_ref().is_some_and(|l| l.conn == conn) {
            inner.link = None;
            inner.detached_since = Some(Instant::now());
        }
    }

    /// When the socket went away, if it is away.
    pub fn detached_since(&self) -> Option<Instant> {
        self.lock().detached_since
    }

    /// Highest `seq` handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Stores a customer message once per client `id`, within the session's rate.
    pub fn accept_customer_message(&self, id: &str, text: &str) -> Accepted {
        let mut inner = self.lock();
        if inner.seen_ids.contains(id) {
            return Accepted::Duplicate;
        }
        if !inner.rate.try_take(Instant::now()) {
            return Accepted::RateLimited;
        }
        inner.seen_ids.insert(id.to_string());
        inner.seen_order.push_back(id.to_string());
        if inner.seen_order.len() > inner.limits.dedup_ids {
            if let Some(old) = inner.seen_order.pop_front() {
                inner.seen_ids.remove(&old);
            }
        }
        inner.transcript.push(TranscriptEntry {
            from: Speaker::Customer,
            text: text.to_string(),
            at_ms: now_ms(),
            id: Some(id.to_string()),
        });
        Accepted::New
    }

    /// Takes one token of the session's rate for a frame that is not a message.
    pub fn take_rate(&self) -> bool {
        self.lock().rate.try_take(Instant::now())
    }

    /// Adds a line said by someone other than the customer (bot, agent, system).
    pub fn record(&self, from: Speaker, text: &str, id: Option<String>) {
        self.lock().transcript.push(TranscriptEntry {
            from,
            text: text.to_string(),
            at_ms: now_ms(),
            id,
        });
    }

    /// Reads or updates what the bot remembers.
    pub fn with_conversation<R>(&self, f: impl FnOnce(&mut Conversation) -> R) -> R {
        f(&mut self.lock().conversation)
    }

    /// Everything said so far.
    pub fn transcript(&self) -> Vec<TranscriptEntry> {
        self.lock().transcript.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(
            "s1".into(),
            None,
            Channel::Web,
            Lang::Zh,
            SessionLimits {
                replay_frames: 4,
                dedup_ids: 2,
                messages_per_second: 100.0,
                message_burst: 100,
            },
        )
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
        let s = session();
        for _ in 0..3 {
            s.emit(&ServerFrame::Typing {});
        }
        let a = s.attach(1, 1, 8);
        assert_eq!(seqs(&a.replay), vec![2, 3]);
        // The replay log is bounded: the oldest frames go first.
        for _ in 0..3 {
            s.emit(&ServerFrame::Typing {});
        }
        let b = s.attach(2, 0, 8);
        assert_eq!(seqs(&b.replay), vec![3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn live_frames_go_to_the_attached_connection() {
        let s = session();
        let mut a = s.attach(1, 0, 8);
        let seq = s.emit(&ServerFrame::Typing {});
        assert_eq!(seqs(&[a.rx.recv().await.unwrap()]), vec![seq]);
    }

    #[tokio::test]
    async fn slow_consumer_is_kicked_and_frames_stay_for_replay() {
        let s = session();
        let a = s.attach(1, 0, 1);
        s.emit(&ServerFrame::Typing {});
        s.emit(&ServerFrame::Typing {}); // queue full: kicked
        tokio::time::timeout(std::time::Duration::from_secs(1), a.kick.notified())
            .await
            .unwrap();
        assert!(s.detached_since().is_some());
        let b = s.attach(2, 0, 8);
        assert_eq!(seqs(&b.replay), vec![1, 2]);
    }

    #[tokio::test]
    async fn attaching_again_kicks_the_old_connection() {
        let s = session();
        let a = s.attach(1, 0, 8);
        let _b = s.attach(2, 0, 8);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.kick.notified())
            .await
            .unwrap();
        s.detach(1); // the old connection ending must not detach the new one
        assert!(s.detached_since().is_none());
    }

    #[test]
    fn messages_are_stored_once_per_id() {
        let s = session();
        assert_eq!(s.accept_customer_message("a", "hi"), Accepted::New);
        assert_eq!(s.accept_customer_message("a", "hi"), Accepted::Duplicate);
        assert_eq!(s.accept_customer_message("b", "yo"), Accepted::New);
        assert_eq!(s.transcript().len(), 2);
    }
}
