//! The batch writer: takes records off the bounded queue, encrypts a batch on the blocking
//! pool, and writes it in one transaction (upserts, so a later write of a conversation
//! replaces an earlier one, e.g. the open record written at shutdown).

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::mpsc;

use super::crypto::Aad;
use super::ConversationRecord;
use super::{Command, KeyRing, StoreError};
use crate::session::now_ms;
use crate::telemetry::metric;

/// Attempts at one batch before it is given up (logged and counted, never silent).
const ATTEMPTS: u32 = 5;

pub(super) async fn run(
    pool: AnyPool,
    keys: Arc<KeyRing>,
    mut rx: mpsc::Receiver<Command>,
    batch: usize,
) {
    let mut pending: Vec<ConversationRecord> = Vec::with_capacity(batch);
    while let Some(first) = rx.recv().await {
        let mut flushes = Vec::new();
        // A failed batch is logged and counted where it fails; a flush waiting on it hears too.
        let mut failed: Option<String> = None;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Save(record) => pending.push(*record),
                Command::Flush(done) => flushes.push(done),
            }
            if pending.len() >= batch {
                if let Err(err) = write_with_retry(&pool, &keys, std::mem::take(&mut pending)).await
                {
                    failed = Some(err.to_string());
                }
            }
            next = rx.try_recv().ok();
        }
        if !pending.is_empty() {
            if let Err(err) = write_with_retry(&pool, &keys, std::mem::take(&mut pending)).await {
                failed = Some(err.to_string());
            }
        }
        metrics::gauge!(metric::STORE_QUEUE_DEPTH).set(rx.len() as f64);
        for done in flushes {
            let _ = done.send(match &failed {
                None => Ok(()),
                Some(err) => Err(StoreError::Corrupt(err.clone())),
            });
        }
    }
}

