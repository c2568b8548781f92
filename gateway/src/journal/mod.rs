//! The durable conversation log: every session's events, appended in order and acknowledged
//! only once they are durable.
//!
//! Where the log lives follows the routing backend: with Redis routing (several nodes) one
//! Redis stream per session, its keys hash-tagged per session (`{kefu:s:<id>}:log`) so a
//! Redis Cluster spreads sessions over its shards; with memory routing (one node) the store's
//! `kefu_log` table (SQLite by default), encrypted. With neither there is no log and a
//! session lives as long as its node (a warning at start says so).
//!
//! Appends go to one writer task per node, which commits everything that arrived while the
//! previous commit ran in one go (a group commit: one transaction, or one round trip of
//! `MULTI`/`EXEC`), then marks the frames durable, so that their connection may write them, and
//! answers those who wait ([`Journal::barrier`]). A customer's `ack`, a bot answer and an
//! agent's `ack` therefore reach a client only once they would survive a crash of the node.
//!
//! A session is owned by one node at a time through a lease with an epoch (Redis): a node that
//! resumes a session takes the lease (the epoch goes up) and rebuilds it from the log; the old
//! owner's appends then fail as [`JournalError::Fenced`] (on Redis the stream's ids carry the
//! epoch, so Redis refuses them itself), so a paused or partitioned node can no longer write or
//! deliver anything of that session.

pub mod entry;
mod owners;
mod redis_append;
mod redis_log;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

pub use entry::{Entry, Facts};
use redis_log::RedisLog;

use crate::dispatch::{Backend as RoutingBackend, DispatchSettings};
use crate::outbox::Outbox;
use crate::store::Store;
use crate::telemetry::metric;

/// Entries waiting for the writer at most; beyond this new customer messages are refused
/// (`busy`) until it catches up. Frames caused by messages already taken still go in, so the
/// bound is enforced where work enters, never by dropping what was acknowledged.
const MAX_PENDING: usize = 262_144;
/// Sessions whose log is to be deleted at most (once their record is stored).
const MAX_FORGET: usize = 65_536;
/// Ended sessions whose logs go in one store transaction: small, so that the log's own
/// appends (on the same connection) get their turn in between; one transaction for the
/// thousands ended within a tick held them up by hundreds of milliseconds.
const FORGET_PER_COMMIT: usize = 32;
/// Ended sessions whose Redis logs are deleted at once.
const FORGET_AT_ONCE: usize = 32;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("another node took this session over")]
    Fenced,
    #[error("the session has no log (it ended)")]
    NoLog,
    #[error("conversation log: {0}")]
    Unavailable(String),
    #[error("the conversation log is behind; retry shortly")]
    Busy,
}

/// How an append proves it may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// The session's first entry: takes the lease with epoch 1 if nobody holds it.
    Create,
    /// The owner at `epoch`.
    Owner(u64),
    /// An input from another node (an agent's message): any node may add it while the log
    /// exists.
    Input,
}

/// What to do once an append is committed.
pub(crate) enum Done {
    /// The frame `seq` of this outbox is durable: its connection may write it.
    Frame(Outbox, u64),
    Signal(oneshot::Sender<Result<(), JournalError>>),
}

struct Append {
    session: Arc<str>,
    fence: Fence,
    /// `None`: a barrier, answered once everything before it is committed.
    body: Option<String>,
    done: Option<Done>,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Store(Arc<Store>),
    Redis(RedisLog),
}

/// A session's log read back: its entries and, for Redis, where a later read goes on from.
pub struct Loaded {
    pub entries: Vec<Entry>,
    pub cursor: Option<String>,
}

/// The node's handle on the log; cheap to clone. [`Journal::off`] when nothing is durable.
#[derive(Clone, Default)]
pub struct Journal {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Append>,
    pending: Arc<AtomicUsize>,
    backend: Backend,
    node: Arc<str>,
    forget: Mutex<Vec<String>>,
}

