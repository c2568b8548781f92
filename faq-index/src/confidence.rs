//! From scores to a decision: answer, suggest, or hand off to a human.
//!
//! The confidence must mean the same thing for every query, or one threshold cannot serve them
//! all. Raw BM25 grows with the query's length and the rarity of its words, so it is not used
//! here; the confidence is built from two normalised signals instead:
//! - similarity: the cosine between the query's TF-IDF vector and the best entry (in `[0, 1]`;
//!   words the KB has never seen count in the query's norm, so a question about something else
//!   scores low even when it shares a word or two with an entry);
//! - margin: how far the best entry is ahead of the runner-up (two entries tied means the bot
//!   cannot tell which one the customer means).

use serde::{Deserialize, Serialize};

/// What the gateway should do with a customer question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Send the top entry's answer.
    Answer,
    /// Offer the top [`Thresholds::suggestions`] entries for the customer to pick.
    Suggest,
    /// Route to a human agent.
    Handoff,
}

/// Confidence thresholds (the gateway embeds these as `[kb]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Confidence at or above which the top entry is answered.
    pub answer: f32,
    /// Confidence at or above which suggestions are offered (below: hand off).
    pub suggest: f32,
    /// How many entries a suggestion offers.
    pub suggestions: usize,
}

impl Default for Thresholds {
    /// Tuned on the dev sets: about 90% of out-of-scope questions handed off while most
    /// in-scope questions are answered correctly (see the crate documentation for figures).
    fn default() -> Self {
        Self {
            answer: 0.45,
            suggest: 0.38,
            suggestions: 3,
        }
    }
}

impl Thresholds {
    /// The decision for a confidence.
    pub fn decide(&self, confidence: f32) -> Decision {
        if confidence >= self.answer {
            Decision::Answer
        } else if confidence >= self.suggest {
            Decision::Suggest
        } else {
            Decision::Handoff
        }
    }
}

/// Weight of the margin over the runner-up in the confidence.
const MARGIN_WEIGHT: f32 = 0.5;

/// Combines the top similarity and its margin over the runner-up into a confidence in `[0, 1]`.
pub(crate) fn confidence(top: f32, runner_up: f32) -> f32 {
    let margin = (top - runner_up).max(0.0);
    (top + MARGIN_WEIGHT * margin).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_map_confidence_to_decisions() {
        let t = Thresholds {
            answer: 0.6,
            suggest: 0.3,
            suggestions: 3,
        };
        assert_eq!(t.decide(0.9), Decision::Answer);
        assert_eq!(t.decide(0.6), Decision::Answer);
        assert_eq!(t.decide(0.45), Decision::Suggest);
        assert_eq!(t.decide(0.1), Decision::Handoff);
    }

    #[test]
    fn margin_raises_confidence_and_ties_lower_it() {
        assert!(confidence(0.6, 0.1) > confidence(0.6, 0.59));
        assert!(confidence(0.6, 0.6) <= 0.6);
        assert!(confidence(2.0, 0.0) <= 1.0);
    }

    #[test]
    fn thresholds_deserialize_with_defaults() {
        let t: Thresholds = serde_json::from_str(r#"{"answer":0.7}"#).unwrap();
        assert_eq!(t.answer, 0.7);
        assert_eq!(t.suggest, Thresholds::default().suggest);
        let d: Decision = serde_json::from_str(r#""handoff""#).unwrap();
        assert_eq!(d, Decision::Handoff);
    }
}
