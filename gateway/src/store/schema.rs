//! The tables, created at start if missing (no separate set-up step). Portable SQL for SQLite
//! and PostgreSQL: text, BIGINT (times in ms since the epoch, flags as 0/1), upserts with
//! `ON CONFLICT`. Encrypted columns end in `_enc`; `visitor_idx` is a keyed blind index.

use sqlx::AnyPool;

const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kefu_conversations (
        id TEXT PRIMARY KEY,
        visitor_idx TEXT,
        visitor_enc TEXT,
        channel TEXT NOT NULL,
        lang TEXT NOT NULL,
        groups_list TEXT NOT NULL,
        agents_list TEXT NOT NULL,
        category TEXT,
        created_ms BIGINT NOT NULL,
        handoff_ms BIGINT,
        assigned_ms BIGINT,
        first_response_ms BIGINT,
        closed_ms BIGINT,
        end_reason TEXT NOT NULL,
        survey_score BIGINT,
        survey_comment_enc TEXT,
        complaint_level BIGINT NOT NULL,
        complaint_ms BIGINT,
        escalated BIGINT NOT NULL,
        transfers BIGINT NOT NULL,
        greeting_sla_met BIGINT,
        transcript_enc TEXT NOT NULL,
        stored_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS kefu_conversations_visitor ON kefu_conversations (visitor_idx)",
    "CREATE INDEX IF NOT EXISTS kefu_conversations_created ON kefu_conversations (created_ms)",
    "CREATE TABLE IF NOT EXISTS kefu_complaints (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        level BIGINT NOT NULL,
        status TEXT NOT NULL,
        handler TEXT,
        category TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        resolved_ms BIGINT,
        satisfaction BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS kefu_complaints_created ON kefu_complaints (created_ms)",
    "CREATE TABLE IF NOT EXISTS kefu_audit (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        peer TEXT NOT NULL,
        detail TEXT NOT NULL
    )",
    // The log of live conversations (memory routing): one encrypted entry per row, numbered in
    // append order; a session's rows go once its record is stored.
    "CREATE TABLE IF NOT EXISTS kefu_log (
        session TEXT NOT NULL,
        n BIGINT NOT NULL,
        body_enc TEXT NOT NULL,
        PRIMARY KEY (session, n)
    )",
    "CREATE INDEX IF NOT EXISTS kefu_audit_at ON kefu_audit (at_ms)",
    // Where each account signed in from (keyed hashes of address and user agent, never the
    // values), for the `new_sign_in` alerts; rows unused for `sign_in.history_days` go.
    "CREATE TABLE IF NOT EXISTS kefu_sign_ins (
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        last_ms BIGINT NOT NULL,
        PRIMARY KEY (account, kind, digest)
    )",
];

/// Creates whatever is missing.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::Error> {
    // The knowledge base's tables (misses, overlay edits, answer figures): see `store::kb`.
    for statement in STATEMENTS
        .iter()
        .chain(super::kb::STATEMENTS)
        .chain(super::attachments::STATEMENTS)
        .chain(super::customers::STATEMENTS)
        .chain(super::tickets::STATEMENTS)
    {
        sqlx::query(*statement).execute(pool).await?;
    }
    Ok(())
}
