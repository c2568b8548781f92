//! Reads, deletions and the audit log. Decryption of transcripts runs on the blocking pool.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

// Dynamic SQL here is built only from constants and numbered placeholders (`$n`); every value
// is bound, so `AssertSqlSafe` holds.

use super::ConversationRecord;
use super::{Store, StoreError};
use crate::session::TranscriptEntry;

/// A conversation without its text, for search results and reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: String,
    pub channel: String,
    pub lang: String,
    pub groups: Vec<String>,
    pub agents: Vec<String>,
    pub created_ms: u64,
    pub closed_ms: Option<u64>,
    pub end_reason: String,
    pub survey_score: Option<u8>,
    pub complaint_level: u8,
}

/// A complaint: one per conversation that became one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComplaintRecord {
    pub id: String,
    pub session: String,
    pub level: u8,
    pub status: String,
    pub handler: Option<String>,
    pub category: String,
    pub created_ms: u64,
    pub resolved_ms: Option<u64>,
    pub satisfaction: Option<u8>,
}

/// Who read or changed what, when, and from where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at_ms: u64,
    pub operator: String,
    pub action: String,
    pub target: String,
    pub peer: String,
    pub detail: String,
}

impl AuditEntry {
    /// An agent's read of a chat's customer data over its socket (history, orders).
    pub fn agent_read(agent: &str, action: &str, session: &str, detail: String) -> Self {
        AuditEntry {
            at_ms: crate::session::now_ms(),
            operator: format!("agent:{agent}"),
            action: action.into(),
            target: format!("session:{session}"),
            peer: "agent_socket".into(),
            detail,
        }
    }
}

const FACT_COLUMNS: &str = "id, channel, lang, groups_list, agents_list, category, created_ms,
    handoff_ms, assigned_ms, first_response_ms, closed_ms, end_reason, survey_score,
    complaint_level, complaint_ms, escalated, transfers, greeting_sla_met";

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn opt(row: &AnyRow, col: &str) -> Result<Option<u64>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(u))
}

