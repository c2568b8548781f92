//! An agent message stopped by a `[leaks]` rule ([`crate::leaks`]): what the agent, the audit
//! log, the metrics and the supervisors are told.

use super::AgentSession;
use crate::app::AppState;
use crate::protocol::ErrorCode;
use crate::telemetry::metric;

/// An agent message broke leak rule `rule`: not delivered, the agent told which rule, the
/// block counted and audited (rule and chat only; the text stays out of the audit and logs).
pub(super) fn blocked(
    app: &AppState,
    agent: &AgentSession,
    agent_id: &str,
    session: &str,
    msg_id: String,
    rule: &str,
) {
    metrics::counter!(metric::LEAKS_BLOCKED_TOTAL, "rule" => rule.to_string()).increment(1);
    app.sign_in.leak_blocked(agent_id, session, rule);
    tracing::info!(rule, session, "agent message blocked by a leak rule");
    if let Some(store) = app.store.clone() {
        let entry = crate::store::AuditEntry {
            at_ms: crate::session::now_ms(),
            operator: format!("agent:{agent_id}"),
            action: "leak_blocked".into(),
            target: format!("session:{session}"),
            peer: format!("node:{}", app.node_id),
            detail: format!("rule={rule}"),
        };
        tokio::spawn(async move {
            if let Err(err) = store.audit(&entry).await {
                tracing::error!(error = %err, "cannot audit a blocked agent message");
            }
        });
    }
    agent.error(
        ErrorCode::BlockedContent,
        format!(
            "not delivered: the message breaks rule `{rule}` (contact details or payment outside the platform)"
        ),
        Some(msg_id),
    );
}
