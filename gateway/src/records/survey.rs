//! The satisfaction survey after an agent closes a chat: 1 very satisfied … 5 very
//! dissatisfied. 1-3 count as resolved and end the session; 4-5 reopen it as a complaint one
//! level higher (1 ordinary, 2 serious, 3 very serious), queued to the complaint group with
//! the whole history.

use crate::session::{Session, Speaker};
use crate::telemetry::metric;

/// Highest complaint level.
pub const MAX_LEVEL: u8 = 3;

/// What a valid survey answer leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Resolved: the session ends with `closed {reason:"survey_done"}`.
    Resolved,
    /// Reopened as a complaint of `level`.
    Complaint { level: u8 },
}

/// Whether `score` is a survey score.
pub fn valid_score(score: u8) -> bool {
    (1..=5).contains(&score)
}

/// The complaint level after a dissatisfied answer: one above the current, within 1..=3.
pub fn escalated_level(current: u8) -> u8 {
    current.saturating_add(1).clamp(1, MAX_LEVEL)
}

/// Records a valid answer on the session (score, comment, a transcript line, metrics) and
/// says what follows. The caller ends the session or hands it to the complaint group, then
/// saves the record.
pub fn record_answer(session: &Session, score: u8, comment: Option<String>) -> Outcome {
    let comment = comment.filter(|c| !c.trim().is_empty());
    let outcome = session.with_survey(|survey, complaint_level| {
        survey.answer = Some((score, comment.clone()));
        if score >= 4 {
            survey.escalations += 1;
            *complaint_level = escalated_level(*complaint_level);
            Outcome::Complaint {
                level: *complaint_level,
            }
        } else {
            Outcome::Resolved
        }
    });
    let line = match &comment {
        Some(comment) => format!("survey: {score} ({comment})"),
        None => format!("survey: {score}"),
    };
    session.record(Speaker::System, &line, None);
    let score_label = score.to_string();
    metrics::counter!(metric::SURVEY_ANSWERS_TOTAL, "score" => score_label).increment(1);
    metrics::histogram!(metric::SURVEY_SCORE).record(f64::from(score));
    if let Outcome::Complaint { level } = outcome {
        let level_label = level.to_string();
        metrics::counter!(metric::SURVEY_ESCALATIONS_TOTAL, "level" => level_label).increment(1);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_go_up_by_one_and_stop_at_three() {
        assert_eq!(escalated_level(0), 1);
        assert_eq!(escalated_level(1), 2);
        assert_eq!(escalated_level(2), 3);
        assert_eq!(escalated_level(3), 3);
        assert!(valid_score(1) && valid_score(5));
        assert!(!valid_score(0) && !valid_score(6));
    }
}
