//! What a customer's frames do, by session state: the bot answers, suggests or hands off;
//! hand-off triggers (asking for a person, complaints, unanswered questions, unhelpful
//! answers) move the session to the queue for a human.

use std::sync::Arc;

use tokio::time::Instant;

use crate::app::AppState;
use crate::mask::mask_text;
use crate::protocol::{
    parse_customer_frame, AgentServerFrame, CustomerFrame, ErrorCode, Rich, ServerFrame, Suggestion,
};
use crate::session::{Milestone, Session, SessionState, Speaker};
use crate::telemetry::metric;

pub use super::trigger::Trigger;

/// Handles one client text frame. Returns `Some(reason)` when the session is over.
pub async fn on_text(app: &AppState, session: &Arc<Session>, text: &str) -> Option<String> {
    let frame = match parse_customer_frame(text) {
        Ok(frame) => frame,
        Err(err) => {
            // Bad frames count against the frame budget like any other (connection loop).
            session.error(err.code, err.message, None);
            return None;
        }
    };
    match frame {
        CustomerFrame::Message {
            id,
            text,
            attachment: None,
        } => on_message(app, session, id, text, Rich::default()).await,
        CustomerFrame::Message {
            id,
            text,
            attachment: Some(attachment),
        } => match app.attachments.info(&attachment, &session.id).await {
            Ok(info) => on_message(app, session, id, text, Rich::with_attachment(Some(info))).await,
            Err(err) => {
                let code = match err {
                    crate::attachments::UseError::Unknown => ErrorCode::BadField,
                    _ => ErrorCode::Internal,
                };
                session.error(code, format!("`attachment`: {err}"), Some(id));
            }
        },
        CustomerFrame::Card { id, card } => {
            on_message(app, session, id, String::new(), Rich::with_card(card)).await
        }
        CustomerFrame::Typing {} if !session.typing_due() => {}
        CustomerFrame::Typing {} => {
            let frame = AgentServerFrame::Typing {
                session: session.id.to_string(),
            };
            app.relay
                .forward_to_agent(session, session.state(), frame)
                .await;
        }
        CustomerFrame::RequestHuman {} => {
            if matches!(session.state(), SessionState::Bot) {
                let group = category_group(app, session);
                hand_off(app, session, group, Trigger::CustomerRequest, 0).await;
            } else {
                let message = format!("a human was already asked for ({:?})", session.state());
                session.error(ErrorCode::NotInState, message, None);
            }
        }
        CustomerFrame::Feedback { entry_id, .. } | CustomerFrame::Pick { entry_id }
            if !session.was_offered(&entry_id) =>
        {
            let message = "`entry_id` must name an answer or suggestion offered in this session";
            session.error(ErrorCode::BadField, message, None);
        }
        CustomerFrame::Feedback { entry_id, helpful } => {
            app.kb.feedback(session, &entry_id, helpful); // kb: figures, misses
            let label = if helpful { "yes" } else { "no" };
            metrics::counter!(metric::BOT_FEEDBACK_TOTAL, "helpful" => label).increment(1);
            session.record(
                Speaker::System,
                &format!("feedback on {entry_id}: {label}"),
                None,
            );
            let in_bot = matches!(session.state(), SessionState::Bot);
            if !helpful && in_bot && app.settings.handoff.on_not_helpful {
                let group =
                    entry_group(app, &entry_id).unwrap_or_else(|| category_group(app, session));
                hand_off(app, session, group, Trigger::NotHelpful, 0).await;
            }
        }
        CustomerFrame::Pick { entry_id } => pick(app, session, entry_id).await,
        CustomerFrame::Close {} => {
            app.relay.end_chat(session, "customer_closed", true).await;
            return Some("customer_closed".into());
        }
        CustomerFrame::SurveyAnswer { score, comment } => {
            return survey_answer(app, session, score, comment).await;
        }
        CustomerFrame::LeaveMessage { id, text, contact } => {
            if matches!(session.state(), SessionState::Bot) {
                let group = category_group(app, session);
                crate::tickets::leave_message(app, session, id, text, contact, group).await;
            } else {
                let message = format!(
                    "leave_message is for when nobody is there (the session is {:?})",
                    session.state()
                );
                session.error(ErrorCode::NotInState, message, Some(id));
            }
        }
    }
    None
}

