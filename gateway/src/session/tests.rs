use super::*;

fn session() -> Session {
    Session::with_log(
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
        None,
        now_ms(),
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

fn limits() -> SessionLimits {
    SessionLimits {
        replay_frames: 4,
        dedup_ids: 8,
        messages_per_second: 100.0,
        message_burst: 100,
        frames_per_second: 100.0,
        frame_burst: 100,
        transcript_entries: 100,
        transcript_bytes: 10_000,
    }
}

fn line(from: Speaker, text: &str, id: Option<&str>) -> Entry {
    Entry::Line {
        line: TranscriptEntry::said(from, text, 1, id.map(str::to_string), Default::default()),
    }
}

fn logged(token: &str) -> Vec<Entry> {
    vec![
        Entry::Open {
            visitor: None,
            channel: Channel::App,
            lang: Lang::En,
            created_ms: 42,
            token: token::hash_to_hex(&token::hash(token)),
        },
        Entry::Frame {
            seq: 1,
            text: r#"{"seq":1,"type":"greeting"}"#.into(),
            line: None,
        },
        line(Speaker::Customer, "where is my parcel", Some("c1")),
        Entry::Frame {
            seq: 2,
            text: r#"{"seq":2,"type":"ack","id":"c1"}"#.into(),
            line: None,
        },
        Entry::State {
            state: SessionState::WithAgent {
                agent: "a01".into(),
                group: "after_sale".into(),
                agent_node: "n1".into(),
            },
            facts: Facts {
                complaint_level: 2,
                agents: vec!["a01".into()],
                ..Facts::default()
            },
        },
        // An agent's message: its frame and transcript line in one entry.
        Entry::Frame {
            seq: 3,
            text: r#"{"seq":3,"type":"message","id":"a1"}"#.into(),
            line: Some(TranscriptEntry::said(
                Speaker::Agent,
                "on its way",
                1,
                Some("a1".into()),
                Default::default(),
            )),
        },
        // Delivered already (a line with its id) and one the old owner never delivered.
        Entry::AgentMessage {
            agent: "a01".into(),
            name: "Wang".into(),
            id: "a1".into(),
            text: "on its way".into(),
            at_ms: 2,
            rich: Default::default(),
        },
        Entry::AgentMessage {
            agent: "a01".into(),
            name: "Wang".into(),
            id: "a2".into(),
            text: "tomorrow".into(),
            at_ms: 3,
            rich: Default::default(),
        },
    ]
}

fn probe() -> SessionLog {
    SessionLog {
        journal: Journal::off(),
        epoch: 2,
    }
}

#[test]
fn a_log_folds_back_into_the_session() {
    let rebuilt = rebuild("s9", logged("tok"), limits(), probe(), Some("tok")).unwrap();
    let s = &rebuilt.session;
    assert_eq!(s.channel, Channel::App);
    assert_eq!(s.created_ms, 42);
    assert!(matches!(s.state(), SessionState::WithAgent { ref agent, .. } if agent == "a01"));
    assert_eq!(s.complaint_level(), 2);
    assert_eq!(s.last_seq(), 3);
    assert_eq!(s.transcript().len(), 2);
    // The customer's message id is known: a re-send is a duplicate.
    assert_eq!(
        s.accept_customer_message("c1", "again"),
        Accepted::Duplicate
    );
    let ids: Vec<&str> = rebuilt.undelivered.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["a2"], "only the message no frame delivered");
}

#[test]
fn a_log_is_only_rebuilt_with_its_token_and_while_open() {
    assert!(matches!(
        rebuild("s9", logged("tok"), limits(), probe(), Some("other")),
        Err(RebuildError::Unknown)
    ));
    let mut closed = logged("tok");
    closed.push(Entry::State {
        state: SessionState::Closed {
            reason: "customer_closed".into(),
        },
        facts: Facts::default(),
    });
    assert!(matches!(
        rebuild("s9", closed, limits(), probe(), Some("tok")),
        Err(RebuildError::Closed)
    ));
    assert!(matches!(
        rebuild("s9", logged("tok")[1..].to_vec(), limits(), probe(), None),
        Err(RebuildError::Unknown)
    ));
}
