//! Accounting for every frame the gateway sends a customer.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::Customer;
use crate::metrics::now_us;
use crate::net::Frame;

impl Customer {
    pub(super) fn on_frame(&mut self, f: Frame) {
        let now = Instant::now();
        let refused = f.kind == "error"
            && matches!(
                f.code.as_deref(),
                Some("session_expired" | "session_unknown")
            );
        if let Some(v) = self.verdict.take() {
            // The gateway's first answer on a failover socket: anything but a refusal means
            // the session is back.
            if !refused {
                let d = now.saturating_duration_since(v.lost_at);
                self.ctx.shared.tally().hists.failover_resume.record(d);
            }
        }
        let new_session = f.kind == "greeting"
            && f.session_id.is_some()
            && self.session_id.is_some()
            && f.session_id != self.session_id;
        if new_session && !self.expect_new_session {
            // A new greeting without the refusal first: the session is lost all the same.
            self.lose_session();
        }
        if let Some(seq) = f.seq {
            if f.kind == "message" && self.resumed_at.is_some() && seq > 0 && seq <= self.last_seq {
                // Replayed at or below the resume point: a widget keyed by seq drops it.
                self.ctx.shared.tally().counters.stale_frames += 1;
                return;
            }
            self.last_seq = self.last_seq.max(seq);
        }
        match f.kind.as_str() {
            "greeting" => {
                if let Some(s) = f.session_id {
                    self.session_id = Some(s);
                    self.resume_token = f.resume_token.unwrap_or_default();
                    self.expect_new_session = false;
                }
            }
            "reconnect" => {
                // A graceful stop: the node closes with 1012 next; go elsewhere now.
                self.ctx.shared.tally().counters.reconnect_frames += 1;
                self.announced = true;
                self.mark_lost();
            }
            "ack" => {
                let Some(id) = f.id else { return };
                let mut t = self.ctx.shared.tally();
                if f.duplicate {
                    t.counters.duplicate_acks += 1;
                }
                if let Some(p) = self.pending.remove(&id) {
                    t.counters.customer_acked += 1;
                    if self.resumed_at.is_none_or(|at| p.first_sent >= at) {
                        t.hists.ack.record(now - p.first_sent);
                    }
                    if p.to_agent && !self.closed {
                        t.ledger.to_agent_acked.insert(id);
                    }
                }
            }
            "bot_answer" | "suggestions" => {
                let mut t = self.ctx.shared.tally();
                if f.kind == "bot_answer" {
                    t.counters.bot_answers += 1;
                } else {
                    t.counters.bot_suggestions += 1;
                }
                if let Some(sent) = f.reply_to.and_then(|r| self.awaiting_bot.remove(&r)) {
                    if self.resumed_at.is_none_or(|at| sent >= at) {
                        t.bot_answer(now - sent);
                    }
                }
            }
            "handoff" | "queued" => {
                let mut t = self.ctx.shared.tally();
                if f.kind == "handoff" {
                    t.counters.handoffs += 1;
                    self.handed_off = true;
                    if self.closed && !self.closing {
                        // The survey answer reopened the chat as a complaint.
                        self.closed = false;
                        self.survey = false;
                        self.agent_closed = false;
                        self.agent_joined_at = None;
                        self.got_agent_message = false;
                        self.agent_messages_unanswered = 0;
                    }
                }
                if let Some(pos) = f.position {
                    t.counters.max_queue_position = t.counters.max_queue_position.max(pos);
                }
                if self.queued_at.is_none() && self.agent_joined_at.is_none() {
                    self.queued_at = Some(now);
                    self.ctx.shared.in_queue.fetch_add(1, Ordering::Relaxed);
                }
            }
            "agent_joined" => {
                let mut t = self.ctx.shared.tally();
                t.counters.agent_joined += 1;
                if let Some(q) = self.queued_at.take() {
                    t.hists.queue_wait.record(now - q);
                    self.ctx.shared.in_queue.fetch_sub(1, Ordering::Relaxed);
                }
                self.handed_off = true;
                self.agent_joined_at = Some(now);
                if let (Some(sub), Some(name)) = (&self.identity, f.name) {
                    if let Some(last) = t.last_agent.insert(sub.clone(), name.clone()) {
                        t.counters.returning_served += 1;
                        if last == name {
                            t.counters.reached_last_agent += 1;
                        }
                    }
                }
            }
            "message" => {
                let Some(mut id) = f.id else { return };
                let mut t = self.ctx.shared.tally();
                if f.auto {
                    // The gateway numbers its agent greetings per session (`auto-<seq>`):
                    // the session makes them unique in the run-wide ledger.
                    t.counters.auto_greetings += 1;
                    id = format!("{}/{id}", self.session_id.as_deref().unwrap_or_default());
                }
                let seen = t.ledger.agent_seen.entry(id).or_default();
                if seen.count == 0 {
                    seen.first_us = now_us();
                    seen.conn_us = self.conn_us;
                    seen.node = self.node;
                }
                seen.count += 1;
                if !self.got_agent_message {
                    self.got_agent_message = true;
                    if let Some(j) = self.agent_joined_at {
                        t.hists.agent_first_reply.record(now - j);
                    }
                }
                self.agent_messages_unanswered += 1;
            }
            "survey" => self.survey = true,
            "closed" => {
                self.closed = true;
                if f.reason.as_deref() == Some("shutting_down") {
                    // A node stopping without a durable log ends the chat: a session lost.
                    self.ctx.shared.tally().counters.sessions_lost += 1;
                }
                if f.reason.as_deref() == Some("agent_closed") {
                    self.agent_closed = true;
                    self.ctx.shared.tally().counters.closed_by_agent += 1;
                }
                if self.queued_at.take().is_some() {
                    self.ctx.shared.in_queue.fetch_sub(1, Ordering::Relaxed);
                }
            }
            "error" => {
                let code = f.code.unwrap_or_else(|| "error_without_code".into());
                if code == "not_in_state" && self.closed {
                    self.refused_after_close += 1;
                }
                if refused {
                    // The resume landed in a new session: what was pending is gone with the old one.
                    self.ctx.shared.tally().counters.resume_failures += 1;
                    self.lose_session();
                }
                self.ctx.shared.tally().error(&code);
            }
            _ => {}
        }
    }
}
