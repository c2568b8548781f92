//! The connection loop driven through channels: no server, no TCP, the loop alone.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{close_code, Message};
use futures_util::{Sink, Stream};
use serde::Serialize;
use tokio::sync::mpsc;

use super::*;
use crate::outbox::Outbox;
use crate::shutdown::Shutdown;

/// What the loop wrote, as the client would read it; `cap` frames at most until the client
/// reads (a client that stops reading fills it, and then writes wait).
struct Wire {
    frames: VecDeque<Message>,
    cap: usize,
    waiting: Option<Waker>,
}

/// The loop's end of a fake WebSocket.
struct Pipe {
    incoming: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    wire: Arc<Mutex<Wire>>,
}

/// The client's end.
struct Client {
    send: mpsc::UnboundedSender<Result<Message, axum::Error>>,
    wire: Arc<Mutex<Wire>>,
}

fn pipe(cap: usize) -> (Pipe, Client) {
    let (send, incoming) = mpsc::unbounded_channel();
    let wire = Arc::new(Mutex::new(Wire {
        frames: VecDeque::new(),
        cap,
        waiting: None,
    }));
    (
        Pipe {
            incoming,
            wire: wire.clone(),
        },
        Client { send, wire },
    )
}

impl Client {
    fn say(&self, text: &str) {
        let _ = self.send.send(Ok(Message::Text(text.to_owned().into())));
    }

    /// Everything written so far (the client reads it all).
    fn read(&self) -> Vec<Message> {
        let mut wire = self.wire.lock().expect("wire");
        let frames = wire.frames.drain(..).collect();
        if let Some(waker) = wire.waiting.take() {
            waker.wake();
        }
        frames
    }
}

impl Stream for Pipe {
    type Item = Result<Message, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx)
    }
}

impl Sink<Message> for Pipe {
    type Error = axum::Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut wire = self.wire.lock().expect("wire");
        if wire.frames.len() < wire.cap {
            return Poll::Ready(Ok(()));
        }
        wire.waiting = Some(cx.waker().clone());
        Poll::Pending
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.wire.lock().expect("wire").frames.push_back(item);
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// Records what the loop hands it; `bye` ends the party.
#[derive(Default)]
struct Recorder {
    texts: Vec<String>,
    binaries: usize,
    resume_at: Option<u64>,
}

impl FrameHandler for Recorder {
    const SOCKET: &'static str = "test";
    async fn on_text(&mut self, text: &str) -> Option<String> {
        self.texts.push(text.to_owned());
        (text == "bye").then(|| "done".to_owned())
    }
    fn tell(&mut self, code: ErrorCode, _: &'static str) {
        if code == ErrorCode::BinaryNotSupported {
            self.binaries += 1;
        }
    }
    fn take_frame(&mut self) -> FrameVerdict {
        FrameVerdict::Handle
    }
    async fn on_shutdown(&mut self) -> Option<u64> {
        self.resume_at
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame {
    Note { n: u32 },
}

const TIMING: Timing = Timing {
    write_timeout: Duration::from_millis(200),
    ping_every_s: 0,
};

fn texts(frames: &[Message]) -> Vec<serde_json::Value> {
    frames
        .iter()
        .filter_map(|m| match m {
            Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
            _ => None,
        })
        .collect()
}

fn close_code_of(frames: &[Message]) -> Option<u16> {
    frames.iter().find_map(|m| match m {
        Message::Close(Some(frame)) => Some(frame.code),
        _ => None,
    })
}

#[tokio::test]
async fn a_client_that_falls_behind_its_queue_is_kicked_with_1013() {
    let outbox = Outbox::new(64);
    let mut attachment = outbox.attach(1, 0, 2);
    // Three frames for a queue of two, before the connection could write any.
    for n in 0..3 {
        outbox.emit(&Frame::Note { n });
    }
    let (mut socket, client) = pipe(64);
    let shutdown = Shutdown::new();
    let mut handler = Recorder::default();
    let end = run(
        &mut socket,
        TIMING,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Dropped("kicked")));
    let written = client.read();
    assert!(texts(&written).is_empty(), "a kicked client gets no frames");
    assert_eq!(close_code_of(&written), Some(close_code::AGAIN));
    // It resumes with `last_seq` and gets everything it missed.
    let again = outbox.attach(2, 0, 2);
    let first = again
        .pull()
        .ok()
        .flatten()
        .expect("the replay starts again");
    assert!(first.as_str().contains(r#""seq":1"#));
}

#[tokio::test]
async fn frames_go_out_in_order_and_the_client_is_heard_until_it_says_bye() {
    let outbox = Outbox::new(64);
    let mut attachment = outbox.attach(1, 0, 8);
    for n in 0..3 {
        outbox.emit(&Frame::Note { n });
    }
    let (mut socket, client) = pipe(64);
    client.say("hello");
    let _ = client.send.send(Ok(Message::Binary(vec![1, 2].into())));
    client.say("bye");
    let shutdown = Shutdown::new();
    let mut handler = Recorder::default();
    let end = run(
        &mut socket,
        TIMING,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Closed(ref reason) if reason == "done"));
    assert_eq!(handler.texts, ["hello", "bye"]);
    assert_eq!(handler.binaries, 1);
    let written = client.read();
    let seqs: Vec<u64> = texts(&written)
        .iter()
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(close_code_of(&written), Some(close_code::NORMAL));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let outbox = Outbox::new(64);
    let mut attachment = outbox.attach(1, 0, 16);
    let (mut socket, client) = pipe(1);
    let shutdown = Shutdown::new();
    let mut handler = Recorder::default();
    for n in 0..4 {
        outbox.emit(&Frame::Note { n });
    }
    let end = run(
        &mut socket,
        TIMING,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Dropped("write failed")));
    assert_eq!(
        texts(&client.read()).len(),
        1,
        "only what fitted was written"
    );
}

#[tokio::test]
async fn on_shutdown_a_resumable_party_is_told_to_reconnect_and_closed_with_1012() {
    let outbox = Outbox::new(64);
    let mut attachment = outbox.attach(1, 0, 8);
    let (mut socket, client) = pipe(64);
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let mut handler = Recorder {
        resume_at: Some(7),
        ..Recorder::default()
    };
    let end = run(
        &mut socket,
        TIMING,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Dropped("shutdown")));
    let written = client.read();
    let frames = texts(&written);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["type"], "reconnect");
    assert_eq!(frames[0]["seq"], 7);
    assert_eq!(close_code_of(&written), Some(SERVICE_RESTART));

