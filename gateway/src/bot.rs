//! The pre-answering bot: the knowledge-base index, searched on the blocking pool with
//! bounded concurrency, and reloaded without dropping a session.
//!
//! Searches are synchronous CPU work (tantivy plus re-ranking), so they never run on the
//! async workers: a semaphore bounds how many run at once, and a timeout keeps an overloaded
//! node from answering late. Reloads build the new index off to the side and swap an `Arc`,
//! so searches in flight finish on the index they started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use faq_index::{Index, KnowledgeBase, Outcome, Thresholds};
use tokio::sync::Semaphore;

use crate::config::KbSettings;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("knowledge base {path}: {source}")]
    Kb {
        path: String,
        source: faq_index::KbError,
    },
    #[error("knowledge base {path}: cannot build the index: {source}")]
    Index {
        path: String,
        source: faq_index::IndexError,
    },
    #[error("the search did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the search pool is gone")]
    PoolClosed,
}

/// A search result with the index it came from, so entries are read from the same version.
pub struct Found {
    pub index: Arc<Index>,
    pub outcome: Outcome,
}

pub struct Bot {
    current: RwLock<Arc<Index>>,
    path: PathBuf,
    thresholds: Thresholds,
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// Fingerprint of the KB files when last loaded, to notice edits.
    fingerprint: Mutex<Option<Fingerprint>>,
}

pub(crate) type Fingerprint = (usize, Option<SystemTime>);

impl Bot {
    /// Loads and indexes the knowledge base (at start: blocking is fine here).
    pub fn load(settings: &KbSettings) -> Result<Bot, BotError> {
        let path = crate::config::resolve_path(&settings.path);
        let thresholds = Thresholds {
            answer: settings.answer,
            suggest: settings.suggest,
            suggestions: settings.suggestions,
        };
        let (index, entries) = build(&path, thresholds)?;
        tracing::info!(path = %path.display(), entries, "knowledge base loaded");
        Ok(Bot {
            current: RwLock::new(Arc::new(index)),
            fingerprint: Mutex::new(fingerprint(&path)),
            path,
            thresholds,
            permits: Arc::new(Semaphore::new(settings.search_concurrency.max(1))),
            timeout: Duration::from_millis(settings.search_timeout_ms),
        })
    }

    /// The index in use now.
    pub fn index(&self) -> Arc<Index> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Searches on the blocking pool; waits for a slot, gives up after the timeout.
    pub async fn search(&self, question: String, limit: usize) -> Result<Found, BotError> {
        let index = self.index();
        let permits = self.permits.clone();
        let work = async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| BotError::PoolClosed)?;
            tokio::task::spawn_blocking(move || {
                let outcome = index.search(&question, limit);
                Found { index, outcome }
            })
            .await
            .map_err(|_| BotError::PoolClosed)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| BotError::Timeout(self.timeout))?
    }

    /// Rebuilds the index from the KB path; on error the old index stays in use.
    pub async fn reload(&self) -> Result<usize, BotError> {
        let path = self.path.clone();
        let thresholds = self.thresholds;
        let built = tokio::task::spawn_blocking(move || {
            let print = fingerprint(&path);
            build(&path, thresholds).map(|built| (built, print))
        })
        .await
        .map_err(|_| BotError::PoolClosed)?;
        match built {
            Ok(((index, entries), print)) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
                *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = print;
                metrics::counter!("kefu_kb_reloads_total", "result" => "ok").increment(1);
                tracing::info!(path = %self.path.display(), entries, "knowledge base reloaded");
                Ok(entries)
            }
            Err(err) => {
                // Remember the bad version so the watcher does not retry it every tick.
                *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) =
                    fingerprint(&self.path);
                metrics::counter!("kefu_kb_reloads_total", "result" => "refused").increment(1);
                tracing::error!(error = %err, "new knowledge base refused; keeping the old one");
                Err(err)
            }
        }
    }

    /// Reloads when the KB files changed since the last load.
    pub async fn reload_if_changed(&self) {
        let path = self.path.clone();
        let now = tokio::task::spawn_blocking(move || fingerprint(&path))
            .await
            .ok()
            .flatten();
        let changed = *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed && now.is_some() {
            let _ = self.reload().await;
        }
    }
}

fn build(path: &Path, thresholds: Thresholds) -> Result<(Index, usize), BotError> {
    let shown = path.display().to_string();
    let kb = KnowledgeBase::load(path).map_err(|source| BotError::Kb {
        path: shown.clone(),
        source,
    })?;
    let index = Index::build_with(&kb, thresholds).map_err(|source| BotError::Index {
        path: shown,
        source,
    })?;
    Ok((index, kb.len()))
}

/// Number of files and the newest modification time under `path`.
pub(crate) fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((1, meta.modified().ok()));
    }
    let mut count = 0;
    let mut newest = meta.modified().ok();
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        count += 1;
        let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
        newest = newest.max(modified);
    }
    Some((count, newest))
}
