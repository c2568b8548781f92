//! Behaviour of the routing core, each test run on the memory and the Redis backend
//! (`<test>::memory`, `<test>::redis`). Redis tests start their own `redis-server` (or use
//! `REDIS_URL`) and fail without one.

// The bodies are plain `async fn`s run by the `both_backends!` tests, which clippy's
// `allow-unwrap-in-tests` does not see as tests.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gateway::dispatch::{Capacity, DispatchError, Enqueued, Offered, TransferTarget};
use support::dispatch_env::{agent_of, load, position_of, spec, ticket, Env};

both_backends!(
    least_loaded_then_idle_longest,
    never_above_capacity,
    queue_orders_by_priority_then_arrival,
    positions_follow_assignment_and_cancel,
    release_drains_the_head_at_once,
    ready_drains_and_capacity_only_lowers,
    away_gets_no_new_chats,
    offline_requeues_at_the_front,
    transfer_to_group_and_agent,
    enqueue_is_idempotent,
    disconnected_agent_is_reaped_after_grace,
    dead_node_is_reaped_after_grace,
    race_200_customers_10_agents_two_nodes,
    only_free_ready_agents_are_picked_as_they_change,
    offer_to_the_last_agent_is_atomic_and_never_over_capacity,
    capacity_sums_ready_agents_per_group_as_the_snapshot_does,
);

async fn least_loaded_then_idle_longest(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g"], 2), "n1").await.unwrap();
    d.agent_online(&spec("a2", &["g"], 2), "n1").await.unwrap();
    d.agent_online(&spec("a3", &["g"], 4), "n2").await.unwrap();
    for a in ["a1", "a2", "a3"] {
        assert!(d.agent_ready(a, None).await.unwrap().is_empty());
    }
    let mut got = Vec::new();
    for s in ["s1", "s2", "s3", "s4", "s5", "s6"] {
        got.push(agent_of(&d.enqueue(ticket(s, "g", 0)).await.unwrap()).to_owned());
    }
    // all idle: a1 (ready first), a2, then a3 (0/4); s4: a3 at 1/4 beats 1/2; s5: all at 1/2,
    // a1 idle longest (last assigned s1); s6: a2 (1/2) vs a3 (2/4), a2 idle longer.
    assert_eq!(got, ["a1", "a2", "a3", "a3", "a1", "a2"]);
    let Enqueued::Assigned(a) = d.enqueue(ticket("s7", "g", 0)).await.unwrap() else {
        panic!("a3 has room")
    };
    assert_eq!((a.agent.as_str(), a.agent_node.as_str()), ("a3", "n2"));
    assert_eq!(a.customer_node, "n1");
}

async fn never_above_capacity(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g"], 2), "n1").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    let mut queued = Vec::new();
    for i in 0..5 {
        match d.enqueue(ticket(&format!("s{i}"), "g", 0)).await.unwrap() {
            Enqueued::Assigned(a) => assert_eq!(a.agent, "a1"),
            Enqueued::Queued { position, group } => {
                assert_eq!(group, "g");
                queued.push(position);
            }
        }
    }
    assert_eq!(queued, [1, 2, 3]);
    let snap = d.snapshot().await.unwrap();
    assert_eq!(load(&snap, "a1"), 2);
    assert_eq!(snap.queues["g"], 3);
}

async fn queue_orders_by_priority_then_arrival(env: Env) {
    let d = &env.d;
    for (s, p) in [("s1", 0), ("s2", 0), ("s3", 2), ("s4", 1), ("s5", 2)] {
        position_of(&d.enqueue(ticket(s, "g", p)).await.unwrap());
    }
    let order: Vec<_> = d.positions("g").await.unwrap();
    let expected = ["s3", "s5", "s4", "s1", "s2"];
    assert_eq!(
        order.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        order.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(d.position("s4").await.unwrap(), Some(("g".to_owned(), 3)));
    d.agent_online(&spec("a1", &["g"], 5), "n1").await.unwrap();
    let got = d.agent_ready("a1", None).await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.session.as_str()).collect::<Vec<_>>(),
        expected
    );
}