    // Without a durable log there is nothing to resume: a plain "going away".
    let mut attachment = outbox.attach(2, 0, 8);
    let (mut socket, client) = pipe(64);
    let mut handler = Recorder::default();
    let end = run(
        &mut socket,
        TIMING,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Dropped("shutdown")));
    assert_eq!(close_code_of(&client.read()), Some(close_code::AWAY));
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let outbox = Outbox::new(64);
    let mut attachment = outbox.attach(1, 0, 8);
    let (mut socket, client) = pipe(64);
    let too_long = WsError::Capacity(CapacityError::MessageTooLong {
        size: 1 << 20,
        max_size: 1 << 16,
    });
    let _ = client.send.send(Err(axum::Error::new(too_long)));
    drop(client.send);
    let wire = client.wire;
    let shutdown = Shutdown::new();
    let mut handler = Recorder::default();
    let end = run(
        &mut socket,
        TIMING,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Dropped("frame too large")));
    let written: Vec<Message> = wire.lock().expect("wire").frames.drain(..).collect();
    assert_eq!(close_code_of(&written), Some(close_code::SIZE));
    assert!(handler.texts.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_after_three_ping_intervals() {
    let outbox = Outbox::new(64);
    let mut attachment = outbox.attach(1, 0, 8);
    let (mut socket, client) = pipe(64);
    let shutdown = Shutdown::new();
    let mut handler = Recorder::default();
    let timing = Timing {
        ping_every_s: 1,
        ..TIMING
    };
    let started = Instant::now();
    let end = run(
        &mut socket,
        timing,
        shutdown.listen(),
        &mut attachment,
        &mut handler,
    )
    .await;
    assert!(matches!(end, End::Dropped("silent")));
    assert!(started.elapsed() >= Duration::from_secs(3));
    let written = client.read();
    assert!(written.iter().any(|m| matches!(m, Message::Ping(_))));
    assert_eq!(close_code_of(&written), Some(close_code::AWAY));
}
