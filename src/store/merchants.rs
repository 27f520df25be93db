//! Evergreen merchant listings.

use super::{Db, StoreError};
use crate::on_db;

/// Whether the user's merchant listing is on.
pub async fn is_merchant(db: &Db, user_id: &str) -> Result<bool, StoreError> {
    let flag: Option<bool> = on_db!(db, pool => sqlx::query_scalar(
        "SELECT is_merchant FROM merchants WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?);
    Ok(flag.unwrap_or(false))
}
