//! Where users were last seen (from Evergreen's `meta` lat/lon).

use super::{now_ms, Db, StoreError};
use crate::on_db;

/// Record a user's position now.
pub async fn record(db: &Db, user_id: &str, lat: f64, lon: f64) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO user_locations (user_id, lat, lon, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET lat = excluded.lat, lon = excluded.lon, \
             seen_at = excluded.seen_at")
            .bind(user_id)
            .bind(lat)
            .bind(lon)
            .bind(now_ms())
            .execute(pool)
            .await?;
    });
    Ok(())
}