async fn positions_follow_assignment_and_cancel(env: Env) {
    let d = &env.d;
    for s in ["s1", "s2", "s3", "s4"] {
        d.enqueue(ticket(s, "g", 0)).await.unwrap();
    }
    assert!(d.cancel("s2").await.unwrap().is_empty());
    assert!(
        d.cancel("s2").await.unwrap().is_empty(),
        "cancel is idempotent"
    );
    let expect = |v: &[(&str, usize)]| -> Vec<(String, usize)> {
        v.iter().map(|(s, p)| ((*s).to_owned(), *p)).collect()
    };
    let now: Vec<(String, usize)> = d.positions("g").await.unwrap();
    assert_eq!(now, expect(&[("s1", 1), ("s3", 2), ("s4", 3)]));
    d.agent_online(&spec("a1", &["g"], 1), "n1").await.unwrap();
    let got = d.agent_ready("a1", None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].session, "s1");
    assert_eq!(d.position("s1").await.unwrap(), None);
    assert_eq!(d.position("s4").await.unwrap(), Some(("g".to_owned(), 2)));
    let now: Vec<(String, usize)> = d.positions("g").await.unwrap();
    assert_eq!(now, expect(&[("s3", 1), ("s4", 2)]));
    // the customer of an assigned chat leaves: the slot goes to the head
    let got = d.cancel("s1").await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.session.as_str()).collect::<Vec<_>>(),
        ["s3"]
    );
    assert_eq!(d.positions("g").await.unwrap(), expect(&[("s4", 1)]));
}

async fn release_drains_the_head_at_once(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g", "h"], 1), "n1")
        .await
        .unwrap();
    d.agent_ready("a1", None).await.unwrap();
    assert_eq!(
        agent_of(&d.enqueue(ticket("s1", "g", 0)).await.unwrap()),
        "a1"
    );
    d.enqueue(ticket("s2", "h", 0)).await.unwrap();
    d.enqueue(ticket("s3", "g", 0)).await.unwrap();
    // s2 arrived first (in another of a1's groups) and goes first
    let got = d.release("a1", "s1").await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].session.as_str(), got[0].group.as_str()),
        ("s2", "h")
    );
    assert_eq!(d.position("s3").await.unwrap(), Some(("g".to_owned(), 1)));
    assert!(
        d.release("a1", "s1").await.unwrap().is_empty(),
        "already closed"
    );
    assert!(matches!(
        d.release("a1", "s3").await,
        Err(DispatchError::NotAssigned { .. })
    ));
    let got = d.release("a1", "s2").await.unwrap();
    assert_eq!(got[0].session, "s3");
    assert_eq!(load(&d.snapshot().await.unwrap(), "a1"), 1);
}

async fn ready_drains_and_capacity_only_lowers(env: Env) {
    let d = &env.d;
    for s in ["s1", "s2", "s3", "s4", "s5"] {
        d.enqueue(ticket(s, "g", 0)).await.unwrap();
    }
    d.agent_online(&spec("a1", &["g"], 3), "n1").await.unwrap();
    assert_eq!(
        d.snapshot().await.unwrap().queues["g"],
        5,
        "away: nothing yet"
    );
    let got = d.agent_ready("a1", Some(2)).await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.session.as_str()).collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    // asking for more than the roster gives the roster's capacity
    let got = d.agent_ready("a1", Some(9)).await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.session.as_str()).collect::<Vec<_>>(),
        ["s3"]
    );
    let snap = d.snapshot().await.unwrap();
    assert_eq!(
        (snap.agents[0].capacity, snap.agents[0].roster_capacity),
        (3, 3)
    );
    // lowering below the current load keeps the chats but takes none until below it
    assert!(d.agent_ready("a1", Some(1)).await.unwrap().is_empty());
    assert!(d.release("a1", "s1").await.unwrap().is_empty());
    assert!(d.release("a1", "s2").await.unwrap().is_empty());
    let got = d.release("a1", "s3").await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.session.as_str()).collect::<Vec<_>>(),
        ["s4"]
    );
    assert!(matches!(
        d.agent_ready("nobody", None).await,
        Err(DispatchError::UnknownAgent(_))
    ));
}

