//! The log file against a real SQLite file on disk.

use super::*;
use std::time::Instant;

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::from_keys(&[("k1", [7u8; 32])]).expect("key ring"))
}

/// Neither loaded nor listed.
async fn assert_gone(log: &LogFile, session: &str) {
    assert!(log.load(session).await.expect("load").is_empty());
    let sessions = log.sessions(10_000).await.expect("sessions");
    assert!(
        !sessions.iter().any(|s| s == session),
        "{session} is listed"
    );
}

/// An empty directory of its own and the log's file name in it.
fn fresh_dir(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("kefu-log.db");
    (dir, file)
}

fn row(session: &str, n: u64, body: &str) -> LogRow {
    LogRow {
        session: session.into(),
        n,
        body: body.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_sealed_kept_in_order_deleted_and_the_wal_starts_over() {
    let (dir, file) = fresh_dir("kefu-log-file");
    let log = LogFile::open(file.clone(), SqliteSync::Normal, ring())
        .await
        .expect("open");
    let wals = LogFile::halves(&file).map(|half| {
        let mut name = half.into_os_string();
        name.push("-wal");
        std::path::PathBuf::from(name)
    });

    // Commits of many sessions, as a busy node makes them, for longer than a few cycles.
    let body = "x".repeat(600);
    let mut n = 1;
    let mut written = 0u64;
    let started = Instant::now();
    let mut wal_max = 0u64;
    // What each session was sent, over many commits and swaps.
    let mut sent: std::collections::HashMap<String, Vec<String>> = Default::default();
    while written < 8 << 20 && started.elapsed() < Duration::from_secs(30) {
        let rows: Vec<LogRow> = (0..16)
            .map(|i| {
                n += 1;
                let session = format!("s{}", (n * 7 + i) % 500);
                let body = format!("{n}:{body}");
                sent.entry(session.clone()).or_default().push(body.clone());
                row(&session, n, &body)
            })
            .collect();
        written += rows.iter().map(|r| r.body.len() as u64).sum::<u64>();
        log.append(rows).await.expect("append");
        let wal: u64 = wals
            .iter()
            .map(|w| std::fs::metadata(w).map_or(0, |m| m.len()))
            .sum();
        wal_max = wal_max.max(wal);
    }
    assert!(written >= 8 << 20, "enough was written: {written} bytes");
    // Without checkpoints a WAL holds every byte written and more (its pages: ~1.9 times
    // here); the halves' WALs, started over at every swap, stay far below (slack for a
    // loaded machine).
    assert!(
        wal_max < written,
        "the WALs started over: at most {wal_max} bytes for {written} written"
    );
    // A session written over many commits reads back whole and in order from both halves.
    let (busiest, bodies) = sent
        .iter()
        .max_by_key(|(_, bodies)| bodies.len())
        .expect("sessions");
    assert!(bodies.len() > 100, "written often: {}", bodies.len());
    assert_eq!(&log.load(busiest).await.expect("load"), bodies);

    log.append(vec![row("a", n + 1, "first"), row("a", n + 2, "second")])
        .await
        .expect("append");
    assert_eq!(log.load("a").await.expect("load"), ["first", "second"]);
    assert_eq!(log.last_number().await.expect("last"), n + 2);
    assert!(log
        .sessions(10_000)
        .await
        .expect("sessions")
        .contains(&"a".to_string()));

    // Sealed on disk: the plain text is in neither the file nor its WAL.
    log.close().await;
    // Both halves were written (the halves swapped).
    for name in ["kefu-log.db", "kefu-log-2.db"] {
        let len = std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        assert!(len > 1 << 20, "{name} holds rows: {len} bytes");
    }
    for name in [
        "kefu-log.db",
        "kefu-log.db-wal",
        "kefu-log-2.db",
        "kefu-log-2.db-wal",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
        assert!(
            !bytes.windows(6).any(|w| w == b"second"),
            "{name} holds no plain text"
        );
    }

    // Reopened: everything is there, deletes go, and a closed handle says so.
    let log = LogFile::open(file, SqliteSync::Normal, ring())
        .await
        .expect("reopen");
    assert_eq!(log.load("a").await.expect("load"), ["first", "second"]);
    log.delete(vec!["a".into()]).await.expect("delete");
    assert_gone(&log, "a").await;
    log.close().await;
    // The queued delete was done by the time the file closed.
    let log = LogFile::open(dir.join("kefu-log.db"), SqliteSync::Normal, ring())
        .await
        .expect("reopen");
    assert_gone(&log, "a").await;
    log.close().await;
    assert!(matches!(log.load("a").await, Err(StoreError::WriterGone)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_checkpointer_the_writer_still_swaps_halves_and_deletes_from_both() {
    let (dir, file) = fresh_dir("kefu-log-alone");
    let log = LogFile::open_with(file.clone(), SqliteSync::Normal, ring(), false)
        .await
        .expect("open");
    // Rows of one session over many swaps (the writer swaps every 50 ms on its own).
    let mut sent = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(400) {
        n += 1;
        sent.push(format!("row {n}"));
        log.append(vec![row("one", n, &format!("row {n}"))])
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(log.load("one").await.expect("load"), sent);
    log.close().await;
    // The writer swapped: both halves hold rows of the session.
    for half in LogFile::halves(&file) {
        let conn = Connection::open(&half).expect("half");
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM kefu_log", [], |r| r.get(0))
            .expect("count");
        assert!(rows > 0, "{} holds rows", half.display());
    }
    let log = LogFile::open_with(file.clone(), SqliteSync::Normal, ring(), false)
        .await
        .expect("reopen");
    assert_eq!(log.load("one").await.expect("load"), sent);
    log.delete(vec!["one".into()]).await.expect("delete");
    assert_gone(&log, "one").await;
    log.close().await;
    let log = LogFile::open(file, SqliteSync::Normal, ring())
        .await
        .expect("reopen");
    assert_gone(&log, "one").await;
    log.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
