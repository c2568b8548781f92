//! Durable conversations against real gateway processes killed with real signals: the
//! customer's node dies (SIGKILL), is deployed (SIGTERM), or pauses past a takeover
//! (SIGSTOP), on one Redis, on a real Redis Cluster, and on one node with its SQLite store.

mod cluster;
mod crash;
mod node;
mod split_brain;

use serde_json::{json, Value};

use crate::helpers::Client;

/// Asks for a person and waits until the chat is with the agent.
async fn hand_to_agent(c: &mut Client, agent: &mut Client) -> String {
    c.send(json!({"type":"request_human"})).await;
    c.recv_type("agent_joined").await;
    let assigned = agent.recv_type("assigned").await;
    assigned["session"].as_str().unwrap().to_string()
}

/// Sends a customer message and waits for its ack.
async fn say_acked(c: &mut Client, id: &str, text: &str) {
    c.say(id, text).await;
    let ack = c.recv_type("ack").await;
    assert_eq!(ack["id"], id, "{ack}");
}

/// The agent writes; returns once the agent has the ack.
async fn agent_says(agent: &mut Client, session: &str, id: &str, text: &str) {
    agent
        .send(json!({"type":"message","session":session,"id":id,"text":text}))
        .await;
    let ack = agent.recv_type("ack").await;
    assert_eq!(ack["id"], id, "{ack}");
}

/// The frames of a type among `frames`.
fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == kind).collect()
}