fn list(text: String) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn small(v: i64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// The unencrypted facts of a row (visitor, comment and transcript left empty).
fn facts(row: &AnyRow) -> Result<ConversationRecord, sqlx::Error> {
    Ok(ConversationRecord {
        id: row.try_get("id")?,
        visitor: None,
        channel: row.try_get("channel")?,
        lang: row.try_get("lang")?,
        groups: list(row.try_get("groups_list")?),
        agents: list(row.try_get("agents_list")?),
        category: row.try_get("category")?,
        created_ms: u(row.try_get("created_ms")?),
        handoff_ms: opt(row, "handoff_ms")?,
        assigned_ms: opt(row, "assigned_ms")?,
        first_response_ms: opt(row, "first_response_ms")?,
        closed_ms: opt(row, "closed_ms")?,
        end_reason: row.try_get("end_reason")?,
        survey_score: row.try_get::<Option<i64>, _>("survey_score")?.map(small),
        survey_comment: None,
        complaint_level: small(row.try_get("complaint_level")?),
        complaint_ms: opt(row, "complaint_ms")?,
        escalated: row.try_get::<i64, _>("escalated")? != 0,
        transfers: u32::try_from(row.try_get::<i64, _>("transfers")?).unwrap_or(0),
        greeting_sla_met: row
            .try_get::<Option<i64>, _>("greeting_sla_met")?
            .map(|v| v != 0),
        transcript: Vec::new(),
    })
}

/// A full row: facts plus the encrypted fields, still sealed.
pub(super) struct Sealed {
    record: ConversationRecord,
    visitor_enc: Option<String>,
    comment_enc: Option<String>,
    transcript_enc: String,
}

pub(super) fn sealed(row: &AnyRow) -> Result<Sealed, sqlx::Error> {
    Ok(Sealed {
        record: facts(row)?,
        visitor_enc: row.try_get("visitor_enc")?,
        comment_enc: row.try_get("survey_comment_enc")?,
        transcript_enc: row.try_get("transcript_enc")?,
    })
}

/// `$start, $start+1, …` for `n` parameters.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    pub(super) async fn open_sealed(
        &self,
        rows: Vec<Sealed>,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|s| {
                    let mut r = s.record;
                    let open = |stored: &str, field| {
                        keys.decrypt_field(stored, super::writer::conversation_aad(&r.id, field))
                    };
                    let visitor = s.visitor_enc.map(|v| open(&v, "visitor_enc")).transpose()?;
                    let comment = s
                        .comment_enc
                        .map(|c| open(&c, "survey_comment_enc"))
                        .transpose()?;
                    let text = open(&s.transcript_enc, "transcript_enc")?;
                    r.visitor = visitor;
                    r.survey_comment = comment;
                    r.transcript = serde_json::from_str::<Vec<TranscriptEntry>>(&text)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    Ok(r)
                })
                .collect()
        })
        .await
        .map_err(|_| StoreError::PoolClosed)?
    }

    /// One conversation, decrypted.
    pub async fn conversation(&self, id: &str) -> Result<Option<ConversationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM kefu_conversations WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(self.open_sealed(vec![sealed(&row)?]).await?.pop())
    }

    /// Conversations of a visitor and/or created within `[from_ms, to_ms)`, newest first.
    pub async fn search(
        &self,
        visitor: Option<&str>,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let mut sql = format!("SELECT {FACT_COLUMNS} FROM kefu_conversations WHERE 1 = 1");
        let indexes = visitor
            .map(|v| self.keys.blind_indexes(v))
            .unwrap_or_default();
        let mut n = 1;
        if visitor.is_some() {
            sql.push_str(&format!(
                " AND visitor_idx IN ({})",
                placeholders(n, indexes.len())
            ));
            n += indexes.len();
        }
        if from_ms.is_some() {
            sql.push_str(&format!(" AND created_ms >= ${n}"));
            n += 1;
        }
        if to_ms.is_some() {
            sql.push_str(&format!(" AND created_ms < ${n}"));
        }
        sql.push_str(&format!(" ORDER BY created_ms DESC LIMIT {limit}"));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for index in indexes {
            query = query.bind(index);
        }
        for bound in [from_ms, to_ms].into_iter().flatten() {
            query = query.bind(super::writer_ms(bound));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let r = facts(row)?;
                Ok(ConversationSummary {
                    id: r.id,
                    channel: r.channel,
                    lang: r.lang,
                    groups: r.groups,
                    agents: r.agents,
                    created_ms: r.created_ms,
                    closed_ms: r.closed_ms,
                    end_reason: r.end_reason,
                    survey_score: r.survey_score,
                    complaint_level: r.complaint_level,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Every conversation of a visitor, decrypted (data export on request).
    pub async fn export_visitor(
        &self,
        visitor: &str,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let indexes = self.keys.blind_indexes(visitor);
        let sql = format!(
            "SELECT * FROM kefu_conversations WHERE visitor_idx IN ({}) ORDER BY created_ms",
            placeholders(1, indexes.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for index in indexes {
            query = query.bind(index);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows = rows.iter().map(sealed).collect::<Result<Vec<_>, _>>()?;
        self.open_sealed(rows).await
    }

    /// Deletes every conversation (and complaint) of a visitor; returns how many conversations.
    pub async fn delete_visitor(&self, visitor: &str) -> Result<u64, StoreError> {
        let indexes = self.keys.blind_indexes(visitor);
        let marks = placeholders(1, indexes.len());
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "DELETE FROM kefu_complaints WHERE session_id IN
             (SELECT id FROM kefu_conversations WHERE visitor_idx IN ({marks}))"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for index in &indexes {
            query = query.bind(index.clone());
        }
        query.execute(&mut *tx).await?;
        // Their photos and files go with them.
        let of_visitor =
            format!("SELECT id FROM kefu_conversations WHERE visitor_idx IN ({marks})");
        for head in [
            super::attachments::DELETE_CHUNKS_OF,
            super::attachments::DELETE_ROWS_OF,
        ] {
            let close = if head.contains("chunks") { "))" } else { ")" };
            let sql = format!("{head}{of_visitor}{close}");
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for index in &indexes {
                query = query.bind(index.clone());
            }
            query.execute(&mut *tx).await?;
        }
        let sql = format!("DELETE FROM kefu_conversations WHERE visitor_idx IN ({marks})");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for index in &indexes {
            query = query.bind(index.clone());
        }
        let deleted = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes conversations created before `cutoff_ms` (retention); returns how many.
    pub async fn purge_older_than(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let cutoff = super::writer_ms(cutoff_ms);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM kefu_complaints WHERE session_id IN
             (SELECT id FROM kefu_conversations WHERE created_ms < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        // Attachments follow the rule of their conversation; those of no stored conversation
        // (it never ended, or was deleted) go by their own age.
        let old = "SELECT id FROM kefu_conversations WHERE created_ms < $1
                   UNION SELECT session FROM kefu_attachments WHERE created_ms < $1
                   AND session NOT IN (SELECT id FROM kefu_conversations)";
        for head in [
            super::attachments::DELETE_CHUNKS_OF,
            super::attachments::DELETE_ROWS_OF,
        ] {
            let close = if head.contains("chunks") { "))" } else { ")" };
            sqlx::query(AssertSqlSafe(format!("{head}{old}{close}")))
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM kefu_conversations WHERE created_ms < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// The facts (no text) of conversations created within `[from_ms, to_ms)`.
    pub async fn facts(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let sql = format!(
            "SELECT {FACT_COLUMNS} FROM kefu_conversations WHERE created_ms >= $1 AND created_ms < $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(super::writer_ms(from_ms))
            .bind(super::writer_ms(to_ms))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(facts)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Complaints opened within `[from_ms, to_ms)`.
    pub async fn complaints(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<ComplaintRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM kefu_complaints WHERE created_ms >= $1 AND created_ms < $2
             ORDER BY created_ms",
        )
        .bind(super::writer_ms(from_ms))
        .bind(super::writer_ms(to_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ComplaintRecord {
                    id: row.try_get("id")?,
                    session: row.try_get("session_id")?,
                    level: small(row.try_get("level")?),
                    status: row.try_get("status")?,
                    handler: row.try_get("handler")?,
                    category: row.try_get("category")?,
                    created_ms: u(row.try_get("created_ms")?),
                    resolved_ms: opt(row, "resolved_ms")?,
                    satisfaction: row.try_get::<Option<i64>, _>("satisfaction")?.map(small),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Appends to the audit log (written at once, before the read it records is answered).
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kefu_audit (id, at_ms, operator, action, target, peer, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(super::writer_ms(entry.at_ms))
        .bind(entry.operator.clone())
        .bind(entry.action.clone())
        .bind(entry.target.clone())
        .bind(entry.peer.clone())
        .bind(entry.detail.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit entries, newest first, optionally of one operator and/or from a time on.
    pub async fn audit_log(
        &self,
        operator: Option<&str>,
        from_ms: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from("SELECT * FROM kefu_audit WHERE 1 = 1");
        let mut n = 1;
        if operator.is_some() {
            sql.push_str(&format!(" AND operator = ${n}"));
            n += 1;
        }
        if from_ms.is_some() {
            sql.push_str(&format!(" AND at_ms >= ${n}"));
        }
        sql.push_str(&format!(" ORDER BY at_ms DESC LIMIT {limit}"));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(operator) = operator {
            query = query.bind(operator.to_string());
        }
        if let Some(from) = from_ms {
            query = query.bind(super::writer_ms(from));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at_ms: u(row.try_get("at_ms")?),
                    operator: row.try_get("operator")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    peer: row.try_get("peer")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
