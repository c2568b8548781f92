//! One simulated customer, from connect to close.
//!
//! The customer is written as a script (greet, ask, maybe ask for a person, chat, answer the
//! survey, linger, close) over one primitive, [`Customer::pump_until`], which keeps reading and
//! accounting for every server frame while the script waits. That way frames that arrive at any
//! moment (an agent message during think time, a replay after a resume) are never missed.
//!
//! Frames are accounted for in [`frames`]; losing the socket and finding a live node again
//! (the tool is its own load balancer) is in [`failover`].

mod failover;
mod frames;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::balancer;
use crate::metrics::now_us;
use crate::net::{self, Target, Ws};
use crate::profile::{Intent, Profile, QuestionKind, Questions};
use crate::rng::Rng;
use crate::tally::Shared;

/// What every customer of one process shares.
pub struct Ctx {
    pub profile: Arc<Profile>,
    pub questions: Arc<Questions>,
    pub targets: Vec<Target>,
    /// Source addresses this process binds before connecting, used round-robin.
    pub sources: Vec<IpAddr>,
    /// Worker count, so round-robin over sources is even for this worker's arrival indexes.
    pub workers: u32,
    pub shared: Arc<Shared>,
    pub seed: u64,
    /// Prefix of message ids, unique per process (`c{worker}`).
    pub id_prefix: String,
    /// Sessions still open at this instant are cut (the run's drain deadline).
    pub deadline: Instant,
}

/// A customer message not yet acknowledged.
struct Pending {
    first_sent: Instant,
    text: String,
    to_agent: bool,
}

struct Customer {
    ctx: Arc<Ctx>,
    rng: Rng,
    target: Target,
    /// Index of `target` among the run's targets.
    node: u32,
    source: Option<IpAddr>,
    lang: &'static str,
    ws: Option<Ws>,
    session_id: Option<String>,
    /// The greeting's `resume_token`; the gateway refuses a resume without it.
    resume_token: String,
    last_seq: u64,
    conn_us: u64,
    /// When the current connection (after a resume) was made: replies to messages sent
    /// before it were held for the customer while away, so they time the outage, not the
    /// gateway, and are left out of the ack and bot-answer latencies.
    resumed_at: Option<Instant>,
    next_msg: u32,
    msg_prefix: String,
    pending: HashMap<String, Pending>,
    awaiting_bot: HashMap<String, Instant>,
    queued_at: Option<Instant>,
    handed_off: bool,
    agent_joined_at: Option<Instant>,
    got_agent_message: bool,
    agent_messages_unanswered: u32,
    closed: bool,
    /// This customer sent `close`: a drop now would resume a session that has ended.
    closing: bool,
    survey: bool,
    /// The agent ended the chat (`closed` with `agent_closed`): a survey follows.
    agent_closed: bool,
    resumes_left: u32,
    /// Messages sent so far, and after which one the socket drops (for `drop_share`).
    steps: u64,
    drop_at: Option<u64>,
    /// `not_in_state` errors after the chat closed: the gateway refusing a message the customer
    /// sent before it saw `closed`. Each accounts for one unacknowledged message.
    refused_after_close: u64,
    /// When the current socket was lost to a fault (not a planned drop), for the failover time.
    lost_at: Option<Instant>,
    /// The loss was announced by a `reconnect` frame (not counted as `disconnected`).
    announced: bool,
    /// A failover socket whose first frame has not said yet whether the session resumed.
    verdict: Option<failover::Verdict>,
    /// Fault reconnects this customer may still make: generous, so faults never run out of
    /// them, but bounded, so a node that accepts and closes at once cannot spin a customer.
    failovers_left: u32,
    /// The gateway refused the resume; the next greeting (a new session) is expected.
    expect_new_session: bool,
    /// An identified returning customer: the shop's customer id (`sub`) it signs in as.
    identity: Option<String>,
}

