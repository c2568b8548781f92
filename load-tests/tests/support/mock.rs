//! A small in-memory stand-in for the gateway that speaks the whole README protocol (greeting,
//! ack, bot answers, handoff, queue, least-loaded assignment, relay both ways, resume with
//! replay, agent close and survey). It lets the agent side of `kefu-load` be tested before the
//! real gateway has agents, and it can be told to lose or duplicate agent messages so the
//! accounting is shown to catch both.

// Test scaffolding: a setup failure should panic loudly.
#![allow(clippy::unwrap_used, clippy::result_large_err)] // the handshake callback's type is tungstenite's

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Misbehaviour to inject.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    /// Drop every Nth agent message instead of delivering it (still acked to the agent).
    pub lose_every: u64,
    /// Deliver every Nth agent message twice (under two seqs).
    pub duplicate_every: u64,
    /// This long after the start, tell every connected customer `reconnect` and close its
    /// socket with 1012, as a durable gateway does on a graceful stop (0: never).
    pub reconnect_at_ms: u64,
}

/// Written to a socket's writer: send a close frame with code 1012 and stop.
const CLOSE_1012: &str = "\u{0}close-1012";

type Tx = mpsc::UnboundedSender<String>;

#[derive(Default)]
struct Sess {
    frames: Vec<String>,
    tx: Option<Tx>,
    agent: Option<usize>,
    ids: HashSet<String>,
    closed: bool,
}

struct AgentSlot {
    tx: Tx,
    cap: u32,
    load: u32,
    seq: u64,
    online: bool,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Sess>,
    agents: Vec<AgentSlot>,
    queue: VecDeque<String>,
    next: u64,
    agent_msgs: u64,
    faults: Faults,
}

impl State {
    fn push(&mut self, sid: &str, mut v: Value) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        v["seq"] = json!(s.frames.len() as u64 + 1);
        let text = v.to_string();
        s.frames.push(text.clone());
        if let Some(tx) = &s.tx {
            let _ = tx.send(text);
        }
    }

    fn send_agent(&mut self, a: usize, mut v: Value) {
        let slot = &mut self.agents[a];
        slot.seq += 1;
        v["seq"] = json!(slot.seq);
        let _ = slot.tx.send(v.to_string());
    }

    /// Least-loaded online agent with room takes the head of the queue.
    fn dispatch(&mut self) {
        while let Some(sid) = self.queue.front().cloned() {
            let best = (0..self.agents.len())
                .filter(|&i| self.agents[i].online && self.agents[i].load < self.agents[i].cap)
                .min_by_key(|&i| self.agents[i].load);
            let Some(a) = best else { return };
            self.queue.pop_front();
            if self.sessions.get(&sid).is_none_or(|s| s.closed) {
                continue;
            }
            self.agents[a].load += 1;
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.agent = Some(a);
            }
            self.send_agent(a, json!({"type":"assigned","session":sid,"group":"pre_sale","history":[],"waited_ms":0}));
            self.push(&sid, json!({"type":"agent_joined","name":"小王"}));
        }
    }
}

pub async fn start(faults: Faults) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State {
        faults,
        ..State::default()
    }));
    if faults.reconnect_at_ms > 0 {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(faults.reconnect_at_ms)).await;
            let mut st = state.lock().unwrap();
            for s in st.sessions.values_mut().filter(|s| !s.closed) {
                if let Some(tx) = s.tx.take() {
                    let seq = s.frames.len();
                    let _ = tx.send(json!({"type":"reconnect","seq":seq}).to_string());
                    let _ = tx.send(CLOSE_1012.to_owned());
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut uri = String::new();
                let cb = |req: &Request, resp: Response| {
                    uri = req.uri().to_string();
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                    return;
                };
                let q = query(&uri);
                let (mut sink, mut stream) = ws.split();
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                tokio::spawn(async move {
                    while let Some(t) = rx.recv().await {
                        if t == CLOSE_1012 {
                            let frame = CloseFrame {
                                code: CloseCode::Restart,
                                reason: "".into(),
                            };
                            let _ = sink.send(Message::Close(Some(frame))).await;
                            break;
                        }
                        if sink.send(Message::Text(t.into())).await.is_err() {
                            break;
                        }
                    }
                });
                if uri.starts_with("/ws/agent") {
                    let a = {
                        let mut st = state.lock().unwrap();
                        st.agents.push(AgentSlot {
                            tx,
                            cap: 0,
                            load: 0,
                            seq: 0,
                            online: false,
                        });
                        st.agents.len() - 1
                    };
                    while let Some(Ok(Message::Text(t))) = stream.next().await {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        agent_frame(&mut state.lock().unwrap(), a, &v);
                    }
                    state.lock().unwrap().agents[a].online = false;
                } else {
                    let sid = attach(&mut state.lock().unwrap(), &q, tx);
                    while let Some(Ok(Message::Text(t))) = stream.next().await {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        customer_frame(&mut state.lock().unwrap(), &sid, &v);
                    }
                    if let Some(s) = state.lock().unwrap().sessions.get_mut(&sid) {
                        s.tx = None;
                    }
                }
            });
        }
    });
    addr
}

