//! The journal's writer: one task per node, one commit at a time, each commit taking every
//! append that arrived meanwhile (group commit). A failed commit is retried (with backoff)
//! until it succeeds: what it carries was not acknowledged to anyone yet, and nothing after it
//! may become durable before it, so waiting is the only way that loses nothing. Acks wait
//! meanwhile, and new customer messages are refused once the backlog is long.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Append, Backend, Done, Fence, JournalError};
use crate::store::LogRow;

/// Appends taken into one commit at most.
const MAX_BATCH: usize = 1024;
/// Groups per script call on one Redis (a call runs alone in Redis: keep it short).
const MANY_PER_CALL: usize = 128;

pub(super) async fn run(
    backend: Backend,
    mut rx: mpsc::UnboundedReceiver<Append>,
    pending: Arc<AtomicUsize>,
    node: Arc<str>,
    mut next_n: u64,
) {
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        pending.fetch_sub(batch.len(), Ordering::Relaxed);
        let started = Instant::now();
        let outcomes = commit(&backend, &batch, &node, &mut next_n).await;
        metrics::histogram!("kefu_journal_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("kefu_journal_batch_entries").record(batch.len() as f64);
        for (append, outcome) in batch.drain(..).zip(outcomes) {
            finish(append.done, outcome);
        }
    }
}

fn finish(done: Option<Done>, outcome: Result<(), JournalError>) {
    match (done, outcome) {
        (None, _) => {}
        (Some(Done::Frame(outbox, seq)), Ok(())) => outbox.mark_durable(seq),
        (Some(Done::Frame(outbox, _)), Err(_)) => outbox.fence(),
        (Some(Done::Signal(tx)), outcome) => {
            let _ = tx.send(outcome);
        }
    }
}

async fn commit(
    backend: &Backend,
    batch: &[Append],
    node: &str,
    next_n: &mut u64,
) -> Vec<Result<(), JournalError>> {
    match backend {
        Backend::Store(store) => {
            let mut delay = Duration::from_millis(20);
            loop {
                let mut n = *next_n;
                let rows: Vec<LogRow> = batch
                    .iter()
                    .filter_map(|a| {
                        let body = a.body.clone()?;
                        n += 1;
                        Some(LogRow {
                            session: a.session.clone(),
                            n: n - 1,
                            body,
                        })
                    })
                    .collect();
                match store.append_log(rows).await {
                    Ok(()) => {
                        *next_n = n;
                        return batch.iter().map(|_| Ok(())).collect();
                    }
                    Err(err) => {
                        metrics::counter!("kefu_journal_errors_total").increment(1);
                        tracing::error!(%err, "conversation log commit failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
        Backend::Redis(log) => commit_redis(log, batch, node).await,
    }
}

/// One group of consecutive appends of a session with the same fence.
pub(super) struct Group {
    fence: Fence,
    pub(super) bodies: Vec<String>,
    members: Vec<usize>,
}

/// Per session, its groups run one after the other (in append order); sessions run at once
/// on the multiplexed connection (on a Cluster, each to its shard).
async fn commit_redis(
    log: &super::RedisLog,
    batch: &[Append],
    node: &str,
) -> Vec<Result<(), JournalError>> {
    let mut by_session: HashMap<&str, Vec<Group>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, append) in batch.iter().enumerate() {
        let groups = by_session.entry(&append.session).or_insert_with(|| {
            order.push(&append.session);
            Vec::new()
        });
        let fence = append.fence;
        match groups.last_mut() {
            // A new session's first entries (the opening, its greeting) go in one script: the
            // creating append leaves the lease at epoch 1, which is what they are fenced on.
            Some(g)
                if g.fence == fence
                    || append.body.is_none()
                    || (g.fence == Fence::Create && fence == Fence::Owner(1)) =>
            {
                g.members.push(i);
                if let Some(b) = &append.body {
                    g.bodies.push(b.clone());
                }
            }
            _ => groups.push(Group {
                fence,
                bodies: append.body.iter().cloned().collect(),
                members: vec![i],
            }),
        }
    }
    let sealed = match log.seal_groups(&order, &mut by_session).await {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(%err, "cannot encrypt log entries");
            false
        }
    };
    let mut outcomes: Vec<Result<(), JournalError>> = vec![Ok(()); batch.len()];
    if !sealed {
        return outcomes
            .iter()
            .map(|_| Err(JournalError::Unavailable("encryption failed".into())))
            .collect();
    }
    if log.is_single() {
        let mut calls: Vec<(&str, Fence, &[String])> = Vec::new();
        let mut members: Vec<&[usize]> = Vec::new();
        let mut creates: Vec<&str> = Vec::new();
        for session in &order {
            for group in by_session.get(session).map(Vec::as_slice).unwrap_or(&[]) {
                if group.bodies.is_empty() {
                    continue; // barriers only: nothing to write
                }
                if group.fence == Fence::Create {
                    creates.push(session);
                }
                calls.push((session, group.fence, &group.bodies));
                members.push(&group.members);
            }
        }
        for chunk in (0..calls.len()).collect::<Vec<_>>().chunks(MANY_PER_CALL) {
            let slice: Vec<(&str, Fence, &[String])> = chunk.iter().map(|&i| calls[i]).collect();
            let results = log.append_many_with_retry(node, &slice).await;
            for (&i, result) in chunk.iter().zip(results) {
                for &m in members[i] {
                    outcomes[m] = result.clone();
                }
            }
        }
        // Barriers (and groups of only barriers) keep Ok: they follow what was committed.
        if !creates.is_empty() {
            let (log, node) = (log.clone(), node.to_string());
            let creates: Vec<String> = creates.into_iter().map(str::to_string).collect();
            tokio::spawn(async move {
                for session in creates {
                    log.note_owner(&node, &session).await;
                }
            });
        }
        return outcomes;
    }
    let runs = order.iter().map(|session| {
        let groups = by_session.get(session).map(Vec::as_slice).unwrap_or(&[]);
        async move {
            let mut results = Vec::new();
            for group in groups {
                let result = if group.bodies.is_empty() {
                    Ok(())
                } else {
                    log.append_with_retry(session, node, group.fence, &group.bodies)
                        .await
                };
                if group.fence == Fence::Create && result.is_ok() {
                    // The owner index is for takeovers after a crash: not worth a round trip
                    // before the greeting.
                    let (log, node, session) = (log.clone(), node.to_string(), session.to_string());
                    tokio::spawn(async move { log.note_owner(&node, &session).await });
                }
                results.push((group, result));
            }
            results
        }
    });
    for results in futures_util::future::join_all(runs).await {
        for (group, result) in results {
            for &i in &group.members {
                outcomes[i] = result.clone();
            }
        }
    }
    outcomes
}

pub(super) use Group as LogGroup;
