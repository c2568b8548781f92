//! The pre-answering bot: the knowledge-base index, searched on the blocking pool with
//! bounded concurrency, and reloaded without dropping a session.
//!
//! Searches are synchronous CPU work (tantivy plus re-ranking), so they never run on the
//! async workers: a semaphore bounds how many run at once, and a timeout keeps an overloaded
//! node from answering late. Reloads build the new index off to the side and swap an `Arc`,
//! so searches in flight finish on the index they started with.
//!
//! At a sale-day peak most customers ask the same few dozen questions, so each index version
//! keeps its recent answers ([`AnswerCache`]): a repeat is answered from memory and leaves the
//! search pool to the questions that need it.
//!
//! Entries edited through the admin API live in the store as an [`Overlay`] on the KB files
//! ([`crate::kb`]); every build applies it, so a file reload keeps the edits, and each overlay
//! version gets its own index and answer cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use faq_index::{Entry, Index, KnowledgeBase, Outcome, Thresholds};
use tokio::sync::Semaphore;

use crate::config::KbSettings;
use crate::files::{Fingerprint, Watched};
use crate::telemetry::metric;

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

/// Questions longer than this are not cached (they are rarely repeated word for word).
const CACHE_MAX_CHARS: usize = 200;

/// Recent outcomes of one index version, keyed by the exact question and result size.
/// Bounded: when full it starts over, which is simpler than LRU and costs little, since
/// the questions asked most are back in it within a second.
struct AnswerCache {
    entries: usize,
    map: Mutex<HashMap<(String, usize), Outcome>>,
}

