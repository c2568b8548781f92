//! One agent's connections and what it does on them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Action, Agent, AgentCtx, AgentSpec, Chat, Unacked, RESEND_AFTER};
use crate::balancer;
use crate::metrics::{now_us, Sent};
use crate::net::{self, Frame, Incoming, Ws};
use crate::rng::Rng;

/// How long the first connection may take (argon2 sign-in of many agents at once is slow).
const FIRST_CONNECT: Duration = Duration::from_secs(10);

/// Runs one agent until `stop` turns true; a lost socket fails over to the next live node.
pub async fn run(ctx: Arc<AgentCtx>, spec: AgentSpec, mut stop: watch::Receiver<bool>) {
    let rng = Rng::derive(ctx.seed, 2, spec.index as u64);
    let node = spec.node as usize;
    let mut a = Agent {
        ctx,
        spec,
        rng,
        chats: Default::default(),
        timers: Default::default(),
        timer_seq: 0,
        next_msg: 0,
        unacked: Default::default(),
        given_live: Default::default(),
        given_history: Default::default(),
        node,
        last_seq: 0,
        conn: 0,
        lost_at: None,
    };
    while !*stop.borrow() {
        let mut path = format!("/ws/agent?token={}", net::enc(&a.spec.token));
        if a.last_seq > 0 {
            path.push_str(&format!("&last_seq={}", a.last_seq));
        }
        let n = a.ctx.targets.len();
        let (first, deadline) = match a.lost_at {
            None => (a.node, Instant::now() + FIRST_CONNECT),
            Some(at) => (
                balancer::next_after(n, a.node),
                at + balancer::FAILOVER_DEADLINE,
            ),
        };
        let targets = a.ctx.targets.clone();
        let connected = tokio::select! {
            c = balancer::connect_any(&targets, first, None, &path, deadline) => c,
            _ = stop.changed() => continue,
        };
        match connected {
            Ok(c) => {
                a.node = c.node;
                if a.lost_at.is_some() {
                    a.ctx.shared.tally().counters.agent_failovers += 1;
                }
                a.session(c.ws, &mut stop).await;
            }
            Err(e) => {
                a.ctx.shared.tally().error("agent_connect_failed");
                crate::warn_limited(&format!("agent {} found no live node: {e}", a.spec.id));
                break;
            }
        }
    }
    let n = a.unacked.len() as u64;
    if n > 0 {
        *a.ctx
            .shared
            .tally()
            .errors
            .entry("agent_message_unacked".into())
            .or_default() += n;
    }
}