async fn away_gets_no_new_chats(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g"], 3), "n1").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    d.enqueue(ticket("s1", "g", 0)).await.unwrap();
    d.agent_away("a1").await.unwrap();
    assert_eq!(
        position_of(&d.enqueue(ticket("s2", "g", 0)).await.unwrap()),
        1
    );
    assert!(
        d.release("a1", "s1").await.unwrap().is_empty(),
        "away: no refill"
    );
    let got = d.agent_ready("a1", None).await.unwrap();
    assert_eq!(got[0].session, "s2");
}

/// Redis keeps a set of each group's free agents to pick from: every change of status,
/// capacity, chats or groups must keep it exact, or a free agent is passed over (a queue that
/// never drains) or a full one picked.
async fn only_free_ready_agents_are_picked_as_they_change(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g", "h"], 1), "n1")
        .await
        .unwrap();
    d.agent_ready("a1", None).await.unwrap();
    // Full in every group it serves.
    assert_eq!(
        agent_of(&d.enqueue(ticket("s1", "g", 0)).await.unwrap()),
        "a1"
    );
    assert_eq!(
        position_of(&d.enqueue(ticket("s2", "h", 0)).await.unwrap()),
        1
    );
    // A release frees it in both groups: the other group's head is drained into the slot.
    let got = d.release("a1", "s1").await.unwrap();
    assert_eq!((got.len(), got[0].session.as_str()), (1, "s2"));
    d.release("a1", "s2").await.unwrap();
    // Signing in again (a reconnect) leaves it away until it says ready, with new groups.
    d.agent_online(&spec("a1", &["h"], 1), "n2").await.unwrap();
    assert_eq!(
        position_of(&d.enqueue(ticket("s3", "h", 0)).await.unwrap()),
        1
    );
    let got = d.agent_ready("a1", None).await.unwrap();
    assert_eq!((got.len(), got[0].session.as_str()), (1, "s3"));
    d.release("a1", "s3").await.unwrap();
    // No longer in g: a customer of g waits.
    assert_eq!(
        position_of(&d.enqueue(ticket("s4", "g", 0)).await.unwrap()),
        1
    );
    // Disconnected: passed over; offline: gone from the groups for good.
    d.agent_disconnected("a1").await.unwrap();
    assert_eq!(
        position_of(&d.enqueue(ticket("s5", "h", 0)).await.unwrap()),
        1
    );
    d.agent_offline("a1").await.unwrap();
    d.agent_online(&spec("a2", &["h"], 2), "n1").await.unwrap();
    let got = d.agent_ready("a2", None).await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.agent.as_str()).collect::<Vec<_>>(),
        ["a2"]
    );
}

async fn offline_requeues_at_the_front(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g"], 2), "n1").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    for (s, p) in [("s1", 0), ("s2", 0), ("s3", 0), ("s4", 0), ("s5", 1)] {
        d.enqueue(ticket(s, "g", p)).await.unwrap();
    }
    let r = d.agent_offline("a1").await.unwrap();
    let back: Vec<_> = r.tickets.iter().map(|t| t.session.as_str()).collect();
    assert_eq!(back, ["s1", "s2"]);
    assert!(r.assignments.is_empty());
    let order: Vec<String> = d
        .positions("g")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    // front of their priority: the complaint (s5) still first
    assert_eq!(order, ["s5", "s1", "s2", "s3", "s4"]);
    assert!(d.snapshot().await.unwrap().agents.is_empty());
    assert_eq!(d.agent_offline("a1").await.unwrap(), Default::default());
    // with a free agent the requeued chats are reassigned in the same call
    d.agent_online(&spec("a2", &["g"], 2), "n2").await.unwrap();
    d.agent_ready("a2", None).await.unwrap();
    d.agent_online(&spec("a3", &["g"], 1), "n2").await.unwrap();
    let r = d.agent_offline("a2").await.unwrap();
    assert_eq!(r.tickets.len(), 2);
    assert!(r.assignments.is_empty(), "a3 is away");
    let got = d.agent_ready("a3", None).await.unwrap();
    assert_eq!(got[0].session, "s5");
}

