//! The Redis log's fencing against a real `redis-server` (started here on a free port; the
//! test fails, not skips, when there is none).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use tokio::sync::oneshot;

use super::{Done, Entry, Fence, Journal, JournalError};
use crate::dispatch::{Backend as RoutingBackend, DispatchSettings};
use crate::session::{Speaker, TranscriptEntry};

struct Redis {
    child: Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed for this test");
    // Owned at once, so that it is killed and reaped whatever happens next.
    let server = Redis {
        child,
        url: format!("redis://127.0.0.1:{port}/"),
    };
    let client = redis::Client::open(server.url.as_str()).expect("url");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
            {
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on {port} did not answer");
}

async fn node(url: &str, name: &str) -> Journal {
    let settings = DispatchSettings {
        backend: RoutingBackend::Redis,
        redis_url: Some(url.to_string()),
        ..DispatchSettings::default()
    };
    Journal::start(&settings, None, name)
        .await
        .expect("journal")
}

fn line(text: &str) -> Entry {
    Entry::Line {
        line: TranscriptEntry::said(Speaker::Customer, text, 1, None, Default::default()),
    }
}

fn texts(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Line { line } => Some(line.text.clone()),
            _ => None,
        })
        .collect()
}

/// Queues one entry; the receiver hears how its commit went.
fn queue(
    j: &Journal,
    session: &Arc<str>,
    fence: Fence,
    text: &str,
) -> oneshot::Receiver<Result<(), JournalError>> {
    let (tx, rx) = oneshot::channel();
    j.append(session, fence, &line(text), Some(Done::Signal(tx)));
    rx
}

async fn append(
    j: &Journal,
    session: &Arc<str>,
    fence: Fence,
    text: &str,
) -> Result<(), JournalError> {
    queue(j, session, fence, text)
        .await
        .expect("the writer answers")
}

#[tokio::test]
async fn redis_refuses_an_older_epoch_after_a_takeover_and_inputs_land_in_the_current_one() {
    let redis = redis().await;
    let (a, b) = (node(&redis.url, "a").await, node(&redis.url, "b").await);
    let s: Arc<str> = "s1".into();

    assert_eq!(append(&a, &s, Fence::Create, "a1").await, Ok(()));
    assert_eq!(append(&a, &s, Fence::Owner(1), "a2").await, Ok(()));
    assert_eq!(b.owner(&s).await.as_deref(), Some("a"));

    assert_eq!(b.take_lease(&s).await, Ok(Some(2)));
    assert_eq!(b.owner(&s).await.as_deref(), Some("b"));
    assert_eq!(
        append(&a, &s, Fence::Owner(1), "stale").await,
        Err(JournalError::Fenced),
        "the old owner's append is refused by Redis"
    );
    assert_eq!(a.append_input(&s, &line("input")).await, Ok(()));
    assert_eq!(append(&b, &s, Fence::Owner(2), "b1").await, Ok(()));

    let loaded = b.load(&s).await.expect("load").expect("a log");
    assert_eq!(texts(&loaded.entries), ["a1", "a2", "input", "b1"]);
    let after = b
        .load_after(&s, loaded.cursor.as_deref().expect("cursor"))
        .await
        .expect("load after");
    assert!(after.entries.is_empty(), "nothing after the last id");

    // A lost epoch counter cannot hand out an epoch the log has already seen.
    let client = redis::Client::open(redis.url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = conn.del("{kefu:s:s1}:epoch").await.expect("del");
    assert_eq!(a.take_lease(&s).await, Ok(Some(3)));
    assert_eq!(
        append(&b, &s, Fence::Owner(2), "stale b").await,
        Err(JournalError::Fenced)
    );
    assert_eq!(append(&a, &s, Fence::Owner(3), "a3").await, Ok(()));
    let loaded = a.load(&s).await.expect("load").expect("a log");
    assert_eq!(texts(&loaded.entries), ["a1", "a2", "input", "b1", "a3"]);

    // No log: an input is told so, an owner is fenced, a take finds nothing.
    let gone: Arc<str> = "gone".into();
    assert_eq!(
        a.append_input(&gone, &line("x")).await,
        Err(JournalError::NoLog)
    );
    assert_eq!(
        append(&a, &gone, Fence::Owner(1), "x").await,
        Err(JournalError::Fenced)
    );
    assert_eq!(a.take_lease(&gone).await, Ok(None));
    assert!(a.load(&gone).await.expect("load").is_none());
}

#[tokio::test]
async fn many_sessions_in_one_commit_each_get_their_own_outcome() {
    let redis = redis().await;
    let (a, b) = (node(&redis.url, "a").await, node(&redis.url, "b").await);
    let sessions: Vec<Arc<str>> = (0..300).map(|i| format!("m{i}").into()).collect();
    let opened: Vec<_> = sessions
        .iter()
        .map(|s| queue(&a, s, Fence::Create, "open"))
        .collect();
    for rx in opened {
        assert_eq!(rx.await.expect("answer"), Ok(()));
    }
    // Every third session is taken over; then the appends to all of them go out together
    // (in one or a few commits, many sessions a call).
    for s in sessions.iter().step_by(3) {
        assert_eq!(b.take_lease(s).await, Ok(Some(2)));
    }
    let next: Vec<_> = sessions
        .iter()
        .map(|s| queue(&a, s, Fence::Owner(1), "next"))
        .collect();
    for (i, (s, rx)) in sessions.iter().zip(next).enumerate() {
        let want = if i % 3 == 0 {
            Err(JournalError::Fenced)
        } else {
            Ok(())
        };
        assert_eq!(rx.await.expect("answer"), want, "session {i}");
        let loaded = a.load(s).await.expect("load").expect("a log");
        let expect: &[&str] = if i % 3 == 0 {
            &["open"]
        } else {
            &["open", "next"]
        };
        assert_eq!(texts(&loaded.entries), expect, "session {i}");
    }
}