impl Agent {
    async fn session(&mut self, mut ws: Ws, stop: &mut watch::Receiver<bool>) {
        self.conn += 1;
        if !net::send(
            &mut ws,
            &json!({"type":"ready","capacity":self.spec.capacity}),
        )
        .await
        {
            self.lost_at.get_or_insert_with(Instant::now);
            return;
        }
        if self.lost_at.is_some() && !self.unacked.is_empty() {
            self.timer_seq += 1;
            self.timers.insert(
                (Instant::now() + RESEND_AFTER, self.timer_seq),
                Action::Resend,
            );
        }
        let shared = self.ctx.shared.clone();
        shared.agents_online.fetch_add(1, Ordering::Relaxed);
        self.ctx.board.set_online(self.spec.index, true);
        loop {
            let next = self.timers.keys().next().map(|k| k.0);
            let sleep_to = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        break;
                    }
                }
                _ = tokio::time::sleep_until(sleep_to), if next.is_some() => {
                    if let Some((_, action)) = self.timers.pop_first() {
                        if !self.act(&mut ws, action).await {
                            self.lost_at = Some(Instant::now());
                            break;
                        }
                    }
                }
                incoming = net::recv(&mut ws) => match incoming {
                    Incoming::Frame(f) => {
                        if f.kind == "reconnect" {
                            shared.tally().counters.reconnect_frames += 1;
                            self.lost_at = Some(Instant::now());
                            break;
                        }
                        self.on_frame(&mut ws, *f).await;
                    }
                    Incoming::Garbage => shared.tally().error("agent_bad_frame"),
                    Incoming::Closed => {
                        shared.tally().error("agent_disconnected");
                        self.lost_at = Some(Instant::now());
                        break;
                    }
                },
            }
        }
        shared.agents_online.fetch_sub(1, Ordering::Relaxed);
        self.ctx.board.set_online(self.spec.index, false);
        // The chats and their timers stay: the gateway holds them through its grace period.
        // A timer that fires while away finds no socket and is retried on the next one.
    }

    fn schedule(&mut self, action: Action) {
        let d = self.ctx.profile.agents.reply.sample(&mut self.rng);
        self.timer_seq += 1;
        self.timers
            .insert((Instant::now() + d, self.timer_seq), action);
    }

    async fn act(&mut self, ws: &mut Ws, action: Action) -> bool {
        match action {
            Action::Reply(session) => {
                let Some(chat) = self.chats.get_mut(&session) else {
                    return true;
                };
                chat.sent += 1;
                let last = chat.sent >= chat.to_send;
                self.next_msg += 1;
                let id = format!("{}-{}", self.spec.id, self.next_msg);
                let text = format!("您好，这边帮您查询一下（{}）", chat.sent);
                let sent = Sent {
                    at_us: now_us(),
                    session: session.clone(),
                    node: self.node as u32,
                };
                let frame = json!({"type":"message","session":session,"id":id,"text":text});
                self.unacked.insert(
                    id,
                    Unacked {
                        sent,
                        text,
                        conn: self.conn,
                    },
                );
                self.schedule(if last {
                    Action::Close(session)
                } else {
                    Action::Reply(session)
                });
                net::send(ws, &frame).await
            }
            Action::Close(session) => {
                if self.chats.remove(&session).is_none() {
                    return true;
                }
                self.ctx.board.release(self.spec.index);
                net::send(ws, &json!({"type":"close","session":session})).await
            }
            Action::Resend => self.resend(ws, None).await,
        }
    }

    /// Re-sends the messages still unacknowledged from an earlier connection (of `session`
    /// only, when given), with the same ids.
    async fn resend(&mut self, ws: &mut Ws, session: Option<&str>) -> bool {
        let conn = self.conn;
        let mut due: Vec<(String, serde_json::Value)> = self
            .unacked
            .iter_mut()
            .filter(|(_, u)| u.conn < conn && session.is_none_or(|s| s == u.sent.session))
            .map(|(id, u)| {
                u.conn = conn;
                let frame =
                    json!({"type":"message","session":u.sent.session,"id":id,"text":u.text});
                (id.clone(), frame)
            })
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, frame) in due {
            if !net::send(ws, &frame).await {
                return false;
            }
        }
        true
    }

    async fn on_frame(&mut self, ws: &mut Ws, f: Frame) {
        if let Some(seq) = f.seq {
            self.last_seq = self.last_seq.max(seq);
        }
        if let Some(lost) = self.lost_at.take() {
            let mut t = self.ctx.shared.tally();
            t.hists.agent_failover.record(lost.elapsed());
        }
        match f.kind.as_str() {
            "welcome" => {
                // Numbering starts over only when the node rebuilt the agent (a gap); the
                // `seq` of this frame already follows what the agent had seen.
            }
            "assigned" => {
                let Some(session) = f.session.clone() else {
                    return;
                };
                self.assigned(&session, &f);
                if f.resumed && !self.resend(ws, Some(&session)).await {
                    self.lost_at = Some(Instant::now());
                }
            }
            "message" => {
                if let Some(id) = f.id {
                    if let Some(chat) = f.session.as_ref().and_then(|s| self.chats.get_mut(s)) {
                        chat.seen.insert(id.clone());
                    }
                    let twice_live = !self.given_live.insert(id.clone());
                    if twice_live || !self.given_history.contains(&id) {
                        *self
                            .ctx
                            .shared
                            .tally()
                            .ledger
                            .to_agent_seen
                            .entry(id)
                            .or_default() += 1;
                    }
                }
            }
            "ack" => {
                if let Some((id, u)) = f.id.and_then(|id| self.unacked.remove_entry(&id)) {
                    self.ctx.shared.tally().ledger.agent_sent.insert(id, u.sent);
                }
            }
            "customer_left" => {
                if let Some(s) = f.session {
                    if self.chats.remove(&s).is_some() {
                        self.ctx.board.release(self.spec.index);
                    }
                }
            }
            "error" => {
                let code = f.code.unwrap_or_else(|| "error_without_code".into());
                if code == "not_your_chat" {
                    // The chat is no longer ours (lost with a node, or moved): stop serving it.
                    if let Some(u) = f.id.and_then(|id| self.unacked.remove(&id)) {
                        if self.chats.remove(&u.sent.session).is_some() {
                            self.ctx.board.release(self.spec.index);
                        }
                    }
                }
                self.ctx.shared.tally().error(&format!("agent:{code}"));
            }
            _ => {}
        }
    }

    /// A chat given to this agent: new, or (`resumed`) one it holds, in full after a move.
    fn assigned(&mut self, session: &str, f: &Frame) {
        let new = !self.chats.contains_key(session);
        if new {
            let mut t = self.ctx.shared.tally();
            t.ledger
                .assigned_us
                .entry(session.to_owned())
                .or_insert_with(now_us);
            drop(t);
            self.ctx.board.assign(self.spec.index, f.group.as_deref());
            let [lo, hi] = self.ctx.profile.agents.exchanges_per_chat;
            let to_send = self.rng.range_u64(lo.into(), hi.into()) as u32;
            self.chats.insert(session.to_owned(), Chat::new(to_send));
            self.schedule(Action::Reply(session.to_owned()));
        }
        let Some(chat) = self.chats.get_mut(session) else {
            return;
        };
        let mut t = self.ctx.shared.tally();
        for e in &f.history {
            let Some(id) = &e.id else { continue };
            match e.from.as_str() {
                // A customer message first seen in a resumed history reached the agent: it
                // counts once. In a first assignment the history is what the bot heard.
                "customer" => {
                    chat.seen.insert(id.clone());
                    let first_time =
                        !self.given_live.contains(id) && self.given_history.insert(id.clone());
                    if first_time && f.resumed {
                        *t.ledger.to_agent_seen.entry(id.clone()).or_default() += 1;
                    }
                }
                // Our own message, stored before its ack was lost with the socket: acked.
                "agent" => {
                    if let Some(u) = self.unacked.remove(id) {
                        t.ledger.agent_sent.insert(id.clone(), u.sent);
                    }
                }
                _ => {}
            }
        }
    }
}
