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
            frames_per_second: 100.0,
            frame_burst: 100,
            transcript_entries: 100,
            transcript_bytes: 10_000,
        },
        token::hash("t"),
    )
}

#[test]
fn messages_are_stored_once_per_id() {
    let s = session();
    assert_eq!(s.accept_customer_message("a", "hi"), Accepted::New);
    assert_eq!(s.accept_customer_message("a", "hi"), Accepted::Duplicate);
    assert_eq!(s.accept_customer_message("b", "yo"), Accepted::New);
    assert_eq!(s.transcript().len(), 2);
}

#[test]
fn the_transcript_is_capped_in_bytes() {
    let s = session(); // 10,000 bytes
    assert_eq!(
        s.accept_customer_message("a", &"x".repeat(9_000)),
        Accepted::New
    );
    s.record(Speaker::Bot, &"y".repeat(2_000), None); // does not fit: not kept
    assert_eq!(
        s.accept_customer_message("b", &"x".repeat(1_001)),
        Accepted::TranscriptFull
    );
    assert_eq!(s.accept_customer_message("c", "ok"), Accepted::New);
    assert_eq!(s.transcript().len(), 2);
}