/// Runs customer number `index`; never fails, everything it sees is counted.
pub async fn run(ctx: Arc<Ctx>, index: u64) {
    let rng = Rng::derive(ctx.seed, 1, index);
    let node = (index % ctx.targets.len() as u64) as u32;
    let target = ctx.targets[node as usize];
    let slot = index / u64::from(ctx.workers.max(1));
    let source =
        (!ctx.sources.is_empty()).then(|| ctx.sources[(slot % ctx.sources.len() as u64) as usize]);
    let shared = ctx.shared.clone();
    let deadline = ctx.deadline;
    let mut c = Customer {
        msg_prefix: format!("{}-{index}", ctx.id_prefix),
        ctx,
        rng,
        target,
        node,
        source,
        lang: "zh",
        ws: None,
        session_id: None,
        resume_token: String::new(),
        last_seq: 0,
        conn_us: 0,
        resumed_at: None,
        next_msg: 0,
        pending: HashMap::new(),
        awaiting_bot: HashMap::new(),
        queued_at: None,
        handed_off: false,
        agent_joined_at: None,
        got_agent_message: false,
        agent_messages_unanswered: 0,
        closed: false,
        closing: false,
        survey: false,
        agent_closed: false,
        resumes_left: 3,
        steps: 0,
        drop_at: None,
        refused_after_close: 0,
        lost_at: None,
        announced: false,
        verdict: None,
        failovers_left: failover::MAX_FAILOVERS,
        expect_new_session: false,
        identity: None,
    };
    // A stream of its own, so profiles without returning customers replay exactly as before.
    let p = &c.ctx.profile.customer;
    if p.returning_share > 0.0 {
        let mut pick = Rng::derive(c.ctx.seed, 7, index);
        if pick.chance(p.returning_share) {
            let k = pick.below(u64::from(p.returning_pool.max(1)));
            c.identity = Some(format!("load-{}-r{k}", c.ctx.id_prefix));
        }
    }
    shared.tally().arrival();
    let cut = tokio::time::timeout_at(deadline, c.script()).await.is_err();
    if c.queued_at.take().is_some() {
        shared.in_queue.fetch_sub(1, Ordering::Relaxed);
    }
    let mut t = shared.tally();
    if cut {
        t.counters.cut_at_deadline += 1;
        if let Some(s) = &c.session_id {
            t.ledger.cut_sessions.insert(s.clone());
        }
    } else {
        t.ledger.customer_unacked += (c.pending.len() as u64).saturating_sub(c.refused_after_close);
    }
    drop(t);
    if c.ws.is_some() {
        shared.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Customer {
    fn shared(&self) -> &Shared {
        &self.ctx.shared
    }

    async fn script(&mut self) {
        let p = self.ctx.profile.clone();
        let cp = &p.customer;
        self.lang = if self.rng.chance(cp.zh_share) {
            "zh"
        } else {
            "en"
        };
        if !self.connect_first().await {
            return;
        }
        let intent = cp.mix.draw(&mut self.rng);
        let mut n_questions = self
            .rng
            .range_u64(cp.questions[0].into(), cp.questions[1].into());
        if matches!(intent, Intent::Human | Intent::Complaint) {
            n_questions = n_questions.max(1);
        }
        // The drop happens after one of the customer's messages: a question, or (for those who
        // ask for a person) one of the first replies in the agent chat.
        let chat_steps = if matches!(intent, Intent::Human | Intent::Complaint) {
            2
        } else {
            0
        };
        if self.rng.chance(cp.drop_share) {
            self.drop_at = Some(1 + self.rng.below(n_questions + chat_steps));
        }
        for i in 0..n_questions {
            self.think().await;
            let kind = match intent {
                Intent::OutOfScope => QuestionKind::OutOfScope,
                Intent::Complaint if i == 0 => QuestionKind::Complaint,
                _ => QuestionKind::Kb,
            };
            let text = self.ctx.questions.pick(kind, &mut self.rng).to_owned();
            self.ask(text).await;
            if self.closed || self.handed_off {
                break;
            }
        }
        // Customers the bot handed off (not sure, unanswered twice) talk to their agent too.
        if (matches!(intent, Intent::Human | Intent::Complaint) || self.handed_off) && !self.closed
        {
            self.ask_for_human().await;
            self.chat().await;
        }
        self.answer_surveys().await;
        let linger = cp.linger.sample(&mut self.rng);
        if !self.closed {
            self.pump_until(Instant::now() + linger, |c| c.closed).await;
        }
        if !self.closed {
            self.leave().await;
        }
        // Everything the gateway stored before `closed` is delivered before it: wait for it.
        // Messages sent just before the agent closed are acknowledged after `closed`: wait for them.
        self.pump_until(Instant::now() + Duration::from_secs(3), |c| {
            c.closed && c.pending.len() as u64 <= c.refused_after_close
        })
        .await;
        if let Some(mut ws) = self.ws.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            self.shared().active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Answers the survey after an agent closed the chat (for `survey_share` of customers).
    /// A 4 or 5 reopens the chat as a complaint: the customer waits for the complaint agent
    /// and talks to them, as a dissatisfied customer would. The second survey is answered
    /// satisfied, so every customer's chat ends.
    async fn answer_surveys(&mut self) {
        let p = self.ctx.profile.clone();
        if !self.survey_offered().await || !self.rng.chance(p.customer.survey_share) {
            return;
        }
        for round in 1..=2 {
            if !self.survey_offered().await || self.closing {
                return;
            }
            self.survey = false;
            let score = self.rng.range_u64(1, if round == 1 { 5 } else { 3 });
            if !self
                .send(json!({"type":"survey_answer","score":score,"comment":"ok"}))
                .await
            {
                return;
            }
            self.shared().tally().counters.surveys_answered += 1;
            if score < 4 {
                return;
            }
            let until = Instant::now() + self.reply_timeout();
            if !self.pump_until(until, |c| !c.closed).await {
                return;
            }
            self.shared().tally().counters.reopened_as_complaint += 1;
            self.ask_for_human().await;
            self.chat().await;
        }
    }

    /// Whether a survey is waiting for an answer; after an agent's `closed` it may still be
    /// on its way, so it is waited for.
    async fn survey_offered(&mut self) -> bool {
        if self.agent_closed && !self.survey {
            let until = Instant::now() + self.reply_timeout();
            self.pump_until(until, |c| c.survey).await;
        }
        self.survey
    }

    /// Sends `close` while the chat is open. A message an agent sends around that moment
    /// cannot reach this customer any more, so the ledger notes when the customer left.
    async fn leave(&mut self) {
        self.closing = true;
        if self.handed_off || self.agent_joined_at.is_some() {
            if let Some(s) = self.session_id.clone() {
                self.shared()
                    .tally()
                    .ledger
                    .left_sessions
                    .insert(s, now_us());
            }
        }
        self.send(json!({"type":"close"})).await;
    }

    fn path(&self) -> String {
        let visitor = format!("v-{}", self.msg_prefix);
        let mut p = format!(
            "/ws/customer?visitor={}&channel=web&lang={}",
            net::enc(&visitor),
            self.lang
        );
        if let Some(sub) = &self.identity {
            let secret = &self.ctx.profile.customer.identity_secret;
            if let Some(token) = identity_token(sub, secret) {
                p.push_str(&format!("&identity={}", net::enc(&token)));
            }
        }
        if let Some(s) = &self.session_id {
            p.push_str(&format!(
                "&session={}&last_seq={}&resume_token={}",
                net::enc(s),
                self.last_seq,
                net::enc(&self.resume_token)
            ));
        }
        p
    }

    /// Connects and waits for the greeting; the latency runs from the TCP connect to the greeting.
    /// A node that refuses (down, draining) is skipped for the next one, as a load balancer
    /// would, within the greeting timeout: a new customer must be greeted during a fault too.
    async fn connect_first(&mut self) -> bool {
        let timeout = Duration::from_millis(self.ctx.profile.customer.greeting_timeout_ms);
        let started = Instant::now();
        let path = self.path();
        let node = self.node as usize;
        let targets = &self.ctx.targets;
        match balancer::connect_any(targets, node, self.source, &path, started + timeout).await {
            Ok(c) => {
                self.use_node(c.node);
                self.ws = Some(c.ws);
                self.conn_us = 0;
                self.shared().active.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared().tally().connect_failure();
                crate::warn_limited(&format!("customer connect to {}: {e}", self.target));
                return false;
            }
        }
        let got = self
            .pump_until(started + timeout, |c| c.session_id.is_some())
            .await;
        if got {
            self.shared().tally().greeting(started.elapsed());
        } else {
            self.shared().tally().counters.greeting_timeouts += 1;
        }
        got
    }

    async fn think(&mut self) {
        let d = self.ctx.profile.customer.think.sample(&mut self.rng);
        self.pump_until(Instant::now() + d, |_| false).await;
    }

    fn reply_timeout(&self) -> Duration {
        Duration::from_millis(self.ctx.profile.customer.reply_timeout_ms)
    }

    fn new_id(&mut self) -> String {
        self.next_msg += 1;
        format!("{}-{}", self.msg_prefix, self.next_msg)
    }

    /// Sends a question and waits for its ack and the bot's reply (or the reply timeout).
    async fn ask(&mut self, text: String) {
        let id = self.new_id();
        let now = Instant::now();
        self.pending.insert(
            id.clone(),
            Pending {
                first_sent: now,
                text: text.clone(),
                to_agent: false,
            },
        );
        self.awaiting_bot.insert(id.clone(), now);
        self.shared().tally().counters.customer_messages += 1;
        self.send(json!({"type":"message","id":id,"text":text}))
            .await;
        self.after_message().await;
        let until = now + self.reply_timeout();
        let done = self
            .pump_until(until, |c| {
                c.closed
                    || c.handed_off
                    || (!c.pending.contains_key(&id) && !c.awaiting_bot.contains_key(&id))
            })
            .await;
        if self.awaiting_bot.remove(&id).is_some() && !done {
            self.shared().tally().counters.bot_no_reply += 1;
        }
    }

    /// Requests a person (unless the bot already handed off) and waits in the queue, patiently.
    async fn ask_for_human(&mut self) {
        if !self.handed_off {
            self.send(json!({"type":"request_human"})).await;
        }
        if let Some(s) = self.session_id.clone() {
            self.shared()
                .tally()
                .ledger
                .requested_us
                .insert(s, now_us());
        }
        let patience = self.ctx.profile.customer.patience.sample(&mut self.rng);
        let joined = self
            .pump_until(Instant::now() + patience, |c| {
                c.agent_joined_at.is_some() || c.closed
            })
            .await;
        if !joined {
            self.shared().tally().counters.abandoned_in_queue += 1;
            self.leave().await;
        }
    }

    /// Answers each agent message after a think time, until the chat is closed.
    async fn chat(&mut self) {
        while self.agent_joined_at.is_some() && !self.closed {
            if self.agent_messages_unanswered == 0 {
                let far = Instant::now() + Duration::from_secs(3600);
                self.pump_until(far, |c| c.closed || c.agent_messages_unanswered > 0)
                    .await;
                continue;
            }
            self.agent_messages_unanswered -= 1;
            self.think().await;
            if self.closed {
                break;
            }
            let id = self.new_id();
            let text = if self.lang == "zh" {
                "好的，谢谢"
            } else {
                "OK, thanks"
            };
            self.pending.insert(
                id.clone(),
                Pending {
                    first_sent: Instant::now(),
                    text: text.to_owned(),
                    to_agent: true,
                },
            );
            self.shared().tally().counters.customer_messages += 1;
            self.send(json!({"type":"message","id":id,"text":text}))
                .await;
            self.after_message().await;
        }
    }

    /// Counts a sent message and drops the socket if this is the planned moment. Dropping right
    /// after a send, before its ack, is the hard case: the message must be acked exactly once
    /// after the resume, whether or not the gateway stored it before the drop.
    async fn after_message(&mut self) {
        self.steps += 1;
        if self.drop_at == Some(self.steps) && !self.closing && !self.closed {
            self.drop_and_resume().await;
        }
    }

    /// Drops the socket without a close handshake, waits, and resumes with `session`/`last_seq`.
    async fn drop_and_resume(&mut self) {
        if self.ws.take().is_some() {
            self.shared().active.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared().tally().counters.drops += 1;
        let pause = self.ctx.profile.customer.resume_after.sample(&mut self.rng);
        tokio::time::sleep(pause).await;
        self.resume().await;
    }

    /// The client now talks to node `node` of the targets.
    fn use_node(&mut self, node: usize) {
        if let Some(t) = self.ctx.targets.get(node) {
            self.target = *t;
            self.node = node as u32;
        }
    }
}

/// An HS256 identity token for `sub`, valid for a day, as the shop's backend would sign it.
fn identity_token(sub: &str, secret: &str) -> Option<String> {
    let exp = now_us() / 1_000_000 + 86_400;
    let claims = json!({"sub": sub, "exp": exp, "tier": "vip"});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .ok()
}
