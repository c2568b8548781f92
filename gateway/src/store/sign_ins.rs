//! The sign-in history behind the `new_sign_in` alerts: per account, the keyed hashes of the
//! addresses and user agents it signed in from and when last ([`crate::signin::history`]).

use sqlx::Row;

use super::{writer_ms, Store, StoreError};

impl Store {
    /// `(kind, digest)` of every address and user agent `account` used since `since_ms`.
    pub async fn sign_ins_since(
        &self,
        account: &str,
        since_ms: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, digest FROM kefu_sign_ins WHERE account = $1 AND last_ms >= $2",
        )
        .bind(account.to_string())
        .bind(writer_ms(since_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("kind")?, row.try_get("digest")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records that `account` signed in with `(kind, digest)` at `at_ms`.
    pub async fn touch_sign_in(
        &self,
        account: &str,
        kind: &str,
        digest: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kefu_sign_ins (account, kind, digest, last_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account, kind, digest) DO UPDATE SET last_ms = excluded.last_ms",
        )
        .bind(account.to_string())
        .bind(kind.to_string())
        .bind(digest.to_string())
        .bind(writer_ms(at_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes history last used before `cutoff_ms`; returns how many rows went.
    pub async fn prune_sign_ins(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM kefu_sign_ins WHERE last_ms < $1")
            .bind(writer_ms(cutoff_ms))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
