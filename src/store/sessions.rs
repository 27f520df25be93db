//! Login sessions. A token names its session; revoking the session revokes the token.

use super::{now_ms, Db, StoreError};
use crate::on_db;

/// A stored session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl Session {
    /// Not revoked and not expired at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now_ms
    }
}

#[tracing::instrument(skip(db))]
pub async fn create(db: &Db, user_id: &str, ttl_ms: i64) -> Result<Session, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let session = on_db!(db, pool => sqlx::query_as::<_, Session>(
        "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, user_id, created_at, expires_at, revoked_at")
        .bind(&id)
        .bind(user_id)
        .bind(now)
        .bind(now + ttl_ms)
        .fetch_one(pool)
        .await?);
    Ok(session)
}

#[tracing::instrument(skip(db))]
pub async fn by_id(db: &Db, id: &str) -> Result<Option<Session>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as::<_, Session>(
        "SELECT id, user_id, created_at, expires_at, revoked_at FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// Revoke a session. Revoking twice is harmless. Returns true if it was live.
#[tracing::instrument(skip(db))]
pub async fn revoke(db: &Db, id: &str) -> Result<bool, StoreError> {
    let done = on_db!(db, pool => sqlx::query(
        "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now_ms())
        .execute(pool)
        .await?
        .rows_affected());
    Ok(done > 0)
}
