//! The knowledge base's tables: the questions the bot missed (`kefu_kb_misses`, text masked
//! and encrypted), the versioned edits that overlay the KB files (`kefu_kb_edits`, one row per
//! version, with the entry before and after), and per-entry answer figures per day
//! (`kefu_kb_stats`, summed by upserts so every node adds to the same rows).

use serde::{Deserialize, Serialize};
// The only dynamic SQL here joins constants; every value is bound, so `AssertSqlSafe` holds.
use sqlx::{AssertSqlSafe, Row};

use super::crypto::Aad;
use super::{writer_ms, Store, StoreError};

/// Creates the tables if missing (called from [`super::schema::migrate`]).
pub(super) const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kefu_kb_misses (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        lang TEXT NOT NULL,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        text_enc TEXT NOT NULL,
        nearest TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS kefu_kb_misses_at ON kefu_kb_misses (at_ms)",
    "CREATE TABLE IF NOT EXISTS kefu_kb_edits (
        version BIGINT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        before_json TEXT,
        after_json TEXT
    )",
    "CREATE TABLE IF NOT EXISTS kefu_kb_stats (
        day TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        answered BIGINT NOT NULL,
        suggested BIGINT NOT NULL,
        picked BIGINT NOT NULL,
        helpful_yes BIGINT NOT NULL,
        helpful_no BIGINT NOT NULL,
        handoffs_after BIGINT NOT NULL,
        PRIMARY KEY (day, entry_id)
    )",
];

/// A question the bot did not answer, as stored (its text already masked).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MissRow {
    pub id: String,
    pub at_ms: u64,
    pub lang: String,
    pub channel: String,
    /// Why it counts as a miss: `low_confidence`, `suggestion_not_picked`, `not_helpful`,
    /// `handoff_after_answer`.
    pub kind: String,
    /// Masked before it gets here; encrypted at rest.
    pub text: String,
    /// JSON: the nearest entries with their scores.
    pub nearest: String,
}

/// One version of the KB overlay: who changed which entry, and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EditRow {
    pub version: u64,
    pub at_ms: u64,
    pub operator: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    pub entry_id: String,
    pub before: Option<faq_index::Entry>,
    pub after: Option<faq_index::Entry>,
}

/// Per-entry figures of one day (`YYYY-MM-DD`, UTC).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsRow {
    pub day: String,
    pub entry_id: String,
    pub answered: u64,
    pub suggested: u64,
    pub picked: u64,
    pub helpful_yes: u64,
    pub helpful_no: u64,
    pub handoffs_after: u64,
}

fn aad(id: &str) -> Aad<'_> {
    Aad {
        table: "kefu_kb_misses",
        row: id,
        field: "text_enc",
    }
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn entry_json(entry: &Option<faq_index::Entry>) -> Result<Option<String>, StoreError> {
    entry
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn entry_of(json: Option<String>) -> Result<Option<faq_index::Entry>, StoreError> {
    json.map(|j| serde_json::from_str(&j))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("kb edit: {e}")))
}

const EDIT_COLUMNS: &str = "SELECT version, at_ms, operator, action, entry_id, before_json,
    after_json FROM kefu_kb_edits";

fn edit_of(r: &sqlx::any::AnyRow) -> Result<EditRow, StoreError> {
    Ok(EditRow {
        version: u(r.try_get("version")?),
        at_ms: u(r.try_get("at_ms")?),
        operator: r.try_get("operator")?,
        action: r.try_get("action")?,
        entry_id: r.try_get("entry_id")?,
        before: entry_of(r.try_get("before_json")?)?,
        after: entry_of(r.try_get("after_json")?)?,
    })
}

/// Attempts at taking the next version when another node takes it at the same moment.
const VERSION_ATTEMPTS: u32 = 5;

