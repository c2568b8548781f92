//! Assignment latency of both dispatch backends.
//!
//! * `enqueue_assign/<backend>`: a customer asks for a person while agents are free: one
//!   `enqueue` that picks the least-loaded agent and assigns (10 agents × capacity 5, 20 chats
//!   open). The chat is released again outside the timed section.
//! * `release_drain/<backend>`: agents are full and 100 customers wait: one `release` that frees
//!   a slot and hands it to the queue head. A new customer is queued outside the timed section.
//!
//! The Redis backend runs against a fresh `redis-server` on a free port (or `REDIS_URL`), over
//! loopback, so its figures include one round trip. Run: `cargo bench -p gateway --bench assign`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::dispatch::{
    AgentSpec, Dispatcher, Enqueued, MemoryDispatcher, RedisDispatcher, Ticket,
};
use tokio::runtime::Runtime;

fn ticket(session: String) -> Ticket {
    Ticket {
        session,
        group: "g".to_owned(),
        priority: 0,
        node: "n1".to_owned(),
        enqueued_at_ms: 0,
    }
}

async fn roster(d: &dyn Dispatcher) {
    for i in 0..10 {
        let spec = AgentSpec {
            id: format!("a{i}"),
            groups: vec!["g".to_owned()],
            capacity: 5,
        };
        d.agent_online(&spec, "n1").await.unwrap();
        d.agent_ready(&spec.id, None).await.unwrap();
    }
}

fn bench_backend(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    make: &dyn Fn() -> Arc<dyn Dispatcher>,
) {
    let d = make();
    rt.block_on(async {
        roster(&*d).await;
        for i in 0..20 {
            d.enqueue(ticket(format!("open{i}"))).await.unwrap();
        }
    });
    let mut n = 0u64;
    c.bench_function(&format!("enqueue_assign/{name}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let start = Instant::now();
                    let got = d.enqueue(ticket(format!("e{n}"))).await.unwrap();
                    total += start.elapsed();
                    let Enqueued::Assigned(a) = got else {
                        panic!("an agent is free")
                    };
                    d.release(&a.agent, &a.session).await.unwrap();
                }
                total
            })
        })
    });

    let d = make();
    let mut open: Vec<(String, String)> = Vec::new();
    rt.block_on(async {
        roster(&*d).await;
        for i in 0..150 {
            if let Enqueued::Assigned(a) = d.enqueue(ticket(format!("q{i}"))).await.unwrap() {
                open.push((a.agent, a.session));
            }
        }
    });
    assert_eq!(open.len(), 50);
    let mut n = 0u64;
    c.bench_function(&format!("release_drain/{name}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (agent, session) = open.remove(0);
                    let start = Instant::now();
                    let got = d.release(&agent, &session).await.unwrap();
                    total += start.elapsed();
                    assert_eq!(got.len(), 1);
                    open.push((agent, got[0].session.clone()));
                    n += 1;
                    d.enqueue(ticket(format!("r{n}"))).await.unwrap();
                }
                total
            })
        })
    });
}

fn assign(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    bench_backend(c, &rt, "memory", &|| Arc::new(MemoryDispatcher::new()));

    let server = redis_server::RedisServer::start();
    let url = server.url().to_owned();
    bench_backend(c, &rt, "redis", &|| {
        let prefix = redis_server::unique_prefix("bench");
        Arc::new(
            rt.block_on(RedisDispatcher::connect(&url, &prefix))
                .unwrap(),
        )
    });
    drop(server);
}

criterion_group!(benches, assign);
criterion_main!(benches);