async fn transfer_to_group_and_agent(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["pre"], 1), "n1")
        .await
        .unwrap();
    d.agent_online(&spec("a2", &["post"], 1), "n2")
        .await
        .unwrap();
    d.agent_ready("a1", None).await.unwrap();
    d.agent_ready("a2", None).await.unwrap();
    assert_eq!(
        agent_of(&d.enqueue(ticket("s1", "pre", 0)).await.unwrap()),
        "a1"
    );
    d.enqueue(ticket("s2", "pre", 0)).await.unwrap();
    let t = d
        .transfer("s1", TransferTarget::Group("post".into()))
        .await
        .unwrap();
    assert_eq!(agent_of(&t.session), "a2");
    assert_eq!(t.assignments.len(), 1, "a1's freed slot goes to s2");
    assert_eq!(
        (
            t.assignments[0].session.as_str(),
            t.assignments[0].agent.as_str()
        ),
        ("s2", "a1")
    );
    assert!(matches!(
        d.transfer("s1", TransferTarget::Agent("a1".into())).await,
        Err(DispatchError::AgentUnavailable(_))
    ));
    d.agent_online(&spec("a3", &["post"], 2), "n1")
        .await
        .unwrap();
    d.agent_ready("a3", None).await.unwrap();
    let t = d
        .transfer("s2", TransferTarget::Agent("a3".into()))
        .await
        .unwrap();
    let Enqueued::Assigned(a) = &t.session else {
        panic!("{t:?}")
    };
    assert_eq!((a.agent.as_str(), a.group.as_str()), ("a3", "pre"));
    assert!(t.assignments.is_empty());
    // to a group with nobody free: front of that queue
    d.enqueue(ticket("s3", "pre", 0)).await.unwrap();
    d.enqueue(ticket("s4", "pre", 0)).await.unwrap();
    let t = d
        .transfer("s2", TransferTarget::Group("pre".into()))
        .await
        .unwrap();
    assert_eq!(
        t.session,
        Enqueued::Queued {
            group: "pre".into(),
            position: 1
        }
    );
    assert_eq!(load(&d.snapshot().await.unwrap(), "a3"), 0);
    assert!(matches!(
        d.transfer("nope", TransferTarget::Group("pre".into()))
            .await,
        Err(DispatchError::UnknownSession(_))
    ));
}

async fn enqueue_is_idempotent(env: Env) {
    let d = &env.d;
    d.enqueue(ticket("s0", "g", 0)).await.unwrap();
    let first = d.enqueue(ticket("s1", "g", 0)).await.unwrap();
    assert_eq!(d.enqueue(ticket("s1", "g", 0)).await.unwrap(), first);
    assert_eq!(d.snapshot().await.unwrap().queues["g"], 2);
    d.agent_online(&spec("a1", &["g"], 5), "n1").await.unwrap();
    let got = d.agent_ready("a1", None).await.unwrap();
    assert_eq!(got.len(), 2);
    let again = d.enqueue(ticket("s1", "g", 0)).await.unwrap();
    assert_eq!(again, Enqueued::Assigned(got[1].clone()));
    let snap = d.snapshot().await.unwrap();
    assert_eq!((load(&snap, "a1"), snap.queues["g"]), (2, 0));
}