/// In `survey` state: 1-3 close the session, 4-5 reopen it as a complaint one level higher.
async fn survey_answer(
    app: &AppState,
    session: &Arc<Session>,
    score: u8,
    comment: Option<String>,
) -> Option<String> {
    use crate::records::survey::{self, Outcome};
    if !matches!(session.state(), SessionState::Survey) {
        let message = format!("not possible while the session is {:?}", session.state());
        session.error(ErrorCode::NotInState, message, None);
        return None;
    }
    let max = app.settings.limits.max_text_chars;
    let long = comment.as_ref().is_some_and(|c| c.chars().count() > max);
    if !survey::valid_score(score) || long {
        let message = format!("`score` must be 1-5 and `comment` at most {max} characters");
        session.error(ErrorCode::BadField, message, None);
        return None;
    }
    match survey::record_answer(session, score, comment) {
        Outcome::Resolved => {
            app.relay.end_chat(session, "survey_done", true).await;
            Some("survey_done".into())
        }
        Outcome::Complaint { level } => {
            let group = app.settings.handoff.complaint_group.clone();
            hand_off(app, session, group, Trigger::Survey, level).await;
            // Kept now as reopened; the final record replaces it when the complaint ends.
            app.relay.recorder.save(session, None).await;
            None
        }
    }
}

/// A customer message: text, and perhaps an attachment or a card (`rich`).
async fn on_message(app: &AppState, session: &Arc<Session>, id: String, text: String, rich: Rich) {
    let started = Instant::now();
    let max = app.settings.limits.max_text_chars;
    let chars = text.chars().count();
    if chars > max {
        let message = format!("text is {chars} characters, the limit is {max}");
        return session.error(ErrorCode::TooLong, message, Some(id));
    }
    let only_rich = text.trim().is_empty() && !rich.is_empty();
    if (text.trim().is_empty() && !only_rich) || id.is_empty() || id.len() > 64 {
        let message = "`id` must be 1-64 bytes and `text` must not be empty";
        return session.error(ErrorCode::BadField, message, Some(id));
    }
    if !app.journal.has_room() {
        // The log is behind (its store or Redis is slow or away): take nothing we could not
        // make durable soon; the client re-sends the message under its id.
        let message =
            "the gateway is catching up; this message was not stored, send it again shortly";
        return session.error(ErrorCode::RateLimited, message, Some(id));
    }
    if !session.take_in(&id, &text, rich.clone()) {
        return;
    }
    // The state the message is accepted in decides where it goes, even if an agent's close
    // lands between the ack and the forwarding.
    let state = session.state();
    session.emit(&ServerFrame::Ack {
        id: id.clone(),
        duplicate: false,
    });
    match state.clone() {
        // A photo or a card alone: kept for the agent to come; nothing for the bot to read.
        SessionState::Bot | SessionState::Queued { .. } if only_rich => {}
        SessionState::Bot => {
            let handoff = &app.settings.handoff;
            if let Some(level) = complaint_level(handoff, &text) {
                session.raise_complaint(level);
                hand_off(
                    app,
                    session,
                    handoff.complaint_group.clone(),
                    Trigger::Complaint,
                    level,
                )
                .await;
            } else if contains_any(&text, &handoff.human_words) {
                let group = category_group(app, session);
                hand_off(app, session, group, Trigger::CustomerRequest, 0).await;
            } else {
                bot_reply(app, session, id, text, started, false).await;
            }
        }
        // While waiting for a human the bot still answers what it is sure of.
        SessionState::Queued { .. } => bot_reply(app, session, id, text, started, true).await,
        SessionState::WithAgent { .. } => {
            let frame = AgentServerFrame::Message {
                session: session.id.to_string(),
                id,
                text: mask_text(&text).into_owned(),
                rich,
            };
            // The agent sees only what survives this node: after a crash the customer's
            // re-send would otherwise reach the agent a second time.
            if session.sync().await.is_err() {
                return;
            }
            app.relay.forward_to_agent(session, state, frame).await;
        }
        _ => {}
    }
}

