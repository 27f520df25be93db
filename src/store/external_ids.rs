//! External login ids (`facebook:<id>`, `qr:<code>`) linked to users.

use super::{now_ms, Db, StoreError};
use crate::on_db;

/// Link an external id to a user. A taken id is a unique violation.
pub async fn link(db: &Db, external_id: &str, user_id: &str) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query("INSERT INTO user_external_ids (external_id, user_id, created_at) VALUES ($1, $2, $3)")
            .bind(external_id)
            .bind(user_id)
            .bind(now_ms())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The user an external id belongs to.
pub async fn user_of(db: &Db, external_id: &str) -> Result<Option<String>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_scalar(
        "SELECT user_id FROM user_external_ids WHERE external_id = $1")
        .bind(external_id)
        .fetch_optional(pool)
        .await?))
}

/// A user's external ids, Facebook first, then QR cards, oldest first.
pub async fn of_user(db: &Db, user_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_scalar(
        "SELECT external_id FROM user_external_ids WHERE user_id = $1 \
         ORDER BY CASE WHEN external_id LIKE 'facebook:%' THEN 0 ELSE 1 END, created_at")
        .bind(user_id)
        .fetch_all(pool)
        .await?))
}

/// A stored answer for a repeated request id: (fingerprint, body).
pub async fn stored_answer(
    db: &Db,
    scope: &str,
    request_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as(
        "SELECT fingerprint, body FROM evergreen_replies WHERE scope = $1 AND request_id = $2")
        .bind(scope)
        .bind(request_id)
        .fetch_optional(pool)
        .await?))
}

/// Store an answer for a request id; `false` if one was stored first (a concurrent duplicate).
pub async fn store_answer(
    db: &Db,
    scope: &str,
    request_id: &str,
    fingerprint: &str,
    body: &str,
) -> Result<bool, StoreError> {
    let stored = on_db!(db, pool => sqlx::query(
        "INSERT INTO evergreen_replies (scope, request_id, fingerprint, body, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, request_id) DO NOTHING")
        .bind(scope)
        .bind(request_id)
        .bind(fingerprint)
        .bind(body)
        .bind(now_ms())
        .execute(pool)
        .await?
        .rows_affected());
    Ok(stored > 0)
}

/// Forget an in-progress claim whose call failed, so that a retry can run.
pub async fn release_answer(db: &Db, scope: &str, request_id: &str) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query("DELETE FROM evergreen_replies WHERE scope = $1 AND request_id = $2 AND body = ''")
            .bind(scope)
            .bind(request_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Fill in the answer of a claimed request id.
pub async fn complete_answer(
    db: &Db,
    scope: &str,
    request_id: &str,
    body: &str,
) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query("UPDATE evergreen_replies SET body = $3 WHERE scope = $1 AND request_id = $2")
            .bind(scope)
            .bind(request_id)
            .bind(body)
            .execute(pool)
            .await?;
    });
    Ok(())
}