async fn disconnected_agent_is_reaped_after_grace(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g"], 1), "n1").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    d.enqueue(ticket("s1", "g", 0)).await.unwrap();
    d.agent_disconnected("a1").await.unwrap();
    assert!(
        d.reap(200).await.unwrap().tickets.is_empty(),
        "within grace"
    );
    // reconnect (on another node) within the grace: keeps the chat
    d.agent_online(&spec("a1", &["g"], 2), "n2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(d.reap(200).await.unwrap().tickets.is_empty());
    assert_eq!(load(&d.snapshot().await.unwrap(), "a1"), 1);
    d.enqueue(ticket("s2", "g", 0)).await.unwrap();
    d.agent_disconnected("a1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = d.reap(200).await.unwrap();
    assert_eq!(
        r.tickets
            .iter()
            .map(|t| t.session.as_str())
            .collect::<Vec<_>>(),
        ["s1"]
    );
    assert_eq!(d.position("s1").await.unwrap(), Some(("g".to_owned(), 1)));
    assert_eq!(d.position("s2").await.unwrap(), Some(("g".to_owned(), 2)));
}

async fn dead_node_is_reaped_after_grace(env: Env) {
    // Generous timings measured from one start instant, so a loaded CI machine does not
    // turn "still alive" into "expired": liveness 1 s, grace 1.5 s.
    let d = &env.d;
    let t0 = tokio::time::Instant::now();
    d.heartbeat("n1", 1_000).await.unwrap();
    d.heartbeat("n2", 60_000).await.unwrap();
    d.agent_online(&spec("a1", &["g"], 1), "n1").await.unwrap();
    d.agent_online(&spec("a2", &["g"], 1), "n2").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    d.agent_ready("a2", None).await.unwrap();
    for s in ["s1", "s2", "s3"] {
        d.enqueue(ticket(s, "g", 0)).await.unwrap();
    }
    assert!(
        d.reap(1_500).await.unwrap().tickets.is_empty(),
        "n1 still alive"
    );
    tokio::time::sleep_until(t0 + Duration::from_millis(1_300)).await;
    assert!(
        d.reap(1_500).await.unwrap().tickets.is_empty(),
        "n1 expired, within grace"
    );
    tokio::time::sleep_until(t0 + Duration::from_millis(2_800)).await;
    let r = d.reap(1_500).await.unwrap();
    assert_eq!(
        r.tickets
            .iter()
            .map(|t| t.session.as_str())
            .collect::<Vec<_>>(),
        ["s1"]
    );
    let order: Vec<String> = d
        .positions("g")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(order, ["s1", "s3"]);
    let snap = d.snapshot().await.unwrap();
    assert_eq!(
        snap.agents
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        ["a2"]
    );
    assert_eq!(snap.agents[0].sessions, ["s2"]);
    assert!(
        d.reap(1_500).await.unwrap().tickets.is_empty(),
        "reaped once"
    );
}

/// 200 customers against 10 agents of capacity 5, enqueued concurrently from two nodes.
async fn race_200_customers_10_agents_two_nodes(env: Env) {
    let nodes = [env.d.clone(), env.second_node().await];
    for i in 0..10 {
        let d = &nodes[i % 2];
        d.agent_online(
            &spec(&format!("a{i:02}"), &["g"], 5),
            &format!("n{}", i % 2),
        )
        .await
        .unwrap();
        d.agent_ready(&format!("a{i:02}"), None).await.unwrap();
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let d = nodes[i % 2].clone();
            tokio::spawn(async move {
                let s = format!("c{i:03}");
                (s.clone(), d.enqueue(ticket(&s, "g", 0)).await.unwrap())
            })
        })
        .collect();
    let mut assigned = HashSet::new();
    let mut queued = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (s, Enqueued::Assigned(a)) => {
                assert_eq!(a.session, s);
                assert!(assigned.insert(s));
            }
            (s, Enqueued::Queued { position, .. }) => queued.push((position, s)),
        }
    }
    assert_eq!(assigned.len(), 50);
    queued.sort();
    assert_eq!(
        queued.iter().map(|q| q.0).collect::<Vec<_>>(),
        (1..=150).collect::<Vec<_>>()
    );
    let snap = nodes[1].snapshot().await.unwrap();
    let mut seen = HashSet::new();
    for a in &snap.agents {
        assert_eq!((a.load, a.sessions.len()), (5, 5), "{a:?}");
        for s in &a.sessions {
            assert!(seen.insert(s.clone()), "{s} assigned twice");
        }
    }
    assert_eq!(seen, assigned);
    let listed = nodes[0].positions("g").await.unwrap();
    assert_eq!(
        listed,
        queued
            .iter()
            .map(|(p, s)| (s.clone(), *p))
            .collect::<Vec<_>>()
    );
    // agents close chats one by one (alternating nodes): the queue drains strictly in order
    let mut open: Vec<(String, String)> = snap
        .agents
        .iter()
        .flat_map(|a| a.sessions.iter().map(|s| (a.id.clone(), s.clone())))
        .collect();
    for (n, (_, expected)) in queued.iter().enumerate() {
        let (agent, session) = open.remove(0);
        let got = nodes[n % 2].release(&agent, &session).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((&got[0].session, &got[0].agent), (expected, &agent));
        open.push((agent, expected.clone()));
        if n % 50 == 0 {
            let head = nodes[0].positions("g").await.unwrap();
            assert_eq!(head.len(), 149 - n);
            assert!(head.iter().enumerate().all(|(i, (_, p))| *p == i + 1));
        }
    }
    let snap = nodes[0].snapshot().await.unwrap();
    assert_eq!(snap.queues["g"], 0);
    assert!(snap.agents.iter().all(|a| a.load == 5));
}

