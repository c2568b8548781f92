//! The knowledge base learns (issue #19): what the bot missed, edits without a restart, and
//! per-entry answer figures.
//!
//! - [`misses`]: every question the bot did not answer (too unsure, suggestions not picked,
//!   answer marked not helpful, hand-off right after an answer), masked, queued to a batch
//!   writer, grouped by meaning when read;
//! - [`recent`]: what the bot last offered in each session, to tell those cases apart;
//! - [`stats`]: answered / suggested / picked / helpful / hand-offs after, per entry and day;
//! - [`edits`]: validated, versioned, audited edits kept in the store as an overlay on the KB
//!   files ([`crate::bot::Overlay`]); every node polls the version and rebuilds (≤ 1-2 s);
//! - [`clarify`]: `handoff.first_miss = "clarify"`, asking to rephrase before handing off;
//!
//! The `/admin/kb/*` HTTP side lives with the rest of the admin API, in [`crate::admin`].
//!
//! The customer path only calls the hooks of [`Kb`]: each takes a lock for a map insert or an
//! add, or a `try_send`; nothing waits on the store. No question text is logged.

pub mod clarify;
pub mod edits;
pub mod misses;
pub mod recent;
pub mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app::AppState;
use crate::protocol::{Channel, Lang};
use crate::session::{now_ms, Session};
use crate::store::{MissRow, Store};
use crate::telemetry::metric;
use recent::{Asked, Offer, Recent};
use stats::Event;

/// Nearest entries kept with a miss.
const NEAREST: usize = 3;

/// The node's knowledge-base learning state (one per node, in the shared state).
pub struct Kb {
    store: Option<Arc<Store>>,
    followed: recent::Sessions,
    tally: stats::Tally,
    misses: Option<mpsc::Sender<MissRow>>,
    /// Taken by [`start`], which runs the writer.
    writer_rx: Mutex<Option<mpsc::Receiver<MissRow>>>,
    /// One overlay sync at a time (the poller and an edit's own sync).
    sync: tokio::sync::Mutex<()>,
    /// A store version whose overlay did not build; not retried until a newer one comes.
    refused_version: AtomicU64,
}

pub fn lang_str(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "zh",
        Lang::En => "en",
    }
}

fn channel_str(channel: Channel) -> &'static str {
    match channel {
        Channel::Web => "web",
        Channel::App => "app",
        Channel::H5 => "h5",
        Channel::MiniProgram => "mini_program",
    }
}