fn query(uri: &str) -> HashMap<String, String> {
    let q = uri.split_once('?').map(|x| x.1).unwrap_or_default();
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

fn attach(st: &mut State, q: &HashMap<String, String>, tx: Tx) -> String {
    if let Some(sid) = q.get("session") {
        let last: usize = q.get("last_seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        if let Some(s) = st.sessions.get_mut(sid) {
            for f in s.frames.iter().skip(last) {
                let _ = tx.send(f.clone());
            }
            s.tx = Some(tx);
            return sid.clone();
        }
    }
    st.next += 1;
    let sid = format!("s{}", st.next);
    st.sessions.insert(
        sid.clone(),
        Sess {
            tx: Some(tx),
            ..Sess::default()
        },
    );
    st.push(
        &sid,
        json!({"type":"greeting","session_id":sid,"text":"您好"}),
    );
    sid
}

fn customer_frame(st: &mut State, sid: &str, v: &Value) {
    match v["type"].as_str().unwrap_or_default() {
        "message" => {
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            let fresh = st
                .sessions
                .get_mut(sid)
                .is_some_and(|s| s.ids.insert(id.clone()));
            st.push(sid, json!({"type":"ack","id":id,"duplicate":!fresh}));
            if !fresh {
                return;
            }
            match st.sessions.get(sid).and_then(|s| s.agent) {
                Some(a) => st.send_agent(a, json!({"type":"message","session":sid,"id":id,"text":v["text"]})),
                None => st.push(sid, json!({"type":"bot_answer","reply_to":id,"entry_id":"x","text":"答案","score":0.9})),
            }
        }
        "request_human" => {
            st.push(
                sid,
                json!({"type":"handoff","group":"pre_sale","reason":"customer_request"}),
            );
            st.push(
                sid,
                json!({"type":"queued","position":st.queue.len() + 1,"estimated_wait_s":5}),
            );
            st.queue.push_back(sid.to_owned());
            st.dispatch();
        }
        "close" => {
            let agent = st.sessions.get_mut(sid).and_then(|s| {
                s.closed = true;
                s.agent.take()
            });
            st.push(sid, json!({"type":"closed","reason":"customer_closed"}));
            if let Some(a) = agent {
                st.agents[a].load -= 1;
                st.send_agent(a, json!({"type":"customer_left","session":sid}));
                st.dispatch();
            }
        }
        _ => {}
    }
}

fn agent_frame(st: &mut State, a: usize, v: &Value) {
    let sid = v["session"].as_str().unwrap_or_default().to_owned();
    match v["type"].as_str().unwrap_or_default() {
        "ready" => {
            st.agents[a].cap = v["capacity"].as_u64().unwrap_or(1) as u32;
            st.agents[a].online = true;
            st.dispatch();
        }
        "message" => {
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            if st.sessions.get(&sid).is_none_or(|s| s.agent != Some(a)) {
                st.send_agent(
                    a,
                    json!({"type":"error","code":"not_in_state","message":"not your chat"}),
                );
                return;
            }
            st.agent_msgs += 1;
            let n = st.agent_msgs;
            st.send_agent(a, json!({"type":"ack","id":id}));
            let f = st.faults;
            if f.lose_every > 0 && n.is_multiple_of(f.lose_every) {
                return;
            }
            let m = json!({"type":"message","id":id,"from":"agent","name":"小王","text":v["text"],"auto":false});
            st.push(&sid, m.clone());
            if f.duplicate_every > 0 && n.is_multiple_of(f.duplicate_every) {
                st.push(&sid, m);
            }
        }
        "close" => {
            let mine = st
                .sessions
                .get_mut(&sid)
                .is_some_and(|s| s.agent == Some(a) && !s.closed);
            if mine {
                if let Some(s) = st.sessions.get_mut(&sid) {
                    s.agent = None;
                    s.closed = true;
                }
                st.agents[a].load -= 1;
                st.push(&sid, json!({"type":"survey"}));
                st.push(&sid, json!({"type":"closed","reason":"agent_closed"}));
                st.dispatch();
            }
        }
        _ => {}
    }
}