#[test]
fn settings_parse_strictly_and_validate() {
    use gateway::dispatch::{Backend, DispatchSettings};
    let s: DispatchSettings =
        serde_json::from_str(r#"{"backend":"redis","redis_url":"redis://h:1/"}"#).unwrap();
    assert_eq!(
        (s.backend, s.key_prefix.as_str(), s.agent_grace_ms),
        (Backend::Redis, "kefu", 30_000)
    );
    s.validate().unwrap();
    assert!(serde_json::from_str::<DispatchSettings>(r#"{"backend":"mysql"}"#).is_err());
    assert!(serde_json::from_str::<DispatchSettings>(r#"{"redis_uri":"x"}"#).is_err());
    let no_url = DispatchSettings {
        backend: Backend::Redis,
        ..Default::default()
    };
    assert!(matches!(no_url.validate(), Err(DispatchError::Config(_))));
    let braces = DispatchSettings {
        key_prefix: "a{b}".into(),
        ..Default::default()
    };
    assert!(matches!(braces.validate(), Err(DispatchError::Config(_))));
}

/// `connect` builds both backends, and every Redis key lives under the `{prefix}` hash tag.
#[tokio::test]
async fn connect_and_key_layout() {
    use gateway::dispatch::{connect, Backend, DispatchSettings};
    use support::redis_server::{unique_prefix, RedisServer};
    let memory = connect(&DispatchSettings::default()).await.unwrap();
    assert!(memory.snapshot().await.unwrap().agents.is_empty());
    let server = RedisServer::start();
    let settings = DispatchSettings {
        backend: Backend::Redis,
        redis_url: Some(server.url().to_owned()),
        key_prefix: unique_prefix("layout"),
        ..Default::default()
    };
    let d = connect(&settings).await.unwrap();
    d.heartbeat("n1", 5_000).await.unwrap();
    d.agent_online(&spec("a1", &["g"], 1), "n1").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    d.enqueue(ticket("s1", "g", 0)).await.unwrap();
    d.enqueue(ticket("s2", "g", 1)).await.unwrap();
    d.agent_disconnected("a1").await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("*{}*", settings.key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 10, "{keys:?}");
    let tag = format!("{{{}}}:", settings.key_prefix);
    assert!(keys.iter().all(|k| k.starts_with(&tag)), "{keys:?}");
}

/// Issue #17: a returning customer offered to their last agent first, from two nodes at once.
async fn offer_to_the_last_agent_is_atomic_and_never_over_capacity(env: Env) {
    let d = &env.d;
    let other = env.second_node().await;
    d.agent_online(&spec("a1", &["g"], 2), "n1").await.unwrap();
    d.agent_online(&spec("a2", &["g"], 5), "n1").await.unwrap();
    d.agent_online(&spec("away", &["g"], 5), "n1")
        .await
        .unwrap();
    d.agent_ready("a1", None).await.unwrap();
    d.agent_ready("a2", None).await.unwrap();
    // Not ready, or not of the group: nothing changes.
    assert_eq!(
        d.offer(ticket("s0", "g", 0), "away").await.unwrap(),
        Offered::Unavailable
    );
    assert_eq!(
        d.offer(ticket("s0", "h", 0), "a1").await.unwrap(),
        Offered::Unavailable
    );
    assert_eq!(d.position("s0").await.unwrap(), None);
    // Ten offers to a1 from two nodes at once: exactly its two free slots are taken.
    let mut calls = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { d.clone() } else { other.clone() };
        calls.push(tokio::spawn(async move {
            node.offer(ticket(&format!("r{i}"), "g", 0), "a1")
                .await
                .unwrap()
        }));
    }
    let mut assigned = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Offered::Assigned(a) => {
                assert_eq!(a.agent, "a1");
                assigned.push(a.session);
            }
            Offered::Busy => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(assigned.len(), 2);
    let snap = d.snapshot().await.unwrap();
    assert_eq!(load(&snap, "a1"), 2);
    assert_eq!(load(&snap, "a2"), 0);
    // A session the dispatcher knows keeps its place.
    let known = d.offer(ticket(&assigned[0], "g", 0), "a2").await.unwrap();
    let Offered::Known(Enqueued::Assigned(a)) = known else {
        panic!("{known:?}")
    };
    assert_eq!(a.agent, "a1");
    // A busy agent's customer then goes to the queue as anyone (to a2 here).
    assert_eq!(
        agent_of(&d.enqueue(ticket("late", "g", 0)).await.unwrap()),
        "a2"
    );
}

async fn capacity_sums_ready_agents_per_group_as_the_snapshot_does(env: Env) {
    let d = &env.d;
    d.agent_online(&spec("a1", &["g", "h"], 3), "n1")
        .await
        .unwrap();
    d.agent_online(&spec("a2", &["g"], 5), "n1").await.unwrap();
    d.agent_online(&spec("a3", &["h"], 4), "n2").await.unwrap();
    d.agent_online(&spec("a4", &["k"], 2), "n2").await.unwrap();
    for s in ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"] {
        d.enqueue(ticket(s, "g", 0)).await.unwrap();
    }
    d.enqueue(ticket("t1", "h", 0)).await.unwrap();
    // a1 ready at a lowered 2, a2 ready at its roster's 5 (loads do not count), a3 ready then
    // away, a4 never ready.
    d.agent_ready("a1", Some(2)).await.unwrap();
    d.agent_ready("a2", None).await.unwrap();
    d.agent_ready("a3", None).await.unwrap();
    d.agent_away("a3").await.unwrap();
    let capacity = d.capacity().await.unwrap();
    assert_eq!(
        capacity.ready,
        HashMap::from([("g".to_string(), 7), ("h".to_string(), 2)])
    );
    assert_eq!(capacity.queues["g"], 2, "9 queued, 7 taken");
    assert_eq!(capacity.queues["h"], 0);
    assert_eq!(capacity, Capacity::of(&d.snapshot().await.unwrap()));
}

/// A Redis dispatcher of its own: the server (kept alive by the caller), the key prefix, the
/// dispatcher.
async fn redis_dispatcher(
    name: &str,
) -> (
    support::redis_server::RedisServer,
    String,
    gateway::dispatch::RedisDispatcher,
) {
    use support::redis_server::{unique_prefix, RedisServer};
    let server = RedisServer::start();
    let prefix = unique_prefix(name);
    let d = gateway::dispatch::RedisDispatcher::connect(server.url(), &prefix)
        .await
        .unwrap();
    (server, prefix, d)
}

/// Redis picks from a per-group sorted set (`{prefix}:pick:<group>`) instead of scanning the
/// group. A wrong entry there (left by a crash between versions, or by hand) must cost at most
/// a retry: a full or away agent at the head is checked, corrected and passed over, never
/// given a chat over capacity, and a free agent missing from the set is not a stuck queue once
/// its state changes.
#[tokio::test]
async fn redis_pick_set_corrects_entries_out_of_step() {
    use gateway::dispatch::Dispatcher;
    let (server, prefix, d) = redis_dispatcher("pick").await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pick = format!("{{{prefix}}}:pick:g");
    d.agent_online(&spec("full", &["g"], 1), "n1")
        .await
        .unwrap();
    d.agent_online(&spec("away", &["g"], 3), "n1")
        .await
        .unwrap();
    d.agent_online(&spec("free", &["g"], 2), "n1")
        .await
        .unwrap();
    d.agent_ready("full", None).await.unwrap();
    d.agent_ready("free", None).await.unwrap();
    assert_eq!(
        agent_of(&d.enqueue(ticket("s1", "g", 0)).await.unwrap()),
        "full"
    );
    // Forged heads: the full agent and the away one, both at load 0 and idle longest.
    for id in ["full", "away"] {
        let member = format!("{:020}:{id}", 0);
        let _: () = redis::cmd("ZADD")
            .arg(&pick)
            .arg(0)
            .arg(&member)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(
        agent_of(&d.enqueue(ticket("s2", "g", 0)).await.unwrap()),
        "free"
    );
    assert_eq!(
        agent_of(&d.enqueue(ticket("s3", "g", 0)).await.unwrap()),
        "free"
    );
    assert_eq!(
        position_of(&d.enqueue(ticket("s4", "g", 0)).await.unwrap()),
        1
    );
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(&pick)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "every agent is full or away: {left:?}");
    let snap = d.snapshot().await.unwrap();
    assert_eq!((load(&snap, "full"), load(&snap, "free")), (1, 2));
    // A free agent lost from the set: its next change (here a release) puts it back.
    let _: () = redis::cmd("DEL")
        .arg(&pick)
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = d.release("free", "s2").await.unwrap();
    assert_eq!((got.len(), got[0].session.as_str()), (1, "s4"));
}

/// On Redis every node asks for the capacity view once a second, and the first to ask leaves
/// a copy for the others (`view.lua`): a view asked again at once is that copy, even after a
/// change, and the copy is gone within a second, so a change shows by the next tick.
#[tokio::test]
async fn redis_capacity_view_is_shared_for_under_a_second() {
    use gateway::dispatch::Dispatcher;
    let (_server, _, d) = redis_dispatcher("capacity").await;
    d.agent_online(&spec("a1", &["g"], 3), "n1").await.unwrap();
    d.agent_online(&spec("a2", &["g"], 4), "n2").await.unwrap();
    d.agent_ready("a1", None).await.unwrap();
    let first = d.capacity().await.unwrap();
    assert_eq!(first.ready, HashMap::from([("g".to_string(), 3)]));
    d.agent_ready("a2", None).await.unwrap();
    assert_eq!(
        d.capacity().await.unwrap(),
        first,
        "asked again at once: the copy"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = d.capacity().await.unwrap();
    assert_eq!(later.ready, HashMap::from([("g".to_string(), 7)]));
    assert_eq!(later, Capacity::of(&d.snapshot().await.unwrap()));
}
