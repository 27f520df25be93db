//! Login sessions. A token names its session; revoking the session revokes the token.

use std::sync::LazyLock;

use super::users::{User, COLUMNS as USER_COLUMNS};
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

/// The statement of [`with_user`], built once: it runs on every authenticated request. The
/// session's columns are renamed in a derived table, so the users' own (`id`, `created_at`, …)
/// stay unambiguous and `User`'s `FromRow` reads them by name.
static WITH_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {USER_COLUMNS}, s.session_created_at, s.session_expires_at, s.session_revoked_at \
         FROM users, (SELECT user_id AS session_user_id, created_at AS session_created_at, \
             expires_at AS session_expires_at, revoked_at AS session_revoked_at \
             FROM sessions WHERE id = $1) AS s \
         WHERE users.id = s.session_user_id AND users.id = $2"
    )
});

/// A session and its user, read together: what authenticating a request needs, in one round
/// trip rather than two. `None` if the session does not exist or is not `user_id`'s.
#[tracing::instrument(skip(db))]
pub async fn with_user(
    db: &Db,
    id: &str,
    user_id: &str,
) -> Result<Option<(Session, User)>, StoreError> {
    use sqlx::{FromRow, Row};
    Ok(on_db!(db, pool => {
        let row = sqlx::query(&WITH_USER).bind(id).bind(user_id).fetch_optional(pool).await?;
        match row {
            Some(row) => {
                let user = User::from_row(&row)?;
                let session = Session {
                    id: id.to_owned(),
                    user_id: user.id.clone(),
                    created_at: row.try_get("session_created_at")?,
                    expires_at: row.try_get("session_expires_at")?,
                    revoked_at: row.try_get("session_revoked_at")?,
                };
                Some((session, user))
            }
            None => None,
        }
    }))
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