impl Journal {
    /// No durable log: sessions live as long as their node.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Opens the log that goes with the routing backend and starts its writer.
    pub async fn start(
        dispatch: &DispatchSettings,
        store: Option<Arc<Store>>,
        node: &str,
    ) -> Result<Journal, JournalError> {
        let backend = match dispatch.backend {
            RoutingBackend::Redis => {
                let url = dispatch.redis_url.as_deref().unwrap_or_default();
                let keys = store.as_ref().map(|s| s.key_ring());
                Backend::Redis(RedisLog::open(url, dispatch, keys).await?)
            }
            RoutingBackend::Memory => match store {
                Some(store) => Backend::Store(store),
                None => {
                    tracing::warn!(
                        "no durable conversation log (memory routing and store.url empty): \
                         sessions do not survive a restart of this node"
                    );
                    return Ok(Journal::off());
                }
            },
        };
        let first_n = match &backend {
            Backend::Store(store) => store
                .last_log_number()
                .await
                .map_err(|e| JournalError::Unavailable(e.to_string()))?
                .saturating_add(1),
            Backend::Redis(_) => 1,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let node: Arc<str> = node.into();
        tokio::spawn(writer::run(
            backend.clone(),
            rx,
            pending.clone(),
            node.clone(),
            first_n,
        ));
        Ok(Journal {
            inner: Some(Arc::new(Inner {
                tx,
                pending,
                backend,
                node,
                forget: Mutex::new(Vec::new()),
            })),
        })
    }

    /// Whether anything is durable (a log exists).
    pub fn is_durable(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the log is shared by several nodes (Redis), i.e. leases matter.
    pub fn is_shared(&self) -> bool {
        matches!(
            self.inner.as_deref().map(|i| &i.backend),
            Some(Backend::Redis(_))
        )
    }

    /// Whether a new customer message may be taken now.
    pub fn has_room(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| i.pending.load(Ordering::Relaxed) < MAX_PENDING)
    }

    /// Queues `entry` for `session`; `done` runs once it is committed. Never waits: called
    /// under the session's locks so that a session's entries keep their order.
    pub(crate) fn append(
        &self,
        session: &Arc<str>,
        fence: Fence,
        entry: &Entry,
        done: Option<Done>,
    ) {
        self.push(session, fence, Some(entry.to_json()), done);
    }

    fn push(&self, session: &Arc<str>, fence: Fence, body: Option<String>, done: Option<Done>) {
        let Some(inner) = &self.inner else {
            if let Some(Done::Frame(outbox, seq)) = done {
                outbox.mark_durable(seq);
            }
            return;
        };
        inner.pending.fetch_add(1, Ordering::Relaxed);
        let append = Append {
            session: session.clone(),
            fence,
            body,
            done,
        };
        if let Err(mpsc::error::SendError(append)) = inner.tx.send(append) {
            inner.pending.fetch_sub(1, Ordering::Relaxed);
            if let Some(Done::Signal(tx)) = append.done {
                let _ = tx.send(Err(JournalError::Unavailable("writer stopped".into())));
            }
        }
    }

    /// Resolves once everything appended for `session` before it is committed.
    pub async fn barrier(&self, session: &Arc<str>, fence: Fence) -> Result<(), JournalError> {
        if self.inner.is_none() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.push(session, fence, None, Some(Done::Signal(tx)));
        rx.await
            .unwrap_or_else(|_| Err(JournalError::Unavailable("writer stopped".into())))
    }

    /// Appends an input from this node for a session possibly owned elsewhere, and waits
    /// until it is durable.
    pub async fn append_input(&self, session: &str, entry: &Entry) -> Result<(), JournalError> {
        if self.inner.is_none() {
            return Ok(());
        }
        let session: Arc<str> = session.into();
        let (tx, rx) = oneshot::channel();
        self.push(
            &session,
            Fence::Input,
            Some(entry.to_json()),
            Some(Done::Signal(tx)),
        );
        rx.await
            .unwrap_or_else(|_| Err(JournalError::Unavailable("writer stopped".into())))
    }

    /// Reads a session's whole log; `None` when it has none.
    pub async fn load(&self, session: &str) -> Result<Option<Loaded>, JournalError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let (bodies, cursor) = match &inner.backend {
            Backend::Store(store) => {
                let bodies = store
                    .load_log(session)
                    .await
                    .map_err(|e| JournalError::Unavailable(e.to_string()))?;
                (bodies, None)
            }
            Backend::Redis(log) => log.load(session, None).await?,
        };
        if bodies.is_empty() {
            return Ok(None);
        }
        Ok(Some(Loaded {
            entries: parse_all(&bodies),
            cursor,
        }))
    }

    /// What was appended to a (Redis) log after `cursor`.
    pub async fn load_after(&self, session: &str, cursor: &str) -> Result<Loaded, JournalError> {
        match self.inner.as_deref().map(|i| &i.backend) {
            Some(Backend::Redis(log)) => {
                let (bodies, next) = log.load(session, Some(cursor)).await?;
                Ok(Loaded {
                    entries: parse_all(&bodies),
                    cursor: next.or_else(|| Some(cursor.to_string())),
                })
            }
            _ => Ok(Loaded {
                entries: Vec::new(),
                cursor: None,
            }),
        }
    }

    /// Takes the session's lease for this node; returns the new epoch, `None` when the
    /// session has no log. Without a shared log the node is the only owner (epoch 1).
    pub async fn take_lease(&self, session: &str) -> Result<Option<u64>, JournalError> {
        match self.inner.as_deref() {
            Some(Inner {
                backend: Backend::Redis(log),
                node,
                ..
            }) => {
                let epoch = log.take_lease(session, node).await?;
                if epoch.is_some() {
                    log.note_owners(node, &[session]).await;
                }
                Ok(epoch)
            }
            _ => Ok(Some(1)),
        }
    }