impl Kb {
    /// Without a store nothing is recorded (misses and figures live in the store only).
    pub fn new(store: Option<Arc<Store>>) -> Self {
        let (tx, rx) = match store {
            Some(_) => {
                let (tx, rx) = mpsc::channel(misses::QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Self {
            store,
            followed: recent::Sessions::default(),
            tally: stats::Tally::default(),
            misses: tx,
            writer_rx: Mutex::new(rx),
            sync: tokio::sync::Mutex::new(()),
            refused_version: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    fn asked(session: &Session, question: &str, outcome: &faq_index::Outcome) -> Arc<Asked> {
        Arc::new(Asked {
            question: crate::mask::mask_text(question).into_owned(),
            lang: lang_str(session.lang),
            channel: channel_str(session.channel),
            nearest: misses::nearest(outcome, NEAREST),
        })
    }

    fn record(&self, asked: &Asked, kind: &'static str) {
        let Some(tx) = &self.misses else {
            return;
        };
        if tx.try_send(misses::row(asked, kind, now_ms())).is_err() {
            metrics::counter!(metric::KB_MISSES_DROPPED_TOTAL).increment(1);
        }
    }

    /// A new question replaces the session's last offer: unpicked suggestions are a miss.
    fn follow(&self, session: &Session, recent: Recent) {
        if let Some(before) = self.followed.put(&session.id, recent) {
            self.closed(before);
        }
    }

    fn closed(&self, before: Recent) {
        if matches!(before.offer, Offer::Suggested(_)) && !before.missed {
            self.record(&before.asked, "suggestion_not_picked");
        }
    }

    /// The bot answered `question` with `entry_id`.
    pub fn answered(
        &self,
        session: &Session,
        question: &str,
        outcome: &faq_index::Outcome,
        entry_id: &str,
    ) {
        self.tally.count(entry_id, Event::Answered, now_ms());
        let recent = Recent {
            asked: Self::asked(session, question, outcome),
            offer: Offer::Answered(entry_id.to_string()),
            at: Instant::now(),
            missed: false,
        };
        self.follow(session, recent);
    }

    /// The bot offered `entries` as suggestions for `question`.
    pub fn suggested(
        &self,
        session: &Session,
        question: &str,
        outcome: &faq_index::Outcome,
        entries: &[String],
    ) {
        let at = now_ms();
        for entry in entries {
            self.tally.count(entry, Event::Suggested, at);
        }
        let recent = Recent {
            asked: Self::asked(session, question, outcome),
            offer: Offer::Suggested(entries.to_vec()),
            at: Instant::now(),
            missed: false,
        };
        self.follow(session, recent);
    }

    /// The bot was too unsure to answer or suggest (it asks to rephrase, or hands off).
    pub fn not_understood(&self, session: &Session, question: &str, outcome: &faq_index::Outcome) {
        if let Some(before) = self.followed.take(&session.id) {
            self.closed(before);
        }
        self.record(&Self::asked(session, question, outcome), "low_confidence");
    }

    /// The customer picked `entry_id` (a suggestion or a topic).
    pub fn picked(&self, session: &Session, entry_id: &str) {
        self.tally.count(entry_id, Event::Picked, now_ms());
        self.followed.update(&session.id, |r| {
            r.offer = Offer::Answered(entry_id.to_string());
            r.at = Instant::now();
        });
    }

    /// The customer said whether `entry_id`'s answer helped.
    pub fn feedback(&self, session: &Session, entry_id: &str, helpful: bool) {
        self.tally
            .count(entry_id, Event::Helpful(helpful), now_ms());
        if helpful {
            return;
        }
        let asked = self.followed.update(&session.id, |r| {
            let first = r.offer == Offer::Answered(entry_id.to_string()) && !r.missed;
            r.missed = true;
            first.then(|| r.asked.clone())
        });
        if let Some(asked) = asked.flatten() {
            self.record(&asked, "not_helpful");
        }
    }

    /// The session went to a human (`trigger`: the hand-off reason): an answer within the
    /// last 2 minutes did not do it. A survey's reopening is about the agent, not the bot.
    pub fn handed_off(&self, session: &Session, trigger: &str) {
        let Some(before) = self.followed.take(&session.id) else {
            return;
        };
        if trigger == "survey_escalation" || before.at.elapsed() >= recent::KEEP {
            return;
        }
        match &before.offer {
            Offer::Answered(entry) => {
                self.tally.count(entry, Event::HandoffAfter, now_ms());
                if !before.missed {
                    self.record(&before.asked, "handoff_after_answer");
                }
            }
            Offer::Suggested(_) => self.closed(before),
        }
    }

    /// Periodic: unpicked suggestions become misses, old records go, figures are written.
    async fn tick(&self) {
        for unpicked in self.followed.sweep(Instant::now()) {
            self.closed(unpicked);
        }
        self.flush_stats().await;
    }

    async fn flush_stats(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let rows = self.tally.take();
        if rows.is_empty() {
            return;
        }
        if let Err(err) = store.add_kb_stats(rows.clone()).await {
            tracing::warn!(error = %err, "writing knowledge-base figures failed; kept for the next try");
            self.tally.restore(rows);
        }
    }
}

/// Brings the node's index up to the store's overlay version (at start, every second, and
/// right after an edit on this node). Returns the version in use.
pub async fn sync(state: &AppState) -> u64 {
    let kb = &state.kb;
    let Some(store) = kb.store.clone() else {
        return state.bot.version();
    };
    let _one = kb.sync.lock().await;
    let latest = match store.kb_version().await {
        Ok(v) => v,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the knowledge-base version");
            return state.bot.version();
        }
    };
    let have = state.bot.version();
    if latest <= have || latest == kb.refused_version.load(Ordering::Relaxed) {
        return have;
    }
    let mut overlay = (*state.bot.overlay()).clone();
    let edits = match store.kb_edits_after(overlay.version).await {
        Ok(edits) => edits,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read knowledge-base edits");
            return have;
        }
    };
    for edit in edits {
        overlay.set(edit.version, &edit.entry_id, edit.after);
    }
    let version = overlay.version;
    match state.bot.apply_overlay(overlay).await {
        Ok(_) => {
            metrics::counter!(metric::KB_OVERLAY_APPLIED_TOTAL).increment(1);
            version
        }
        Err(err) => {
            kb.refused_version.store(latest, Ordering::Relaxed);
            metrics::counter!(metric::KB_OVERLAY_REFUSED_TOTAL).increment(1);
            tracing::error!(error = %err, version, "knowledge-base overlay refused; keeping the old index");
            have
        }
    }
}

/// Applies the stored overlay, then runs the misses writer and the once-a-second upkeep
/// (version poll, sweep, figures) until shutdown, when the figures are written a last time.
pub async fn start(state: &AppState) {
    sync(state).await;
    let rx = state
        .kb
        .writer_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let (Some(store), Some(rx)) = (state.kb.store.clone(), rx) {
        tokio::spawn(misses::run_writer(store, rx));
    }
    let state = state.clone();
    let mut stop = state.shutdown.listen();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                _ = tick.tick() => {}
            }
            sync(&state).await;
            state.kb.tick().await;
        }
        state.kb.flush_stats().await;
    });
}
