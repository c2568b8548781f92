//! Questions the bot missed: masked on the customer's path, queued (bounded, never waited
//! for: a full queue drops and counts) to a batch writer, and grouped when an editor asks
//! (`GET /admin/kb/misses`) with the index's own analysis ([`faq_index::similar`]), so every
//! node's misses group the same way and nothing is kept in memory between reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::recent::Asked;
use crate::store::{MissRow, Store};
use crate::telemetry::metric;

/// Misses waiting for the writer; past it they are dropped (and counted).
pub const QUEUE: usize = 4096;
/// Most misses written in one transaction.
const BATCH: usize = 256;
/// Attempts at writing one batch.
const ATTEMPTS: u32 = 3;
/// Examples shown per group.
const EXAMPLES: usize = 5;

/// An entry near a missed question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nearest {
    pub entry_id: String,
    pub question: String,
    pub score: f32,
}

/// The top `n` matches of a search as nearest entries.
pub fn nearest(outcome: &faq_index::Outcome, n: usize) -> Vec<Nearest> {
    outcome
        .matches
        .iter()
        .take(n)
        .map(|m| Nearest {
            entry_id: m.id.clone(),
            question: m.question.clone(),
            score: (m.score * 1000.0).round() / 1000.0,
        })
        .collect()
}

/// The row of a miss of `kind` for `asked` at `at_ms`.
pub fn row(asked: &Asked, kind: &str, at_ms: u64) -> MissRow {
    MissRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        at_ms,
        lang: asked.lang.to_string(),
        channel: asked.channel.to_string(),
        kind: kind.to_string(),
        text: asked.question.clone(),
        nearest: serde_json::to_string(&asked.nearest).unwrap_or_else(|_| "[]".into()),
    }
}

/// Writes queued misses in batches until the queue closes.
pub async fn run_writer(store: Arc<Store>, mut rx: mpsc::Receiver<MissRow>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let count = batch.len();
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match store.write_misses(batch.clone()).await {
                Ok(()) => {
                    metrics::counter!(metric::KB_MISSES_TOTAL).increment(count as u64);
                    break;
                }
                Err(err) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %err, count, attempt, "storing missed questions failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    metrics::counter!(metric::KB_MISSES_DROPPED_TOTAL).increment(count as u64);
                    tracing::error!(error = %err, count, "missed questions could not be stored");
                }
            }
        }
    }
}

/// A group of misses that mean the same, as `GET /admin/kb/misses` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Stable while its first miss is in the window: that miss's id.
    pub cluster: String,
    pub lang: String,
    pub count: usize,
    /// Distinct wordings.
    pub wordings: usize,
    /// Up to five distinct wordings, most frequent first (masked).
    pub examples: Vec<String>,
    /// The entry the group's questions came nearest to most often, with its best score.
    pub nearest: Option<Nearest>,
    /// Misses by kind (`low_confidence`, `suggestion_not_picked`, …).
    pub kinds: HashMap<String, usize>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// Groups misses (oldest first) per language, the biggest groups first. CPU work: run it on
/// the blocking pool.
pub fn clusters(misses: &[MissRow]) -> Vec<Cluster> {
    let mut by_lang: HashMap<&str, Vec<&MissRow>> = HashMap::new();
    for m in misses {
        by_lang.entry(m.lang.as_str()).or_default().push(m);
    }
    let mut out = Vec::new();
    for (lang, rows) in by_lang {
        let texts: Vec<&str> = rows.iter().map(|m| m.text.as_str()).collect();
        let groups = faq_index::similar::cluster(&texts, faq_index::similar::DEFAULT_THRESHOLD);
        let mut members: Vec<Vec<&MissRow>> = Vec::new();
        for (row, g) in rows.iter().zip(groups) {
            if g >= members.len() {
                members.resize_with(g + 1, Vec::new);
            }
            members[g].push(row);
        }
        out.extend(members.into_iter().map(|m| summarise(lang, &m)));
    }
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_seen_ms.cmp(&a.last_seen_ms))
    });
    out
}

fn summarise(lang: &str, members: &[&MissRow]) -> Cluster {
    let mut wordings: HashMap<&str, usize> = HashMap::new();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut near: HashMap<String, (usize, Nearest)> = HashMap::new();
    for m in members {
        *wordings.entry(m.text.as_str()).or_default() += 1;
        *kinds.entry(m.kind.clone()).or_default() += 1;
        let listed: Vec<Nearest> = serde_json::from_str(&m.nearest).unwrap_or_default();
        if let Some(top) = listed.into_iter().next() {
            let slot = near
                .entry(top.entry_id.clone())
                .or_insert_with(|| (0, top.clone()));
            slot.0 += 1;
            if top.score > slot.1.score {
                slot.1 = top;
            }
        }
    }
    let mut examples: Vec<(&str, usize)> = wordings.iter().map(|(t, n)| (*t, *n)).collect();
    examples.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let nearest = near
        .into_values()
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.score.total_cmp(&b.1.score)))
        .map(|(_, n)| n);
    Cluster {
        cluster: members.first().map(|m| m.id.clone()).unwrap_or_default(),
        lang: lang.to_string(),
        count: members.len(),
        wordings: wordings.len(),
        examples: examples
            .into_iter()
            .take(EXAMPLES)
            .map(|(t, _)| t.to_string())
            .collect(),
        nearest,
        kinds,
        first_seen_ms: members.iter().map(|m| m.at_ms).min().unwrap_or(0),
        last_seen_ms: members.iter().map(|m| m.at_ms).max().unwrap_or(0),
    }
}
