//! The per-frame hot paths of a node at a sale-day peak, so a regression shows before a load
//! run does.
//!
//! * `frame/encode_message`: numbering and serialising an agent message for a customer.
//! * `frame/decode_customer_message`, `frame/decode_agent_message`: parsing inbound frames.
//! * `outbox/emit_and_pull`: one frame through a session's outbox to its attached connection.
//! * `outbox/replay_512`: a reconnect that replays a full replay log (512 frames).
//! * `positions/fan_out_5000`: one positions tick telling 5,000 queued customers their place.
//!
//! Run: `cargo bench -p gateway --bench hot_paths`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gateway::outbox::{Envelope, Outbox};
use gateway::protocol::{parse_agent_frame, parse_customer_frame, Channel, Lang, ServerFrame};
use gateway::session::{SessionLimits, Sessions};

fn message() -> ServerFrame {
    ServerFrame::Message {
        id: "a-17".into(),
        from: "agent".into(),
        name: "小王".into(),
        text: "您好，我来帮您看看订单的物流信息，请稍等。".into(),
        auto: false,
        rich: Default::default(),
        offline: false,
    }
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let frame = message();
    g.bench_function("encode_message", |b| {
        b.iter(|| {
            Envelope {
                seq: 42,
                frame: &frame,
            }
            .to_json()
        })
    });
    let customer = r#"{"type":"message","id":"c-1","text":"退货运费谁出？我的订单还没到"}"#;
    g.bench_function("decode_customer_message", |b| {
        b.iter(|| parse_customer_frame(customer).unwrap())
    });
    let agent = r#"{"type":"message","session":"8f0c2b1e9a7d4c3b","id":"a-17","text":"您好，我来帮您看看"}"#;
    g.bench_function("decode_agent_message", |b| {
        b.iter(|| parse_agent_frame(agent).unwrap())
    });
    g.finish();
}

fn outbox(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("outbox");
    let frame = message();
    let out = Outbox::new(512);
    let attachment = out.attach(1, 0, 64);
    g.throughput(Throughput::Elements(1));
    g.bench_function("emit_and_pull", |b| {
        b.iter(|| {
            out.emit(&frame);
            attachment.pull().unwrap().unwrap()
        })
    });
    let full = Outbox::new(512);
    for _ in 0..512 {
        full.emit(&frame);
    }
    g.throughput(Throughput::Elements(512));
    let mut conn = 10;
    g.bench_function("replay_512", |b| {
        b.iter(|| {
            conn += 1;
            let a = full.attach(conn, 0, 64);
            let mut n = 0;
            while let Some(text) = a.pull().unwrap() {
                n += text.len();
            }
            n
        })
    });
    g.finish();
}

fn positions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let limits = SessionLimits {
        replay_frames: 512,
        dedup_ids: 64,
        messages_per_second: 2.0,
        message_burst: 5,
        frames_per_second: 20.0,
        frame_burst: 60,
        transcript_entries: 2000,
        transcript_bytes: 1 << 20,
    };
    let sessions = Sessions::new(Duration::from_secs(120), limits);
    let queued: Vec<_> = (0..5000)
        .map(|_| sessions.create(None, Channel::Web, Lang::Zh).session)
        .collect();
    let attachments: Vec<_> = queued.iter().map(|s| s.attach(1, 0, 64)).collect();
    let mut g = c.benchmark_group("positions");
    g.throughput(Throughput::Elements(queued.len() as u64));
    g.bench_function("fan_out_5000", |b| {
        b.iter_batched(
            || (),
            |()| {
                for (position, session) in queued.iter().enumerate() {
                    session.emit(&ServerFrame::Queued {
                        position: position + 1,
                        estimated_wait_s: 40,
                        no_agent_available: false,
                    });
                }
                // The connections take their frame, as they would between two ticks.
                for a in &attachments {
                    while a.pull().unwrap().is_some() {}
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, frames, outbox, positions);
criterion_main!(benches);
