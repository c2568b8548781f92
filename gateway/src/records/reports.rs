//! Supervisor figures from stored facts: first response time, time to resolve, first-contact
//! resolution, satisfaction, escalation rate, greeting SLA compliance; and the weekly
//! complaint report (JSON and CSV).

use std::collections::BTreeMap;

use serde::Serialize;

use super::ConversationRecord;
use crate::store::ComplaintRecord;

/// Resolved at the first contact: ended, never transferred, not reopened as a complaint, and
/// not rated 4-5.
pub fn first_contact_resolved(r: &ConversationRecord) -> bool {
    r.closed_ms.is_some()
        && r.transfers == 0
        && !r.escalated
        && r.survey_score.is_none_or(|s| s <= 3)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub conversations: usize,
    pub closed: usize,
    pub handed_to_agents: usize,
    /// Mean seconds from the hand-off to the agent's first own message.
    pub first_response_avg_s: Option<f64>,
    /// Mean seconds from the start of the chat to its end.
    pub time_to_resolve_avg_s: Option<f64>,
    pub first_contact_resolution_rate: Option<f64>,
    pub survey_answers: usize,
    /// Mean score (1 very satisfied … 5 very dissatisfied).
    pub satisfaction_avg_score: Option<f64>,
    /// Share of answers 1-3.
    pub satisfaction_rate: Option<f64>,
    /// Share of closed chats reopened as complaints by the survey.
    pub escalation_rate: Option<f64>,
    /// Share of chats with an agent greeted within `routing.agent_greeting_s`.
    pub greeting_sla_compliance: Option<f64>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| round3(values.iter().sum::<f64>() / values.len() as f64))
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| round3(part as f64 / whole as f64))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn summary(records: &[ConversationRecord]) -> Summary {
    let closed: Vec<&ConversationRecord> =
        records.iter().filter(|r| r.closed_ms.is_some()).collect();
    let first_response: Vec<f64> = records
        .iter()
        .filter_map(|r| Some(r.first_response_ms?.saturating_sub(r.handoff_ms?) as f64 / 1000.0))
        .collect();
    let resolve: Vec<f64> = closed
        .iter()
        .filter_map(|r| Some(r.closed_ms?.saturating_sub(r.created_ms) as f64 / 1000.0))
        .collect();
    let scores: Vec<f64> = records
        .iter()
        .filter_map(|r| r.survey_score.map(f64::from))
        .collect();
    let greeted: Vec<bool> = records.iter().filter_map(|r| r.greeting_sla_met).collect();
    Summary {
        conversations: records.len(),
        closed: closed.len(),
        handed_to_agents: records.iter().filter(|r| r.assigned_ms.is_some()).count(),
        first_response_avg_s: mean(&first_response),
        time_to_resolve_avg_s: mean(&resolve),
        first_contact_resolution_rate: share(
            closed.iter().filter(|r| first_contact_resolved(r)).count(),
            closed.len(),
        ),
        survey_answers: scores.len(),
        satisfaction_avg_score: mean(&scores),
        satisfaction_rate: share(scores.iter().filter(|s| **s <= 3.0).count(), scores.len()),
        escalation_rate: share(
            records.iter().filter(|r| r.escalated).count(),
            records.len(),
        ),
        greeting_sla_compliance: share(greeted.iter().filter(|m| **m).count(), greeted.len()),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComplaintReport {
    pub week: String,
    pub total: usize,
    pub open: usize,
    pub resolved: usize,
    /// Counts by level ("1", "2", "3").
    pub by_level: BTreeMap<String, usize>,
    pub by_category: BTreeMap<String, usize>,
    /// Mean seconds from opening to resolution, of the resolved ones.
    pub time_to_resolve_avg_s: Option<f64>,
    /// Mean survey score of the complaints that have one.
    pub satisfaction_avg_score: Option<f64>,
    pub complaints: Vec<ComplaintRecord>,
}

pub fn complaint_report(week: &str, complaints: Vec<ComplaintRecord>) -> ComplaintReport {
    let mut by_level = BTreeMap::new();
    let mut by_category = BTreeMap::new();
    for c in &complaints {
        *by_level.entry(c.level.to_string()).or_insert(0) += 1;
        *by_category.entry(c.category.clone()).or_insert(0) += 1;
    }
    let resolve: Vec<f64> = complaints
        .iter()
        .filter_map(|c| Some(c.resolved_ms?.saturating_sub(c.created_ms) as f64 / 1000.0))
        .collect();
    let scores: Vec<f64> = complaints
        .iter()
        .filter_map(|c| c.satisfaction.map(f64::from))
        .collect();
    ComplaintReport {
        week: week.to_string(),
        total: complaints.len(),
        open: complaints.iter().filter(|c| c.status == "open").count(),
        resolved: complaints.iter().filter(|c| c.status == "resolved").count(),
        by_level,
        by_category,
        time_to_resolve_avg_s: mean(&resolve),
        satisfaction_avg_score: mean(&scores),
        complaints,
    }
}

/// The report as CSV: one row per (level, category) with counts, resolution and
/// satisfaction, then a total row.
pub fn complaint_csv(report: &ComplaintReport) -> String {
    let mut groups: BTreeMap<(String, String), Vec<&ComplaintRecord>> = BTreeMap::new();
    for c in &report.complaints {
        groups
            .entry((c.level.to_string(), c.category.clone()))
            .or_default()
            .push(c);
    }
    let mut out = String::from(
        "week,level,category,count,open,resolved,time_to_resolve_avg_s,satisfaction_avg_score\n",
    );
    let row = |level: &str, category: &str, items: &[&ComplaintRecord]| {
        let resolve: Vec<f64> = items
            .iter()
            .filter_map(|c| Some(c.resolved_ms?.saturating_sub(c.created_ms) as f64 / 1000.0))
            .collect();
        let scores: Vec<f64> = items
            .iter()
            .filter_map(|c| c.satisfaction.map(f64::from))
            .collect();
        let fmt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{}\n",
            report.week,
            level,
            csv_field(category),
            items.len(),
            items.iter().filter(|c| c.status == "open").count(),
            items.iter().filter(|c| c.status == "resolved").count(),
            fmt(mean(&resolve)),
            fmt(mean(&scores)),
        )
    };
    for ((level, category), items) in &groups {
        out.push_str(&row(level, category, items));
    }
    let all: Vec<&ComplaintRecord> = report.complaints.iter().collect();
    out.push_str(&row("all", "all", &all));
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