async fn write_with_retry(
    pool: &AnyPool,
    keys: &Arc<KeyRing>,
    records: Vec<ConversationRecord>,
) -> Result<(), StoreError> {
    let count = records.len();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match write_batch(pool, keys, records.clone()).await {
            Ok(()) => {
                metrics::counter!(metric::CONVERSATIONS_STORED_TOTAL).increment(count as u64);
                return Ok(());
            }
            Err(err) => {
                metrics::counter!(metric::STORE_WRITE_ERRORS_TOTAL).increment(1);
                if attempt >= ATTEMPTS {
                    tracing::error!(error = %err, count, "conversations could not be stored; giving up on this batch");
                    return Err(err);
                }
                tracing::warn!(error = %err, count, attempt, "storing conversations failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// One row of `kefu_conversations`, personal data encrypted.
struct Row {
    r: ConversationRecord,
    visitor_idx: Option<String>,
    visitor_enc: Option<String>,
    comment_enc: Option<String>,
    transcript_enc: String,
}

fn seal(keys: &KeyRing, records: Vec<ConversationRecord>) -> Result<Vec<Row>, StoreError> {
    records
        .into_iter()
        .map(|mut r| {
            let transcript = serde_json::to_string(&r.transcript)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            r.transcript = Vec::new();
            let id = r.id.clone();
            let seal = |plain: &str, field| keys.encrypt_field(plain, conversation_aad(&id, field));
            Ok(Row {
                visitor_idx: r.visitor.as_deref().map(|v| keys.blind_index(v)),
                visitor_enc: r
                    .visitor
                    .take()
                    .map(|v| seal(&v, "visitor_enc"))
                    .transpose()?,
                comment_enc: r
                    .survey_comment
                    .take()
                    .map(|c| seal(&c, "survey_comment_enc"))
                    .transpose()?,
                transcript_enc: seal(&transcript, "transcript_enc")?,
                r,
            })
        })
        .collect()
}

/// The associated data of field `field` of conversation `id`.
pub(super) fn conversation_aad<'a>(id: &'a str, field: &'a str) -> Aad<'a> {
    Aad {
        table: "kefu_conversations",
        row: id,
        field,
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const UPSERT_CONVERSATION: &str = "INSERT INTO kefu_conversations (id, visitor_idx, visitor_enc,
    channel, lang, groups_list, agents_list, category, created_ms, handoff_ms, assigned_ms,
    first_response_ms, closed_ms, end_reason, survey_score, survey_comment_enc, complaint_level,
    complaint_ms, escalated, transfers, greeting_sla_met, transcript_enc, stored_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23)
    ON CONFLICT (id) DO UPDATE SET visitor_idx = excluded.visitor_idx,
    visitor_enc = excluded.visitor_enc, channel = excluded.channel, lang = excluded.lang,
    groups_list = excluded.groups_list, agents_list = excluded.agents_list,
    category = excluded.category, created_ms = excluded.created_ms,
    handoff_ms = excluded.handoff_ms, assigned_ms = excluded.assigned_ms,
    first_response_ms = excluded.first_response_ms, closed_ms = excluded.closed_ms,
    end_reason = excluded.end_reason, survey_score = excluded.survey_score,
    survey_comment_enc = excluded.survey_comment_enc, complaint_level = excluded.complaint_level,
    complaint_ms = excluded.complaint_ms, escalated = excluded.escalated,
    transfers = excluded.transfers, greeting_sla_met = excluded.greeting_sla_met,
    transcript_enc = excluded.transcript_enc, stored_ms = excluded.stored_ms";

const UPSERT_COMPLAINT: &str = "INSERT INTO kefu_complaints (id, session_id, level, status,
    handler, category, created_ms, resolved_ms, satisfaction)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (id) DO UPDATE SET level = excluded.level, status = excluded.status,
    handler = excluded.handler, category = excluded.category, resolved_ms = excluded.resolved_ms,
    satisfaction = excluded.satisfaction";

/// Encrypts (on the blocking pool) and writes `records` in one transaction.
pub(super) async fn write_batch(
    pool: &AnyPool,
    keys: &Arc<KeyRing>,
    records: Vec<ConversationRecord>,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let ring = keys.clone();
    let rows = tokio::task::spawn_blocking(move || seal(&ring, records))
        .await
        .map_err(|_| StoreError::PoolClosed)??;
    let stored = ms(now_ms());
    let mut tx = pool.begin().await?;
    for row in &rows {
        let r = &row.r;
        sqlx::query(UPSERT_CONVERSATION)
            .bind(r.id.clone())
            .bind(row.visitor_idx.clone())
            .bind(row.visitor_enc.clone())
            .bind(r.channel.clone())
            .bind(r.lang.clone())
            .bind(r.groups.join(","))
            .bind(r.agents.join(","))
            .bind(r.category.clone())
            .bind(ms(r.created_ms))
            .bind(r.handoff_ms.map(ms))
            .bind(r.assigned_ms.map(ms))
            .bind(r.first_response_ms.map(ms))
            .bind(r.closed_ms.map(ms))
            .bind(r.end_reason.clone())
            .bind(r.survey_score.map(i64::from))
            .bind(row.comment_enc.clone())
            .bind(i64::from(r.complaint_level))
            .bind(r.complaint_ms.map(ms))
            .bind(i64::from(r.escalated))
            .bind(i64::from(r.transfers))
            .bind(r.greeting_sla_met.map(i64::from))
            .bind(row.transcript_enc.clone())
            .bind(stored)
            .execute(&mut *tx)
            .await?;
        if r.complaint_level > 0 {
            // Resolved once the chat ended without a dissatisfied last answer.
            let resolved = r.closed_ms.is_some() && r.survey_score.is_none_or(|s| s <= 3);
            sqlx::query(UPSERT_COMPLAINT)
                .bind(r.id.clone())
                .bind(r.id.clone())
                .bind(i64::from(r.complaint_level))
                .bind(if resolved { "resolved" } else { "open" })
                .bind(r.agents.last().cloned())
                .bind(r.category.clone().unwrap_or_else(|| "general".into()))
                .bind(ms(r.complaint_ms.unwrap_or(r.created_ms)))
                .bind(if resolved { r.closed_ms.map(ms) } else { None })
                .bind(r.survey_score.map(i64::from))
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
