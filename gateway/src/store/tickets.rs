//! Messages left when nobody was there (issue #17): one row per ticket in `kefu_tickets`, the
//! text, contact and reply encrypted. Status moves `open` → `claimed` → `answered` →
//! `delivered`, each step one conditional `UPDATE` (so of two agents claiming at once exactly
//! one changes the row, on SQLite and PostgreSQL alike, whichever node each is on).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::crypto::Aad;
use super::{writer_ms, Store, StoreError};
use crate::session::now_ms;

/// Created if missing (see [`super::schema::migrate`]).
pub(super) const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kefu_tickets (
        id TEXT PRIMARY KEY,
        customer_idx TEXT,
        session_id TEXT NOT NULL,
        grp TEXT NOT NULL,
        text_enc TEXT NOT NULL,
        contact_enc TEXT,
        status TEXT NOT NULL,
        agent TEXT,
        reply_enc TEXT,
        created_ms BIGINT NOT NULL,
        claimed_ms BIGINT,
        answered_ms BIGINT,
        delivered_ms BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS kefu_tickets_group ON kefu_tickets (grp, status)",
    "CREATE INDEX IF NOT EXISTS kefu_tickets_customer ON kefu_tickets (customer_idx, status)",
];

/// Answered later than this after it was left, a ticket is flagged on the supervisor view.
pub const LATE_MS: u64 = 24 * 3600 * 1000;

/// A message being left.
pub struct NewTicket {
    pub id: String,
    /// Keyed hash of the identified customer (none: an anonymous visitor; only its contact
    /// or the live session can get the reply).
    pub customer: Option<String>,
    pub session: String,
    pub group: String,
    pub text: String,
    pub contact: Option<String>,
}

/// A ticket as read back, decrypted (mask before showing it to an agent).
#[derive(Debug, Clone, Serialize)]
pub struct TicketRow {
    pub id: String,
    #[serde(skip)]
    pub customer: Option<String>,
    pub session: String,
    pub group: String,
    pub text: String,
    pub contact: Option<String>,
    pub status: String,
    pub agent: Option<String>,
    pub reply: Option<String>,
    pub created_ms: u64,
    pub claimed_ms: Option<u64>,
    pub answered_ms: Option<u64>,
    pub delivered_ms: Option<u64>,
    /// Answered (or still unanswered) more than 24 hours after it was left.
    pub late: bool,
}

fn aad<'a>(id: &'a str, field: &'a str) -> Aad<'a> {
    Aad {
        table: "kefu_tickets",
        row: id,
        field,
    }
}

