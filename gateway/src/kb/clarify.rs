//! `handoff.first_miss = "clarify"`: the first question in a row the bot cannot place gets a
//! request to rephrase and the main topics as quick replies, instead of a hand-off. At a sale
//! peak most such questions are typos or half sentences; sending each to the queue filled it.

use std::sync::Arc;

use crate::app::AppState;
use crate::config::FirstMiss;
use crate::protocol::{Lang, ServerFrame, Suggestion};
use crate::session::{Session, Speaker};
use crate::telemetry::metric;

/// Asks to rephrase when this is the first miss in a row and the setting says so; returns
/// whether it did (otherwise the caller hands off as before). Counts as one unanswered
/// question, so the next miss in a row hands off.
pub fn first_miss(app: &AppState, session: &Arc<Session>, reply_to: String) -> bool {
    let handoff = &app.settings.handoff;
    if handoff.first_miss != FirstMiss::Clarify {
        return false;
    }
    let first = session.with_bot(|c| {
        let first = c.unanswered == 0;
        if first {
            c.unanswered = 1;
        }
        first
    });
    if !first {
        return false;
    }
    let lang = crate::kb::lang_str(session.lang);
    let index = app.bot.index();
    let items: Vec<Suggestion> = handoff
        .clarify_topics
        .iter()
        .filter_map(|id| index.entry(id))
        .filter(|e| e.lang == lang)
        .map(|e| Suggestion {
            entry_id: e.id.clone(),
            question: e.questions.first().cloned().unwrap_or_default(),
        })
        .collect();
    let text = match session.lang {
        Lang::Zh => handoff.clarify_zh.clone(),
        Lang::En => handoff.clarify_en.clone(),
    };
    metrics::counter!(metric::BOT_CLARIFY_TOTAL).increment(1);
    session.offer(items.iter().map(|i| i.entry_id.as_str()));
    session.with_bot(|c| c.suggested = items.iter().map(|i| i.entry_id.clone()).collect());
    session.record(Speaker::Bot, &text, None);
    session.emit(&ServerFrame::Suggestions {
        reply_to: Some(reply_to),
        items,
        text: Some(text),
        reason: Some("clarify".into()),
    });
    true
}
