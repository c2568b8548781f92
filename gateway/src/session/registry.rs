//! The node's live sessions, and the grace-period clock that forgets abandoned ones.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::{Session, SessionLimits, SessionLog};
use crate::journal::{Entry, Fence, Journal};
use crate::protocol::{Channel, Lang};
use crate::telemetry::metric;

/// How a connection's session request was resolved.
pub enum Resolved {
    /// A fresh session.
    New(Fresh),
    /// The requested session, still within its grace period, with its token.
    Resumed(Arc<Session>),
    /// The requested session ended (its grace period is over); a fresh one instead.
    Expired(Fresh),
    /// No session with that id and token here (never existed, forgotten, or the token is
    /// wrong: the answer is the same so that nobody can probe for ids); a fresh one instead.
    /// The session that does have the id is left alone.
    Unknown(Fresh),
}

/// A session just created, with its resume token (in plain only here, for the greeting).
pub struct Fresh {
    pub session: Arc<Session>,
    pub token: String,
}

pub struct Sessions {
    map: DashMap<Arc<str>, Arc<Session>>,
    grace: Duration,
    limits: SessionLimits,
    journal: Journal,
}

impl Sessions {
    pub fn new(grace: Duration, limits: SessionLimits) -> Self {
        Self::with_journal(grace, limits, Journal::off())
    }

    /// Sessions whose events go to `journal` (when it is durable).
    pub fn with_journal(grace: Duration, limits: SessionLimits, journal: Journal) -> Self {
        Self {
            map: DashMap::new(),
            grace,
            limits,
            journal,
        }
    }

    /// The per-session limits new and rebuilt sessions get.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// Keeps a session rebuilt from the log; if one with its id is live here already (a
    /// concurrent resume), that one wins.
    pub fn adopt(&self, session: Arc<Session>) -> (Arc<Session>, bool) {
        let mut adopted = false;
        let kept = self
            .map
            .entry(session.id.clone())
            .and_modify(|s| {
                if s.is_fenced() {
                    *s = session.clone();
                    adopted = true;
                }
            })
            .or_insert_with(|| {
                adopted = true;
                session.clone()
            })
            .clone();
        self.update_gauge();
        (kept, adopted)
    }

    /// The live (not fenced) session `id` of this node.
    pub fn get_live(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.get(id)?;
        if session.is_fenced() {
            self.map.remove_if(id, |_, s| s.is_fenced());
            self.update_gauge();
            return None;
        }
        Some(session)
    }

    pub fn create(&self, visitor: Option<String>, channel: Channel, lang: Lang) -> Fresh {
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let (token, token_hash) = super::token::generate();
        let log = self.journal.is_durable().then(|| SessionLog {
            journal: self.journal.clone(),
            epoch: 1,
        });
        let created_ms = super::now_ms();
        if log.is_some() {
            let open = Entry::Open {
                visitor: visitor.clone(),
                channel,
                lang,
                created_ms,
                token: super::token::hash_to_hex(&token_hash),
            };
            self.journal.append(&id, Fence::Create, &open, None);
        }
        let session = Arc::new(Session::with_log(
            id.clone(),
            visitor,
            channel,
            lang,
            self.limits.clone(),
            token_hash,
            log,
            created_ms,
        ));
        self.map.insert(id, session.clone());
        self.update_gauge();
        Fresh { session, token }
    }

    /// Resumes `requested` (id and resume token) if it is alive and the token is its own,
    /// else creates a new session.
    pub fn resolve(
        &self,
        requested: Option<(&str, &str)>,
        visitor: Option<String>,
        channel: Channel,
        lang: Lang,
    ) -> Resolved {
        let Some((id, token)) = requested else {
            return Resolved::New(self.create(visitor, channel, lang));
        };
        match self.get_live(id) {
            Some(session) if session.token_matches(token) => {
                if !self.is_expired(&session, Instant::now()) {
                    Resolved::Resumed(session)
                } else {
                    self.remove(id);
                    Resolved::Expired(self.create(visitor, channel, lang))
                }
            }
            _ => Resolved::Unknown(self.create(visitor, channel, lang)),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.get(id).map(|s| s.clone())
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let removed = self.map.remove(id).map(|(_, s)| s);
        self.update_gauge();
        removed
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All live sessions (for shutdown notices and supervisors).
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// Forgets sessions whose socket has been gone longer than the grace period and returns
    /// them (state untouched), so routing can cancel what they were waiting for. Sessions
    /// another node took over go without a trace here: the new owner has them. One pass over
    /// the map, each check and its removal under the map's lock (so a session that reattaches
    /// meanwhile is either checked after it did or kept).
    pub fn reap_expired(&self) -> Vec<Arc<Session>> {
        let now = Instant::now();
        let before = self.map.len();
        let mut removed = Vec::new();
        self.map.retain(|_, s| {
            if s.is_fenced() {
                return false;
            }
            if self.is_expired(s, now) {
                removed.push(s.clone());
                return false;
            }
            true
        });
        if !removed.is_empty() {
            metrics::counter!(metric::SESSIONS_EXPIRED_TOTAL).increment(removed.len() as u64);
        }
        if self.map.len() != before {
            self.update_gauge();
        }
        removed
    }

    fn is_expired(&self, session: &Session, now: Instant) -> bool {
        session
            .detached_since()
            .is_some_and(|since| now.saturating_duration_since(since) >= self.grace)
    }

    fn update_gauge(&self) {
        metrics::gauge!(metric::SESSIONS_ACTIVE).set(self.map.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(
            Duration::from_secs(120),
            SessionLimits {
                replay_frames: 8,
                dedup_ids: 8,
                messages_per_second: 1.0,
                message_burst: 1,
                frames_per_second: 100.0,
                frame_burst: 100,
                transcript_entries: 100,
                transcript_bytes: 10_000,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn detached_sessions_expire_after_grace() {
        let reg = sessions();
        let Fresh { session: s, token } = reg.create(None, Channel::Web, Lang::Zh);
        let a = s.attach(1, 0, 4);
        tokio::time::advance(Duration::from_secs(500)).await;
        assert!(
            reg.reap_expired().is_empty(),
            "attached sessions never expire"
        );
        drop(a);
        s.detach(1);
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(matches!(
            reg.resolve(Some((&s.id, "wrong")), None, Channel::Web, Lang::Zh),
            Resolved::Unknown(_)
        ));
        assert!(matches!(
            reg.resolve(Some((&s.id, &token)), None, Channel::Web, Lang::Zh),
            Resolved::Resumed(_)
        ));
        s.detach(1);
        tokio::time::advance(Duration::from_secs(121)).await;
        assert!(matches!(
            reg.resolve(Some((&s.id, &token)), None, Channel::Web, Lang::Zh),
            Resolved::Expired(_)
        ));
        assert!(matches!(
            reg.resolve(Some((&s.id, &token)), None, Channel::Web, Lang::Zh),
            Resolved::Unknown(_)
        ));
        assert!(reg.get(&s.id).is_none());
    }
}