/// Searches the knowledge base and answers, suggests or hands off. While `queued`, only
/// sure answers are sent.
async fn bot_reply(
    app: &AppState,
    session: &Arc<Session>,
    id: String,
    text: String,
    started: Instant,
    queued: bool,
) {
    let limit = app.settings.kb.suggestions.max(5);
    let found = match app.bot.search(text.clone(), limit).await {
        Ok(found) => found,
        Err(err) => {
            metrics::counter!(metric::BOT_FAILURES_TOTAL).increment(1);
            tracing::warn!(error = %err, "knowledge-base search failed");
            return;
        }
    };
    let outcome = &found.outcome;
    let top = outcome.matches.first();
    let category = top
        .and_then(|m| found.index.entry(&m.id))
        .map(|e| e.category.clone());
    session.with_bot(|c| c.last_category = category.clone());
    let decision = outcome.decision;
    metrics::counter!(metric::BOT_ANSWERS_TOTAL, "decision" => decision_label(decision))
        .increment(1);
    match (decision, top) {
        (faq_index::Decision::Answer, Some(best)) => {
            let Some(entry) = found.index.entry(&best.id) else {
                return;
            };
            session.with_bot(|c| c.unanswered = 0);
            app.kb.answered(session, &text, outcome, &entry.id); // kb: figures, misses
            session.offer([entry.id.as_str()]);
            answer(
                app,
                session,
                entry,
                Some(id),
                best.score,
                outcome.confidence,
            )
            .await;
        }
        _ if queued => return,
        (faq_index::Decision::Suggest, Some(_)) => {
            let items: Vec<Suggestion> = outcome
                .matches
                .iter()
                .take(app.settings.kb.suggestions)
                .map(|m| Suggestion {
                    entry_id: m.id.clone(),
                    question: m.question.clone(),
                })
                .collect();
            let limit = app.settings.handoff.unanswered_in_a_row;
            let unanswered = session.with_bot(|c| {
                c.unanswered += 1;
                c.suggested = items.iter().map(|i| i.entry_id.clone()).collect();
                c.unanswered
            });
            if limit > 0 && unanswered >= limit {
                app.kb.not_understood(session, &text, outcome); // kb: misses
                let group = category_group(app, session);
                hand_off(app, session, group, Trigger::UnansweredInARow, 0).await;
            } else {
                let ids: Vec<String> = items.iter().map(|i| i.entry_id.clone()).collect();
                app.kb.suggested(session, &text, outcome, &ids); // kb: figures, misses
                session.offer(items.iter().map(|i| i.entry_id.as_str()));
                let shown: Vec<&str> = items.iter().map(|i| i.question.as_str()).collect();
                session.record(
                    Speaker::Bot,
                    &format!("suggested: {}", shown.join(" / ")),
                    None,
                );
                session.emit(&ServerFrame::Suggestions {
                    reply_to: Some(id),
                    items,
                    text: None,
                    reason: None,
                });
            }
        }
        _ => {
            app.kb.not_understood(session, &text, outcome); // kb: misses
            if !crate::kb::clarify::first_miss(app, session, id) {
                let group = category_group(app, session);
                hand_off(app, session, group, Trigger::BotNotConfident, 0).await;
            }
        }
    }
    metrics::histogram!(metric::BOT_LATENCY_SECONDS).record(started.elapsed().as_secs_f64());
}

