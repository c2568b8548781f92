//! The journal's writer: one task per node. Appends are committed in groups (everything that
//! arrived while earlier commits ran goes in one commit), and on Redis up to
//! [`REDIS_IN_FLIGHT`] commits run at once, so an append waits for about one round trip
//! rather than for the rest of the commit before it plus its own.
//!
//! Order is kept per session, which is the only order the log promises: a session with a
//! commit in flight has its later appends held back until that commit is answered, so even a
//! retried commit can never land after a later one of the same session. A barrier (an
//! append without a body) of such a session with nothing held before it rides along with
//! that commit and is answered with it.
//!
//! A failed commit is retried (with backoff) until it succeeds: what it carries was not
//! acknowledged to anyone yet, and nothing after it of the same session may become durable
//! before it, so waiting is the only way that loses nothing. Acks wait meanwhile, and new
//! customer messages are refused once the backlog is long.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::{Append, Backend, Done, Fence, JournalError};
use crate::store::LogRow;
use crate::telemetry::metric;

/// Appends taken into one commit at most.
const MAX_BATCH: usize = 1024;
/// Sessions per call on one Redis (a `MULTI`/`EXEC` runs alone in Redis: keep it short).
const MANY_PER_CALL: usize = 128;
/// Commits on their way to Redis at once. Two halve an append's wait at a peak (it no longer
/// waits for the commit before it to finish); more would mostly split the same work into more
/// script calls. The store (one SQLite writer) takes one at a time.
const REDIS_IN_FLIGHT: usize = 2;

/// One commit on its way: its appends, and barriers that ride along (session, done).
struct Commit {
    id: u64,
    batch: Vec<Append>,
    riders: Vec<(Arc<str>, Done)>,
}

