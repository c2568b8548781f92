//! The customer's socket: reading it, losing it, and getting back to the session.
//!
//! Two ways back, kept apart because they measure different things:
//! - a planned drop (`drop_share`, [`Customer::resume`]): the same node first, limited by
//!   `resumes_left`, timed in `resume_ms`;
//! - a fault (a socket error, a close without `closed`, close 1012, a `reconnect` frame,
//!   [`Customer::failover`]): the next node first (the lost one last), not limited by
//!   `resumes_left`, bounded by [`balancer::FAILOVER_DEADLINE`], timed in `failover_resume_ms`
//!   from the loss to the gateway's first answer on the new socket ([`Verdict`]).
//!
//! Both resume with `session`, `last_seq` and `resume_token` and re-send what was not
//! acknowledged with the same ids, so the gateway can deduplicate.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::Customer;
use crate::balancer;
use crate::metrics::now_us;
use crate::net::{self, Incoming};

/// Fault reconnects per customer (a run has a handful of faults; each costs one or two).
pub(super) const MAX_FAILOVERS: u32 = 20;

/// How long after the upgrade a silent socket still counts as an answer: a resume with
/// nothing to replay and nothing to say gets no frame at all, and that is a success.
pub(super) const VERDICT_WAIT: Duration = Duration::from_millis(300);

/// A failover socket waiting for the gateway's first answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Verdict {
    pub lost_at: Instant,
    pub upgraded_at: Instant,
}

impl Customer {
    /// Reattaches after a planned drop and re-sends what was not acknowledged, with the same ids.
    pub(super) async fn resume(&mut self) -> bool {
        if self.resumes_left == 0 || self.session_id.is_none() || self.closing {
            return false;
        }
        self.resumes_left -= 1;
        let started = Instant::now();
        let timeout = Duration::from_millis(self.ctx.profile.customer.greeting_timeout_ms);
        let path = self.path();
        let node = self.node as usize;
        let r = balancer::connect_any(
            &self.ctx.targets,
            node,
            self.source,
            &path,
            started + timeout,
        )
        .await;
        match r {
            Ok(c) => {
                self.attach(c);
                let mut t = self.shared().tally();
                t.counters.resumes += 1;
                t.hists.resume.record(started.elapsed());
            }
            Err(e) => {
                self.shared().tally().counters.resume_failures += 1;
                crate::warn_limited(&format!("customer resume to {}: {e}", self.target));
                return false;
            }
        }
        self.resend_pending().await;
        true
    }

    /// After a fault: the next live node, from `lost_at` until the failover deadline.
    async fn failover(&mut self, lost_at: Instant) -> bool {
        if self.session_id.is_none() || self.closing || self.failovers_left == 0 {
            return false;
        }
        self.failovers_left -= 1;
        let path = self.path();
        let first = balancer::next_after(self.ctx.targets.len(), self.node as usize);
        let deadline = lost_at + balancer::FAILOVER_DEADLINE;
        let r = balancer::connect_any(&self.ctx.targets, first, self.source, &path, deadline).await;
        match r {
            Ok(c) => {
                self.attach(c);
                self.verdict = Some(Verdict {
                    lost_at,
                    upgraded_at: Instant::now(),
                });
                self.shared().tally().counters.failover_reconnects += 1;
            }
            Err(e) => {
                self.shared().tally().counters.failover_failures += 1;
                crate::warn_limited(&format!("customer failover: no live node: {e}"));
                return false;
            }
        }
        self.resend_pending().await;
        true
    }

    fn attach(&mut self, c: balancer::Connected) {
        self.use_node(c.node);
        self.ws = Some(c.ws);
        self.conn_us = now_us();
        self.resumed_at = Some(Instant::now());
        self.shared().active.fetch_add(1, Ordering::Relaxed);
    }