impl Store {
    /// Writes missed questions in one transaction, their text encrypted on the blocking pool.
    pub async fn write_misses(&self, misses: Vec<MissRow>) -> Result<(), StoreError> {
        if misses.is_empty() {
            return Ok(());
        }
        let keys = self.keys.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            misses
                .into_iter()
                .map(|m| {
                    let enc = keys.encrypt_field(&m.text, aad(&m.id))?;
                    Ok((m, enc))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .map_err(|_| StoreError::PoolClosed)??;
        let mut tx = self.pool.begin().await?;
        for (m, enc) in sealed {
            sqlx::query(
                "INSERT INTO kefu_kb_misses (id, at_ms, lang, channel, kind, text_enc, nearest)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(m.id)
            .bind(writer_ms(m.at_ms))
            .bind(m.lang)
            .bind(m.channel)
            .bind(m.kind)
            .bind(enc)
            .bind(m.nearest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` misses since `since_ms` (of `lang` when given), decrypted, oldest first.
    pub async fn misses_since(
        &self,
        since_ms: u64,
        lang: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MissRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, lang, channel, kind, text_enc, nearest FROM kefu_kb_misses
             WHERE at_ms >= $1 AND ($2 = '' OR lang = $2) ORDER BY at_ms DESC LIMIT $3",
        )
        .bind(writer_ms(since_ms))
        .bind(lang.unwrap_or("").to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let raw = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("id")?,
                    u(r.try_get("at_ms")?),
                    r.try_get::<String, _>("lang")?,
                    r.try_get::<String, _>("channel")?,
                    r.try_get::<String, _>("kind")?,
                    r.try_get::<String, _>("text_enc")?,
                    r.try_get::<String, _>("nearest")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = raw
                .into_iter()
                .map(|(id, at_ms, lang, channel, kind, enc, nearest)| {
                    let text = keys.decrypt_field(&enc, aad(&id))?;
                    Ok(MissRow {
                        id,
                        at_ms,
                        lang,
                        channel,
                        kind,
                        text,
                        nearest,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.reverse();
            Ok(out)
        })
        .await
        .map_err(|_| StoreError::PoolClosed)?
    }

    /// Deletes misses recorded before `cutoff_ms` (retention); returns how many went.
    pub async fn purge_misses_before(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM kefu_kb_misses WHERE at_ms < $1")
            .bind(writer_ms(cutoff_ms))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The newest version of the KB overlay (0: no edit yet). Cheap: polled every second.
    pub async fn kb_version(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM kefu_kb_edits")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?.map(u).unwrap_or(0))
    }

    /// Edits after `version`, oldest first (all of them from 0: the whole overlay).
    pub async fn kb_edits_after(&self, version: u64) -> Result<Vec<EditRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{EDIT_COLUMNS} WHERE version > $1 ORDER BY version"
        )))
        .bind(writer_ms(version))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(edit_of).collect()
    }

    /// Every edit of one entry, oldest first.
    pub async fn kb_history(&self, entry_id: &str) -> Result<Vec<EditRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{EDIT_COLUMNS} WHERE entry_id = $1 ORDER BY version"
        )))
        .bind(entry_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(edit_of).collect()
    }

    /// Appends an edit as the next version and returns it. Two nodes taking the same version
    /// at once: one insert fails on the primary key and is retried with the next.
    pub async fn append_kb_edit(&self, mut edit: EditRow) -> Result<u64, StoreError> {
        let before = entry_json(&edit.before)?;
        let after = entry_json(&edit.after)?;
        let mut attempt = 1;
        loop {
            edit.version = self.kb_version().await? + 1;
            let done = sqlx::query(
                "INSERT INTO kefu_kb_edits (version, at_ms, operator, action, entry_id,
                 before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(writer_ms(edit.version))
            .bind(writer_ms(edit.at_ms))
            .bind(edit.operator.clone())
            .bind(edit.action.clone())
            .bind(edit.entry_id.clone())
            .bind(before.clone())
            .bind(after.clone())
            .execute(&self.pool)
            .await;
            match done {
                Ok(_) => return Ok(edit.version),
                Err(err) if attempt < VERSION_ATTEMPTS => {
                    tracing::debug!(error = %err, attempt, "kb version taken; retrying");
                    attempt += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Adds per-entry figures to their day's rows, in one transaction.
    pub async fn add_kb_stats(&self, rows: Vec<StatsRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = |v: u64| writer_ms(v);
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO kefu_kb_stats (day, entry_id, answered, suggested, picked,
                 helpful_yes, helpful_no, handoffs_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (day, entry_id) DO UPDATE SET
                 answered = kefu_kb_stats.answered + excluded.answered,
                 suggested = kefu_kb_stats.suggested + excluded.suggested,
                 picked = kefu_kb_stats.picked + excluded.picked,
                 helpful_yes = kefu_kb_stats.helpful_yes + excluded.helpful_yes,
                 helpful_no = kefu_kb_stats.helpful_no + excluded.helpful_no,
                 handoffs_after = kefu_kb_stats.handoffs_after + excluded.handoffs_after",
            )
            .bind(r.day)
            .bind(r.entry_id)
            .bind(n(r.answered))
            .bind(n(r.suggested))
            .bind(n(r.picked))
            .bind(n(r.helpful_yes))
            .bind(n(r.helpful_no))
            .bind(n(r.handoffs_after))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Per-entry, per-day figures of the days `from..=to` (`YYYY-MM-DD`).
    pub async fn kb_stats(&self, from: &str, to: &str) -> Result<Vec<StatsRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, entry_id, answered, suggested, picked, helpful_yes, helpful_no,
             handoffs_after FROM kefu_kb_stats WHERE day >= $1 AND day <= $2
             ORDER BY day, entry_id LIMIT 100000",
        )
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StatsRow {
                    day: r.try_get("day")?,
                    entry_id: r.try_get("entry_id")?,
                    answered: u(r.try_get("answered")?),
                    suggested: u(r.try_get("suggested")?),
                    picked: u(r.try_get("picked")?),
                    helpful_yes: u(r.try_get("helpful_yes")?),
                    helpful_no: u(r.try_get("helpful_no")?),
                    handoffs_after: u(r.try_get("handoffs_after")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
