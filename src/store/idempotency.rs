//! Replies stored with idempotency keys.

use actors::registry::StoredReply;

use super::{Db, StoreError};
use crate::on_db;

/// The stored reply for `key` on one actor, if a command with it committed.
#[tracing::instrument(skip(db))]
pub async fn stored_reply(
    db: &Db,
    kind: &str,
    actor_id: &str,
    key: &str,
) -> Result<Option<StoredReply>, StoreError> {
    let row: Option<(String, Vec<u8>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT fingerprint, reply FROM idempotency WHERE kind = $1 AND actor_id = $2 AND key = $3")
        .bind(kind)
        .bind(actor_id)
        .bind(key)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(|(fingerprint, reply)| StoredReply { fingerprint, reply }))
}