    async fn resend_pending(&mut self) {
        let mut resend: Vec<(String, String)> = self
            .pending
            .iter()
            .map(|(id, p)| (id.clone(), p.text.clone()))
            .collect();
        resend.sort();
        for (id, text) in resend {
            self.shared().tally().counters.customer_resends += 1;
            if !self
                .send_raw(json!({"type":"message","id":id,"text":text}))
                .await
            {
                break;
            }
        }
    }

    /// Sends a frame; a dead socket triggers a failover and one retry.
    pub(super) async fn send(&mut self, v: serde_json::Value) -> bool {
        if self.send_raw(v.clone()).await {
            return true;
        }
        self.lost_connection().await && self.send_raw(v).await
    }

    pub(super) async fn send_raw(&mut self, v: serde_json::Value) -> bool {
        match self.ws.as_mut() {
            Some(ws) => net::send(ws, &v).await,
            None => false,
        }
    }

    /// Forgets the socket as lost now (unless the loss was already noted). A failover still
    /// waiting for its answer keeps its clock: the customer has been without the session
    /// since the first loss.
    pub(super) fn mark_lost(&mut self) {
        if self.ws.take().is_some() {
            self.shared().active.fetch_sub(1, Ordering::Relaxed);
        }
        if self.lost_at.is_none() {
            let since = self.verdict.take().map(|v| v.lost_at);
            self.lost_at = Some(since.unwrap_or_else(Instant::now));
        }
    }

    /// The socket ended without `closed`: count it and fail over.
    async fn lost_connection(&mut self) -> bool {
        self.mark_lost();
        let lost_at = self.lost_at.take().unwrap_or_else(Instant::now);
        if self.closed {
            return false;
        }
        if !std::mem::take(&mut self.announced) {
            self.shared().tally().error("disconnected");
        }
        self.failover(lost_at).await
    }

    /// The failover socket said nothing for [`VERDICT_WAIT`]: resumed at the upgrade.
    fn verdict_timeout(&mut self) {
        if let Some(v) = self.verdict {
            if Instant::now() >= v.upgraded_at + VERDICT_WAIT {
                self.verdict = None;
                let d = v.upgraded_at.saturating_duration_since(v.lost_at);
                self.shared().tally().hists.failover_resume.record(d);
            }
        }
    }

    /// Reads and accounts for frames until `done` holds (true) or `until` passes (false).
    pub(super) async fn pump_until(
        &mut self,
        until: Instant,
        done: impl Fn(&Customer) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let wake = match self.verdict {
                Some(v) => until.min(v.upgraded_at + VERDICT_WAIT),
                None => until,
            };
            let Some(ws) = self.ws.as_mut() else {
                if self.closed || !self.lost_connection().await {
                    tokio::time::sleep_until(until).await;
                    return done(self);
                }
                continue;
            };
            match tokio::time::timeout_at(wake, net::recv(ws)).await {
                Err(_) => {
                    self.verdict_timeout();
                    if Instant::now() >= until {
                        return done(self);
                    }
                }
                Ok(Incoming::Frame(f)) => self.on_frame(*f),
                Ok(Incoming::Garbage) => self.shared().tally().error("bad_frame"),
                Ok(Incoming::Closed) => self.mark_lost(),
            }
        }
    }

    /// The gateway refused the resume (or greeted with a new session): the old session is
    /// gone. The customer goes on in the new one, as a person would: nothing it had with an
    /// agent carries over, and its unacknowledged messages now go to the new session's bot.
    pub(super) fn lose_session(&mut self) {
        self.shared().tally().counters.sessions_lost += 1;
        self.last_seq = 0;
        self.expect_new_session = true;
        if self.queued_at.take().is_some() {
            self.shared().in_queue.fetch_sub(1, Ordering::Relaxed);
        }
        self.handed_off = false;
        self.agent_joined_at = None;
        self.got_agent_message = false;
        self.agent_messages_unanswered = 0;
        self.survey = false;
        self.agent_closed = false;
        for p in self.pending.values_mut() {
            p.to_agent = false;
        }
    }
}