/// Sends `entry`'s answer (with the customer's live order status where the entry asks for it).
async fn answer(
    app: &AppState,
    session: &Session,
    entry: &faq_index::Entry,
    reply_to: Option<String>,
    score: f32,
    confidence: f32,
) {
    let text = crate::orders::bot_text(app.orders.as_deref(), session, entry).await;
    let frame = ServerFrame::BotAnswer {
        reply_to,
        entry_id: entry.id.clone(),
        text: text.clone(),
        score,
        confidence,
        quick_replies: entry.quick_replies.clone(),
    };
    session.emit_recorded(&frame, Speaker::Bot, &text, Some(entry.id.clone()));
}

/// The customer picked a suggestion (or any entry): send its answer.
async fn pick(app: &AppState, session: &Session, entry_id: String) {
    let index = app.bot.index();
    let Some(entry) = index.entry(&entry_id) else {
        let message = "that knowledge-base entry is no longer available";
        return session.error(ErrorCode::BadField, message, None);
    };
    session.with_bot(|c| {
        c.unanswered = 0;
        c.last_category = Some(entry.category.clone());
    });
    app.kb.picked(session, &entry.id); // kb: figures
    answer(app, session, entry, None, 1.0, 1.0).await;
}

/// Moves the session to the queue for a human of `group` and tells the customer.
pub async fn hand_off(
    app: &AppState,
    session: &Arc<Session>,
    group: String,
    trigger: Trigger,
    level: u8,
) {
    metrics::counter!(metric::HANDOFFS_TOTAL, "trigger" => trigger.as_str()).increment(1);
    app.kb.handed_off(session, trigger.as_str()); // kb: hand-offs after an answer
    tracing::info!(%group, trigger = trigger.as_str(), level, "handing off to a human");
    session.mark(Milestone::HandedOff {
        group: group.clone(),
        trigger: trigger.as_str().to_owned(),
    });
    if let Some((reason, next_open_ms)) = crate::tickets::offline(app, &group) {
        // Nobody will take it: the bot stays, and the customer may leave a message.
        session.back_to_bot();
        crate::tickets::tell_offline(session, &group, reason, next_open_ms);
        return;
    }
    session.hand_off(&group);
    session.emit(&ServerFrame::Handoff {
        group: group.clone(),
        reason: trigger.as_str().into(),
        level: (level > 0).then_some(level),
    });
    app.relay.enqueue(session, &group, level).await;
}

fn complaint_level(settings: &crate::config::HandoffSettings, text: &str) -> Option<u8> {
    [
        (3, &settings.complaint_level3),
        (2, &settings.complaint_level2),
        (1, &settings.complaint_level1),
    ]
    .into_iter()
    .find(|(_, words)| contains_any(text, words))
    .map(|(level, _)| level)
}

fn contains_any(text: &str, words: &[String]) -> bool {
    let lower = text.to_lowercase();
    words
        .iter()
        .any(|w| !w.is_empty() && lower.contains(&w.to_lowercase()))
}

fn group_of_category(app: &AppState, category: &str) -> Option<String> {
    app.settings.handoff.category_groups.get(category).cloned()
}

fn category_group(app: &AppState, session: &Session) -> String {
    session
        .with_bot(|c| c.last_category.clone())
        .and_then(|c| group_of_category(app, &c))
        .unwrap_or_else(|| app.settings.handoff.default_group.clone())
}

fn entry_group(app: &AppState, entry_id: &str) -> Option<String> {
    let index = app.bot.index();
    let entry = index.entry(entry_id)?;
    group_of_category(app, &entry.category)
}

fn decision_label(decision: faq_index::Decision) -> &'static str {
    match decision {
        faq_index::Decision::Answer => "answer",
        faq_index::Decision::Suggest => "suggest",
        faq_index::Decision::Handoff => "handoff",
    }
}