fn u(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

/// A row with its fields still sealed.
struct Sealed {
    row: TicketRow,
    text: String,
    contact: Option<String>,
    reply: Option<String>,
}

fn sealed(r: &AnyRow) -> Result<Sealed, sqlx::Error> {
    let created_ms = u(Some(r.try_get("created_ms")?)).unwrap_or(0);
    let answered_ms = u(r.try_get("answered_ms")?);
    let late = answered_ms
        .unwrap_or_else(now_ms)
        .saturating_sub(created_ms)
        > LATE_MS;
    Ok(Sealed {
        row: TicketRow {
            id: r.try_get("id")?,
            customer: r.try_get("customer_idx")?,
            session: r.try_get("session_id")?,
            group: r.try_get("grp")?,
            text: String::new(),
            contact: None,
            status: r.try_get("status")?,
            agent: r.try_get("agent")?,
            reply: None,
            created_ms,
            claimed_ms: u(r.try_get("claimed_ms")?),
            answered_ms,
            delivered_ms: u(r.try_get("delivered_ms")?),
            late,
        },
        text: r.try_get("text_enc")?,
        contact: r.try_get("contact_enc")?,
        reply: r.try_get("reply_enc")?,
    })
}

impl Store {
    /// Stores a left message as an `open` ticket.
    pub async fn create_ticket(&self, t: NewTicket) -> Result<(), StoreError> {
        let keys = self.keys.clone();
        let (id, text, contact) = (t.id.clone(), t.text, t.contact);
        let (text_enc, contact_enc) = tokio::task::spawn_blocking(move || {
            let text = keys.encrypt_field(&text, aad(&id, "text_enc"))?;
            let contact = contact
                .map(|c| keys.encrypt_field(&c, aad(&id, "contact_enc")))
                .transpose()?;
            Ok::<_, StoreError>((text, contact))
        })
        .await
        .map_err(|_| StoreError::PoolClosed)??;
        sqlx::query(
            "INSERT INTO kefu_tickets (id, customer_idx, session_id, grp, text_enc, contact_enc,
             status, created_ms) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)",
        )
        .bind(t.id)
        .bind(t.customer)
        .bind(t.session)
        .bind(t.group)
        .bind(text_enc)
        .bind(contact_enc)
        .bind(writer_ms(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Tickets with `status` (any when `None`), of `group` (any when `None`), oldest first.
    pub async fn tickets(
        &self,
        group: Option<&str>,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TicketRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM kefu_tickets WHERE ($1 = '' OR grp = $1) AND ($2 = '' OR status = $2)
             ORDER BY created_ms LIMIT {}",
            limit.clamp(1, 500)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(group.unwrap_or("").to_string())
            .bind(status.unwrap_or("").to_string())
            .fetch_all(&self.pool)
            .await?;
        self.open_tickets(rows.iter().map(sealed).collect::<Result<_, _>>()?)
            .await
    }

    /// One ticket, decrypted.
    pub async fn ticket(&self, id: &str) -> Result<Option<TicketRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM kefu_tickets WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(self.open_tickets(vec![sealed(&row)?]).await?.pop())
    }

    /// `open` → `claimed` by `agent`; false when someone else got there first (or it is not
    /// open). One conditional update: of racing claims exactly one wins.
    pub async fn claim_ticket(&self, id: &str, agent: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE kefu_tickets SET status = 'claimed', agent = $2, claimed_ms = $3
             WHERE id = $1 AND status = 'open'",
        )
        .bind(id.to_string())
        .bind(agent.to_string())
        .bind(writer_ms(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `claimed` by `agent` → `answered` with `reply`; false when not this agent's claim.
    pub async fn answer_ticket(
        &self,
        id: &str,
        agent: &str,
        reply: &str,
    ) -> Result<bool, StoreError> {
        let keys = self.keys.clone();
        let (tid, plain) = (id.to_string(), reply.to_string());
        let sealed =
            tokio::task::spawn_blocking(move || keys.encrypt_field(&plain, aad(&tid, "reply_enc")))
                .await
                .map_err(|_| StoreError::PoolClosed)??;
        let done = sqlx::query(
            "UPDATE kefu_tickets SET status = 'answered', reply_enc = $3, answered_ms = $4
             WHERE id = $1 AND agent = $2 AND status = 'claimed'",
        )
        .bind(id.to_string())
        .bind(agent.to_string())
        .bind(sealed)
        .bind(writer_ms(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Answered tickets of `customer` not yet delivered, oldest first.
    pub async fn replies_for(&self, customer: &str) -> Result<Vec<TicketRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM kefu_tickets WHERE customer_idx = $1 AND status = 'answered'
             ORDER BY answered_ms LIMIT 50",
        )
        .bind(customer.to_string())
        .fetch_all(&self.pool)
        .await?;
        self.open_tickets(rows.iter().map(sealed).collect::<Result<_, _>>()?)
            .await
    }

    /// `answered` → `delivered`; false when it was delivered already (by another node).
    pub async fn mark_delivered(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE kefu_tickets SET status = 'delivered', delivered_ms = $2
             WHERE id = $1 AND status = 'answered'",
        )
        .bind(id.to_string())
        .bind(writer_ms(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Tickets waiting for an answer (open or claimed), and tickets answered — or still
    /// waiting — more than 24 hours after they were left (the supervisor view's flag).
    pub async fn ticket_counts(&self) -> Result<(u64, u64), StoreError> {
        let now = writer_ms(now_ms());
        let late = writer_ms(LATE_MS);
        let row = sqlx::query(
            "SELECT
               SUM(CASE WHEN status IN ('open', 'claimed') THEN 1 ELSE 0 END) AS waiting,
               SUM(CASE WHEN COALESCE(answered_ms, $1) - created_ms > $2 THEN 1 ELSE 0 END) AS late
             FROM kefu_tickets",
        )
        .bind(now)
        .bind(late)
        .fetch_one(&self.pool)
        .await?;
        let count = |c: &str| -> Result<u64, sqlx::Error> {
            Ok(u(row.try_get::<Option<i64>, _>(c)?).unwrap_or(0))
        };
        Ok((count("waiting")?, count("late")?))
    }

    async fn open_tickets(&self, rows: Vec<Sealed>) -> Result<Vec<TicketRow>, StoreError> {
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|s| {
                    let mut row = s.row;
                    let id = row.id.clone();
                    row.text = keys.decrypt_field(&s.text, aad(&id, "text_enc"))?;
                    row.contact = s
                        .contact
                        .map(|c| keys.decrypt_field(&c, aad(&id, "contact_enc")))
                        .transpose()?;
                    row.reply = s
                        .reply
                        .map(|r| keys.decrypt_field(&r, aad(&id, "reply_enc")))
                        .transpose()?;
                    Ok(row)
                })
                .collect()
        })
        .await
        .map_err(|_| StoreError::PoolClosed)?
    }
}