impl AnswerCache {
    fn new(entries: usize) -> Self {
        Self {
            entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn cacheable(&self, question: &str) -> bool {
        self.entries > 0 && question.chars().count() <= CACHE_MAX_CHARS
    }

    fn get(&self, question: &str, limit: usize) -> Option<Outcome> {
        if !self.cacheable(question) {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(question.to_owned(), limit)).cloned()
    }

    fn put(&self, question: String, limit: usize, outcome: &Outcome) {
        if !self.cacheable(&question) {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.entries {
            map.clear();
        }
        map.insert((question, limit), outcome.clone());
    }
}

/// One version of the knowledge base: its index and the answers given from it.
struct Loaded {
    index: Arc<Index>,
    cache: AnswerCache,
    /// The overlay version it was built with.
    version: u64,
}

/// Edits over the KB files, newest state per entry id (`None`: deleted), in the order the ids
/// were first edited. Bounded by the number of entries ever edited, not by the edits.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pub version: u64,
    edits: Vec<(String, Option<Entry>)>,
}

impl Overlay {
    /// Records the entry's new state (`None`: deleted) as of `version`.
    pub fn set(&mut self, version: u64, id: &str, entry: Option<Entry>) {
        self.version = self.version.max(version);
        match self.edits.iter_mut().find(|(i, _)| i == id) {
            Some(slot) => slot.1 = entry,
            None => self.edits.push((id.to_string(), entry)),
        }
    }

    /// The files' entries with the edits applied: replaced in place, added at the end.
    pub fn apply(&self, mut entries: Vec<Entry>) -> Vec<Entry> {
        for (id, edit) in &self.edits {
            let at = entries.iter().position(|e| &e.id == id);
            match (at, edit) {
                (Some(i), Some(entry)) => entries[i] = entry.clone(),
                (None, Some(entry)) => entries.push(entry.clone()),
                (Some(i), None) => {
                    entries.remove(i);
                }
                (None, None) => {}
            }
        }
        entries
    }
}

pub struct Bot {
    current: RwLock<Arc<Loaded>>,
    path: PathBuf,
    thresholds: Thresholds,
    permits: Arc<Semaphore>,
    timeout: Duration,
    cache_entries: usize,
    /// The KB files as last loaded, to notice edits.
    watched: Watched,
    /// The edits kept in the store, applied over the files at every build.
    overlay: Mutex<Arc<Overlay>>,
}

impl Bot {
    /// Loads and indexes the knowledge base (at start: blocking is fine here).
    pub fn load(settings: &KbSettings) -> Result<Bot, BotError> {
        let path = crate::files::resolve_path(&settings.path);
        let thresholds = Thresholds {
            answer: settings.answer,
            suggest: settings.suggest,
            suggestions: settings.suggestions,
        };
        let (index, entries) = build(&path, thresholds, &Overlay::default())?;
        tracing::info!(path = %path.display(), entries, "knowledge base loaded");
        let cache_entries = settings.answer_cache_entries;
        Ok(Bot {
            current: RwLock::new(Arc::new(Loaded {
                index: Arc::new(index),
                cache: AnswerCache::new(cache_entries),
                version: 0,
            })),
            overlay: Mutex::new(Arc::new(Overlay::default())),
            cache_entries,
            watched: Watched::new(path.clone()),
            path,
            thresholds,
            permits: Arc::new(Semaphore::new(settings.search_concurrency.max(1))),
            timeout: Duration::from_millis(settings.search_timeout_ms),
        })
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The index in use now.
    pub fn index(&self) -> Arc<Index> {
        self.loaded().index.clone()
    }

    /// The overlay version of the index in use.
    pub fn version(&self) -> u64 {
        self.loaded().version
    }

    /// The overlay the index in use was built with.
    pub fn overlay(&self) -> Arc<Overlay> {
        self.overlay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers from the cache, or searches on the blocking pool: waits for a slot, gives up
    /// after the timeout.
    pub async fn search(&self, question: String, limit: usize) -> Result<Found, BotError> {
        let loaded = self.loaded();
        if let Some(outcome) = loaded.cache.get(&question, limit) {
            metrics::counter!(metric::BOT_CACHE_TOTAL, "result" => "hit").increment(1);
            let index = loaded.index.clone();
            return Ok(Found { index, outcome });
        }
        metrics::counter!(metric::BOT_CACHE_TOTAL, "result" => "miss").increment(1);
        let key = loaded.cache.cacheable(&question).then(|| question.clone());
        let index = loaded.index.clone();
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
        let found = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| BotError::Timeout(self.timeout))??;
        if let Some(key) = key {
            loaded.cache.put(key, limit, &found.outcome);
        }
        Ok(found)
    }

    /// Rebuilds the index from the KB path; on error the old index stays in use.
    pub async fn reload(&self) -> Result<usize, BotError> {
        let overlay = self.overlay();
        match self.rebuild(overlay).await {
            Ok((entries, print)) => {
                self.watched.saw(print);
                metrics::counter!(metric::KB_RELOADS_TOTAL, "result" => "ok").increment(1);
                tracing::info!(path = %self.path.display(), entries, "knowledge base reloaded");
                Ok(entries)
            }
            Err(err) => {
                // Remember the bad version so the watcher does not retry it every tick.
                self.watched.saw(self.watched.now().await);
                metrics::counter!(metric::KB_RELOADS_TOTAL, "result" => "refused").increment(1);
                tracing::error!(error = %err, "new knowledge base refused; keeping the old one");
                Err(err)
            }
        }
    }

    /// Rebuilds the index with a new overlay (a newer version of the store's edits); on error
    /// the old index and overlay stay in use.
    pub async fn apply_overlay(&self, overlay: Overlay) -> Result<usize, BotError> {
        let version = overlay.version;
        let (entries, _) = self.rebuild(Arc::new(overlay)).await?;
        tracing::info!(version, entries, "knowledge base overlay applied");
        Ok(entries)
    }

    /// Builds the files plus `overlay` on the blocking pool and swaps it in when it builds.
    async fn rebuild(
        &self,
        overlay: Arc<Overlay>,
    ) -> Result<(usize, Option<Fingerprint>), BotError> {
        let path = self.path.clone();
        let thresholds = self.thresholds;
        let edits = overlay.clone();
        let ((index, entries), print) = tokio::task::spawn_blocking(move || {
            let print = crate::files::fingerprint(&path);
            build(&path, thresholds, &edits).map(|built| (built, print))
        })
        .await
        .map_err(|_| BotError::PoolClosed)??;
        let loaded = Loaded {
            index: Arc::new(index),
            cache: AnswerCache::new(self.cache_entries),
            version: overlay.version,
        };
        // Swapped together, so the version read next to an index is the one it was built with.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(loaded);
        *self.overlay.lock().unwrap_or_else(|e| e.into_inner()) = overlay;
        Ok((entries, print))
    }

    /// Reloads when the KB files changed since the last load.
    pub async fn reload_if_changed(&self) {
        let now = self.watched.now().await;
        if self.watched.differs(&now) && now.is_some() {
            let _ = self.reload().await;
        }
    }
}

fn build(
    path: &Path,
    thresholds: Thresholds,
    overlay: &Overlay,
) -> Result<(Index, usize), BotError> {
    let shown = path.display().to_string();
    let kb = KnowledgeBase::load(path).map_err(|source| BotError::Kb {
        path: shown.clone(),
        source,
    })?;
    let kb = if overlay.edits.is_empty() {
        kb
    } else {
        let merged = overlay.apply(kb.entries().to_vec());
        KnowledgeBase::from_entries(merged).map_err(|source| BotError::Kb {
            path: format!("{shown} + store overlay v{}", overlay.version),
            source,
        })?
    };
    let index = Index::build_with(&kb, thresholds).map_err(|source| BotError::Index {
        path: shown,
        source,
    })?;
    Ok((index, kb.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faq_index::Decision;

    fn outcome(confidence: f32) -> Outcome {
        Outcome {
            decision: Decision::Handoff,
            confidence,
            matches: Vec::new(),
        }
    }

    #[test]
    fn repeats_are_answered_from_the_cache_per_question_and_size() {
        let cache = AnswerCache::new(8);
        assert!(cache.get("退货运费谁出", 5).is_none());
        cache.put("退货运费谁出".into(), 5, &outcome(0.9));
        assert_eq!(cache.get("退货运费谁出", 5), Some(outcome(0.9)));
        assert!(
            cache.get("退货运费谁出", 3).is_none(),
            "another result size"
        );
        assert!(cache.get("退货运费谁出？", 5).is_none(), "another question");
    }

    #[test]
    fn the_cache_stays_bounded_and_skips_long_questions() {
        let cache = AnswerCache::new(2);
        cache.put("a".into(), 1, &outcome(0.1));
        cache.put("b".into(), 1, &outcome(0.2));
        cache.put("c".into(), 1, &outcome(0.3)); // full: starts over
        assert!(cache.get("a", 1).is_none());
        assert_eq!(cache.get("c", 1), Some(outcome(0.3)));
        let long = "问".repeat(CACHE_MAX_CHARS + 1);
        cache.put(long.clone(), 1, &outcome(0.4));
        assert!(cache.get(&long, 1).is_none());
        let off = AnswerCache::new(0);
        off.put("a".into(), 1, &outcome(0.1));
        assert!(off.get("a", 1).is_none());
    }
}