pub(super) async fn run(
    backend: Backend,
    mut rx: mpsc::UnboundedReceiver<Append>,
    pending: Arc<AtomicUsize>,
    node: Arc<str>,
    next_n: u64,
) {
    let depth = match backend {
        Backend::Store(_) => 1,
        Backend::Redis(_) => REDIS_IN_FLIGHT,
    };
    let next_n = Arc::new(std::sync::Mutex::new(next_n));
    let mut held: VecDeque<Append> = VecDeque::new();
    // Session -> the commit in flight that carries it.
    let mut busy: HashMap<Arc<str>, u64> = HashMap::new();
    let mut riders: HashMap<u64, Vec<(Arc<str>, Done)>> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut next_id = 0u64;
    let mut open = true;
    loop {
        while in_flight.len() < depth {
            let batch = take_batch(&mut held, &mut rx, &busy, &mut riders, &pending);
            if batch.is_empty() {
                break;
            }
            next_id += 1;
            for a in &batch {
                busy.insert(a.session.clone(), next_id);
            }
            let (backend, node, next_n) = (backend.clone(), node.clone(), next_n.clone());
            let id = next_id;
            in_flight.push(async move {
                let mut batch = batch;
                let started = Instant::now();
                let outcomes = commit(&backend, &mut batch, &node, &next_n).await;
                metrics::histogram!(metric::JOURNAL_COMMIT_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!(metric::JOURNAL_BATCH_ENTRIES).record(batch.len() as f64);
                (id, batch, outcomes)
            });
        }
        if in_flight.is_empty() {
            if !open && held.is_empty() {
                return;
            }
            match rx.recv().await {
                Some(append) => held.push_back(append),
                None => open = false,
            }
            continue;
        }
        tokio::select! {
            Some((id, batch, outcomes)) = in_flight.next() => {
                let commit = Commit { id, batch, riders: riders.remove(&id).unwrap_or_default() };
                settle(commit, outcomes, &mut busy);
            }
            append = rx.recv(), if open => match append {
                Some(append) => held.push_back(append),
                None => open = false,
            },
        }
    }
}

/// Takes the next commit's appends: the held ones first, then what waits in the channel, in
/// order, leaving (in order) those of sessions with a commit in flight. A barrier of such a
/// session with nothing of it held before rides with that commit instead.
fn take_batch(
    held: &mut VecDeque<Append>,
    rx: &mut mpsc::UnboundedReceiver<Append>,
    busy: &HashMap<Arc<str>, u64>,
    riders: &mut HashMap<u64, Vec<(Arc<str>, Done)>>,
    pending: &AtomicUsize,
) -> Vec<Append> {
    let mut batch = Vec::new();
    let mut still_held = VecDeque::new();
    let mut holding: HashSet<Arc<str>> = HashSet::new();
    while batch.len() < MAX_BATCH {
        let Some(append) = held.pop_front().or_else(|| rx.try_recv().ok()) else {
            break;
        };
        match busy.get(&append.session) {
            None => batch.push(append),
            Some(&commit) if append.body.is_none() && !holding.contains(&append.session) => {
                if let Some(done) = append.done {
                    riders
                        .entry(commit)
                        .or_default()
                        .push((append.session, done));
                }
                pending.fetch_sub(1, Ordering::Relaxed);
            }
            Some(_) => {
                holding.insert(append.session.clone());
                still_held.push_back(append);
            }
        }
    }
    // What could not be looked at (a full batch) stays behind what was held.
    still_held.extend(held.drain(..));
    *held = still_held;
    pending.fetch_sub(batch.len(), Ordering::Relaxed);
    batch
}

/// Answers a commit's appends and riders, and frees its sessions for the next commits.
fn settle(
    commit: Commit,
    outcomes: Vec<Result<(), JournalError>>,
    busy: &mut HashMap<Arc<str>, u64>,
) {
    let mut last: HashMap<Arc<str>, Result<(), JournalError>> = HashMap::new();
    for (append, outcome) in commit.batch.into_iter().zip(outcomes) {
        if busy.get(&append.session) == Some(&commit.id) {
            busy.remove(&append.session);
        }
        last.insert(append.session.clone(), outcome.clone());
        finish(append.done, outcome);
    }
    for (session, done) in commit.riders {
        let outcome = last.get(&session).cloned().unwrap_or(Ok(()));
        finish(Some(done), outcome);
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
    batch: &mut [Append],
    node: &str,
    next_n: &std::sync::Mutex<u64>,
) -> Vec<Result<(), JournalError>> {
    match backend {
        Backend::Store(store) => {
            let mut delay = Duration::from_millis(20);
            // One store commit at a time (see REDIS_IN_FLIGHT): the numbers cannot race.
            let first = *next_n
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                let mut n = first;
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
                        *next_n
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = n;
                        return batch.iter().map(|_| Ok(())).collect();
                    }
                    Err(err) => {
                        metrics::counter!(metric::JOURNAL_ERRORS_TOTAL).increment(1);
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

/// Sessions' calls run at once on the multiplexed connection (on a Cluster, each to its
/// shard).
async fn commit_redis(
    log: &super::RedisLog,
    batch: &mut [Append],
    node: &str,
) -> Vec<Result<(), JournalError>> {
    let mut by_session: HashMap<&str, Vec<Group>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let count = batch.len();
    for (i, append) in batch.iter_mut().enumerate() {
        // Moved, not copied: the commit is the body's last use (retries reuse the groups).
        let body = append.body.take();
        let groups = by_session.entry(&append.session).or_insert_with(|| {
            order.push(&append.session);
            Vec::new()
        });
        let fence = append.fence;
        match groups.last_mut() {
            // A new session's first entries (the opening, its greeting) go in one group: the
            // creating append leaves the lease at epoch 1, which is what they are fenced on.
            Some(g)
                if g.fence == fence
                    || body.is_none()
                    || (g.fence == Fence::Create && fence == Fence::Owner(1)) =>
            {
                g.members.push(i);
                g.bodies.extend(body);
            }
            _ => groups.push(Group {
                fence,
                bodies: body.into_iter().collect(),
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
    let mut outcomes: Vec<Result<(), JournalError>> = vec![Ok(()); count];
    if !sealed {
        return outcomes
            .iter()
            .map(|_| Err(JournalError::Unavailable("encryption failed".into())))
            .collect();
    }
    // One call per session on a Cluster (a call stays within one slot); on one Redis the
    // sessions share calls of up to MANY_PER_CALL sessions. A session's groups stay in one call,
    // in order, so a retried call cannot reorder them.
    let mut calls: Vec<(&str, Fence, &[String])> = Vec::new();
    let mut members: Vec<&[usize]> = Vec::new();
    let mut creates: Vec<(&str, usize)> = Vec::new();
    for session in &order {
        for group in by_session.get(session).map(Vec::as_slice).unwrap_or(&[]) {
            if group.bodies.is_empty() {
                continue; // barriers only: nothing to write
            }
            if group.fence == Fence::Create {
                creates.push((session, calls.len()));
            }
            calls.push((session, group.fence, &group.bodies));
            members.push(&group.members);
        }
    }
    let per_call = if log.is_single() { MANY_PER_CALL } else { 1 };
    let mut chunks: Vec<&[(&str, Fence, &[String])]> = Vec::new();
    let mut from = 0;
    let mut sessions = 0;
    for i in 1..=calls.len() {
        if i == calls.len() || calls[i].0 != calls[i - 1].0 {
            sessions += 1;
            if i == calls.len() || sessions >= per_call {
                chunks.push(&calls[from..i]);
                from = i;
                sessions = 0;
            }
        }
    }
    let answers =
        futures_util::future::join_all(chunks.iter().map(|slice| log.append_call(node, slice)))
            .await;
    let answers: Vec<Result<(), JournalError>> = answers.into_iter().flatten().collect();
    for (result, members) in answers.iter().zip(&members) {
        for &m in *members {
            outcomes[m] = result.clone();
        }
    }
    // Barriers (and groups of only barriers) keep Ok: they follow what was committed.
    let created: Vec<String> = creates
        .into_iter()
        .filter(|&(_, call)| answers.get(call).is_some_and(Result::is_ok))
        .map(|(session, _)| session.to_string())
        .collect();
    if !created.is_empty() {
        // The owner index is for takeovers after a crash: not worth a wait before the
        // greeting.
        let (log, node) = (log.clone(), node.to_string());
        tokio::spawn(async move { log.note_owners(&node, &created).await });
    }
    outcomes
}

pub(super) use Group as LogGroup;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn append(session: &str, body: Option<&str>) -> Append {
        Append {
            session: session.into(),
            fence: Fence::Owner(1),
            body: body.map(str::to_string),
            done: None,
        }
    }

    fn barrier(session: &str) -> (Append, oneshot::Receiver<Result<(), JournalError>>) {
        let (tx, rx) = oneshot::channel();
        let mut a = append(session, None);
        a.done = Some(Done::Signal(tx));
        (a, rx)
    }

    fn bodies(batch: &[Append]) -> Vec<String> {
        batch
            .iter()
            .map(|a| format!("{}:{}", a.session, a.body.as_deref().unwrap_or("|")))
            .collect()
    }

    #[test]
    fn a_session_with_a_commit_in_flight_waits_in_order_and_its_barrier_rides_along() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let pending = AtomicUsize::new(0);
        let (ride, mut ride_rx) = barrier("a");
        for a in [append("a", Some("a2")), append("b", Some("b1"))] {
            tx.send(a).unwrap();
        }
        let mut held = VecDeque::from([ride]);
        tx.send(append("a", Some("a3"))).unwrap();
        let (late, mut late_rx) = barrier("a");
        tx.send(late).unwrap();
        pending.store(5, Ordering::Relaxed);
        let busy = HashMap::from([(Arc::<str>::from("a"), 7u64)]);
        let mut riders = HashMap::new();

        let batch = take_batch(&mut held, &mut rx, &busy, &mut riders, &pending);
        // "a" is in commit 7: only "b" goes; the first barrier rides with commit 7, the one
        // behind a held append of "a" waits with it.
        assert_eq!(bodies(&batch), ["b:b1"]);
        assert_eq!(riders.get(&7).map(Vec::len), Some(1));
        assert_eq!(
            bodies(held.make_contiguous()),
            ["a:a2", "a:a3", "a:|"],
            "held in their order"
        );
        assert_eq!(
            pending.load(Ordering::Relaxed),
            3,
            "taken ones leave the backlog"
        );

        // Commit 7 answers: its rider hears Fenced with it; "a" goes on in order next time.
        let commit = Commit {
            id: 7,
            batch: vec![append("a", Some("a1"))],
            riders: riders.remove(&7).unwrap_or_default(),
        };
        let mut busy = busy;
        settle(commit, vec![Err(JournalError::Fenced)], &mut busy);
        assert_eq!(ride_rx.try_recv(), Ok(Err(JournalError::Fenced)));
        assert!(busy.is_empty());
        let batch = take_batch(&mut held, &mut rx, &busy, &mut riders, &pending);
        assert_eq!(bodies(&batch), ["a:a2", "a:a3", "a:|"]);
        assert!(held.is_empty());
        assert!(
            late_rx.try_recv().is_err(),
            "answered only once its commit is"
        );
    }
}