    /// Shared log: says this node is alive, and takes over (up to `max`) sessions of nodes
    /// that are not, returning each with its new epoch. With `own_leftovers`, also those
    /// this node's id owned before a restart (call once, before serving).
    pub async fn take_orphans(&self, max: usize, own_leftovers: bool) -> Vec<(String, u64)> {
        let Some(Inner {
            backend: Backend::Redis(log),
            node,
            ..
        }) = self.inner.as_deref()
        else {
            return Vec::new();
        };
        if let Err(err) = log.refresh_alive(node).await {
            tracing::warn!(%err, "cannot refresh this node's liveness");
            return Vec::new();
        }
        let mut from: Vec<String> = log.dead_nodes(node).await;
        if own_leftovers {
            from.insert(0, node.to_string());
        }
        let mut taken = Vec::new();
        for dead in from {
            let room = max.saturating_sub(taken.len());
            for session in log.sessions_of(&dead, room, dead != **node).await {
                match log.take_from(&session, &dead, node).await {
                    Ok(Some(epoch)) => taken.push((session, epoch)),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(%err, "cannot take over a session"),
                }
            }
            if taken.len() >= max {
                break;
            }
        }
        taken
    }

    /// The node that holds the session's lease now (shared log only).
    pub async fn owner(&self, session: &str) -> Option<String> {
        match self.inner.as_deref().map(|i| &i.backend) {
            Some(Backend::Redis(log)) => log.owner(session).await,
            _ => None,
        }
    }

    /// Sessions with a log in the store (a single node's restart).
    pub async fn logged_sessions(&self, limit: usize) -> Vec<String> {
        match self.inner.as_deref().map(|i| &i.backend) {
            Some(Backend::Store(store)) => {
                store.logged_sessions(limit).await.unwrap_or_else(|err| {
                    tracing::error!(%err, "cannot list the logged sessions");
                    Vec::new()
                })
            }
            _ => Vec::new(),
        }
    }

    /// The session ended and its record is on its way to the store: delete its log once the
    /// store has the record ([`Journal::forget_due`]).
    pub fn forget_later(&self, session: &str) {
        if let Some(inner) = &self.inner {
            let mut list = inner.forget.lock().unwrap_or_else(|e| e.into_inner());
            if list.len() < MAX_FORGET {
                list.push(session.to_string());
            } else {
                // Kept: the log expires (Redis) or is deleted at the next end of that session.
                metrics::counter!(metric::JOURNAL_FORGET_DROPPED_TOTAL).increment(1);
            }
        }
    }

    /// Deletes the logs of ended sessions after flushing the store (their records are in).
    pub async fn forget_due(&self, store: Option<&Store>) {
        let Some(inner) = &self.inner else {
            return;
        };
        let due = std::mem::take(&mut *inner.forget.lock().unwrap_or_else(|e| e.into_inner()));
        if due.is_empty() {
            return;
        }
        if let Some(store) = store {
            if let Err(err) = store.flush().await {
                tracing::error!(%err, "store flush failed; ended sessions keep their logs");
                return;
            }
        }
        match &inner.backend {
            Backend::Store(store) => {
                for chunk in due.chunks(FORGET_PER_COMMIT) {
                    if let Err(err) = store.delete_logs(chunk).await {
                        tracing::warn!(%err, "cannot delete ended sessions' logs");
                    }
                    tokio::task::yield_now().await;
                }
            }
            Backend::Redis(log) => {
                // A few at once on the multiplexed connection, not one round trip after another.
                let node = &inner.node;
                futures_util::stream::iter(due)
                    .for_each_concurrent(FORGET_AT_ONCE, |session| async move {
                        log.drop_owner(node, &session).await;
                        if let Err(err) = log.delete(&session).await {
                            tracing::warn!(%err, "cannot delete an ended session's log");
                        }
                    })
                    .await;
            }
        }
    }

    /// This node's id.
    pub fn node(&self) -> Option<&str> {
        self.inner.as_deref().map(|i| &*i.node)
    }
}

fn parse_all(bodies: &[String]) -> Vec<Entry> {
    let entries: Vec<Entry> = bodies.iter().filter_map(|b| Entry::parse(b)).collect();
    if entries.len() != bodies.len() {
        metrics::counter!(metric::JOURNAL_BAD_ENTRIES_TOTAL)
            .increment((bodies.len() - entries.len()) as u64);
        tracing::error!(
            skipped = bodies.len() - entries.len(),
            "conversation log entries that cannot be read were skipped"
        );
    }
    entries
}
