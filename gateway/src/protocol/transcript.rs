//! A transcript line, and the milestones of a chat (hand-off, assignment, transfer, …).
//!
//! Milestones are written as plain sentences (`"handoff to after_sale: keyword"`), the text
//! agents, auditors and stored records have always shown. The sentence is only their face:
//! the line carries the [`Milestone`] as data, and reports and the supervisor view read the
//! data. Lines read back (from the store or the durable log) get their milestone from the
//! sentence again, in one place ([`Milestone::read`]), so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use super::Rich;

/// Who said something in a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Customer,
    Bot,
    Agent,
    System,
}

/// One line of what was said, kept for the agent who takes over and for the records.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "StoredEntry")]
pub struct TranscriptEntry {
    pub from: Speaker,
    pub text: String,
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An attachment or a card said with the line (its links are not kept, see
    /// `attachments::links`).
    #[serde(flatten, default)]
    pub rich: Rich,
    /// What a system line marks; never serialized (the text says it).
    #[serde(skip)]
    pub milestone: Option<Milestone>,
}

crate::redacted_debug!(TranscriptEntry);

impl TranscriptEntry {
    /// A line said by a party (no milestone).
    pub fn said(from: Speaker, text: &str, at_ms: u64, id: Option<String>, rich: Rich) -> Self {
        Self {
            from,
            text: text.to_owned(),
            at_ms,
            id,
            rich,
            milestone: None,
        }
    }

    /// The system line of a milestone.
    pub fn marking(milestone: Milestone, at_ms: u64) -> Self {
        Self {
            from: Speaker::System,
            text: milestone.sentence(),
            at_ms,
            id: None,
            rich: Rich::default(),
            milestone: Some(milestone),
        }
    }
}

/// The stored shape of a line (as serialized); read back, its milestone is restored.
#[derive(Deserialize)]
struct StoredEntry {
    from: Speaker,
    text: String,
    at_ms: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(flatten, default)]
    rich: Rich,
}

impl From<StoredEntry> for TranscriptEntry {
    fn from(e: StoredEntry) -> Self {
        let milestone = (e.from == Speaker::System)
            .then(|| Milestone::read(&e.text))
            .flatten();
        Self {
            from: e.from,
            text: e.text,
            at_ms: e.at_ms,
            id: e.id,
            rich: e.rich,
            milestone,
        }
    }
}

/// A turn in a chat's life that reports and the supervisor view count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Milestone {
    /// The customer was handed to a human of `group` (`trigger`: why).
    HandedOff { group: String, trigger: String },
    /// An agent (shown by `name`) took the chat for `group`.
    Assigned { name: String, group: String },
    /// The agent went away (`reason`); the chat waits in the queue again.
    AgentLeft { reason: String },
    /// The agent passed the chat to `group`.
    Transferred { group: String },
    /// The agent ended the chat.
    ClosedByAgent,
}

impl Milestone {
    /// The sentence of the transcript line (a stored format: keep it as it is).
    pub fn sentence(&self) -> String {
        match self {
            Milestone::HandedOff { group, trigger } => format!("handoff to {group}: {trigger}"),
            Milestone::Assigned { name, group } => format!("assigned to {name} ({group})"),
            Milestone::AgentLeft { reason } => format!("agent left: {reason}"),
            Milestone::Transferred { group } => format!("transferred to {group}"),
            Milestone::ClosedByAgent => "chat closed by the agent".to_owned(),
        }
    }

    /// The milestone a stored sentence marks, if it marks one.
    pub fn read(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("handoff to ") {
            let (group, trigger) = rest.split_once(':').unwrap_or((rest, ""));
            return Some(Milestone::HandedOff {
                group: group.trim().to_owned(),
                trigger: trigger.trim().to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("transferred to ") {
            return Some(Milestone::Transferred {
                group: rest.trim().to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("agent left: ") {
            return Some(Milestone::AgentLeft {
                reason: rest.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("assigned to ") {
            // The name may hold parentheses itself: the group is in the last pair.
            let (name, group) = rest
                .strip_suffix(')')
                .and_then(|r| r.rsplit_once(" ("))
                .unwrap_or((rest, ""));
            return Some(Milestone::Assigned {
                name: name.to_owned(),
                group: group.to_owned(),
            });
        }
        (text == "chat closed by the agent").then_some(Milestone::ClosedByAgent)
    }

    /// The group the chat went to, for a hand-off or a transfer.
    pub fn group(&self) -> Option<&str> {
        match self {
            Milestone::HandedOff { group, .. } | Milestone::Transferred { group } => Some(group),
            _ => None,
        }
    }

    /// Whether the chat (again) waits for an agent from here.
    pub fn enters_queue(&self) -> bool {
        matches!(
            self,
            Milestone::HandedOff { .. }
                | Milestone::Transferred { .. }
                | Milestone::AgentLeft { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every() -> Vec<Milestone> {
        vec![
            Milestone::HandedOff {
                group: "after_sale".into(),
                trigger: "keyword".into(),
            },
            Milestone::Assigned {
                name: "小王 (night)".into(),
                group: "pre_sale".into(),
            },
            Milestone::AgentLeft {
                reason: "node_restarted".into(),
            },
            Milestone::Transferred {
                group: "complaints".into(),
            },
            Milestone::ClosedByAgent,
        ]
    }

    #[test]
    fn sentences_are_the_stored_text_and_read_back_to_the_same_milestone() {
        let sentences: Vec<String> = every().iter().map(Milestone::sentence).collect();
        assert_eq!(
            sentences,
            [
                "handoff to after_sale: keyword",
                "assigned to 小王 (night) (pre_sale)",
                "agent left: node_restarted",
                "transferred to complaints",
                "chat closed by the agent",
            ]
        );
        for m in every() {
            assert_eq!(Milestone::read(&m.sentence()), Some(m));
        }
        assert_eq!(Milestone::read("the customer was greeted"), None);
    }

    #[test]
    fn a_stored_line_keeps_its_format_and_gets_its_milestone_back() {
        let m = Milestone::Transferred {
            group: "complaints".into(),
        };
        let line = TranscriptEntry::marking(m.clone(), 5);
        let json = serde_json::to_value(&line).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"from": "system", "text": "transferred to complaints", "at_ms": 5})
        );
        let back: TranscriptEntry = serde_json::from_value(json).expect("reads back");
        assert_eq!(back.milestone, Some(m));
        // A customer who types a milestone's sentence marks nothing.
        let typed = serde_json::json!({"from": "customer", "text": "transferred to x", "at_ms": 1});
        let typed: TranscriptEntry = serde_json::from_value(typed).expect("reads back");
        assert_eq!(typed.milestone, None);
    }
}
