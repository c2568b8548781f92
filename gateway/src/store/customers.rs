//! Identified customers' conversations (issue #17): `kefu_customer_sessions` links a
//! conversation to the keyed hash of its customer (indexed, so the last conversations of a
//! customer are one index range), with the vouched-for personal fields encrypted. The link is
//! written when the chat is identified, before its record exists, so any node can tell whose
//! chat a session is; the conversations themselves stay in `kefu_conversations`.

use sqlx::Row;

use super::crypto::Aad;
use super::ConversationRecord;
use super::{writer_ms, Store, StoreError};
use crate::identity::Identity;

/// Created if missing (see [`super::schema::migrate`]).
pub(super) const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kefu_customer_sessions (
        session_id TEXT PRIMARY KEY,
        customer_idx TEXT NOT NULL,
        profile_enc TEXT,
        created_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS kefu_customer_sessions_customer
        ON kefu_customer_sessions (customer_idx, created_ms)",
];

fn profile_aad(session: &str) -> Aad<'_> {
    Aad {
        table: "kefu_customer_sessions",
        row: session,
        field: "profile_enc",
    }
}

impl Store {
    /// Links `session` to its customer (once; a second call changes nothing).
    pub async fn link_customer(
        &self,
        session: &str,
        identity: &Identity,
        created_ms: u64,
    ) -> Result<(), StoreError> {
        let profile = serde_json::json!({
            "name": identity.name, "tier": identity.tier, "phone": identity.phone,
            "shop_id": identity.shop_id,
        })
        .to_string();
        let keys = self.keys.clone();
        let id = session.to_string();
        let sealed =
            tokio::task::spawn_blocking(move || keys.encrypt_field(&profile, profile_aad(&id)))
                .await
                .map_err(|_| StoreError::PoolClosed)??;
        sqlx::query(
            "INSERT INTO kefu_customer_sessions (session_id, customer_idx, profile_enc, created_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session.to_string())
        .bind(identity.customer.clone())
        .bind(sealed)
        .bind(writer_ms(created_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The customer hash of `session`, if it was an identified chat.
    pub async fn customer_of(&self, session: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT customer_idx FROM kefu_customer_sessions WHERE session_id = $1")
                .bind(session.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("customer_idx")).transpose()?)
    }

    /// The shop's id of `session`'s customer (from the sealed link), if it was an identified
    /// chat: how a node that does not hold the session asks the shop about the customer.
    pub async fn shop_id_of(&self, session: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .customer_link(session)
            .await?
            .and_then(|(_, shop)| shop))
    }

    /// The customer hash of `session` and the shop's id from its sealed profile, in one read.
    pub async fn customer_link(
        &self,
        session: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT customer_idx, profile_enc FROM kefu_customer_sessions WHERE session_id = $1",
        )
        .bind(session.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let customer: String = row.try_get("customer_idx")?;
        let Some(sealed) = row.try_get::<Option<String>, _>("profile_enc")? else {
            return Ok(Some((customer, None)));
        };
        let keys = self.keys.clone();
        let id = session.to_string();
        let profile =
            tokio::task::spawn_blocking(move || keys.decrypt_field(&sealed, profile_aad(&id)))
                .await
                .map_err(|_| StoreError::PoolClosed)??;
        let profile: serde_json::Value = serde_json::from_str(&profile).unwrap_or_default();
        let shop_id = profile["shop_id"].as_str().map(str::to_string);
        Ok(Some((customer, shop_id)))
    }

    /// The customer's stored conversations other than `except`, newest first, decrypted
    /// (`skip` of them skipped, at most `limit`).
    pub async fn customer_conversations(
        &self,
        customer: &str,
        except: &str,
        skip: u32,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let sql = format!(
            "SELECT c.* FROM kefu_conversations c
             JOIN kefu_customer_sessions k ON k.session_id = c.id
             WHERE k.customer_idx = $1 AND c.id <> $2
             ORDER BY c.created_ms DESC LIMIT {} OFFSET {}",
            limit.min(100),
            skip
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer.to_string())
            .bind(except.to_string())
            .fetch_all(&self.pool)
            .await?;
        let rows = rows
            .iter()
            .map(super::queries::sealed)
            .collect::<Result<Vec<_>, _>>()?;
        self.open_sealed(rows).await
    }
}
