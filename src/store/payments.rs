//! Payment customers, methods, reservation payments, payment records and disputes.
//! (Interim: the two writes the payment flow needs; the full module is being written.)

use super::{Db, StoreError};
use crate::on_db;

/// Record the gateway customer of a user, once per gateway.
pub async fn ensure_customer(
    db: &Db,
    user_id: &str,
    platform: &str,
    customer_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO payment_customers (id, user_id, customer_id, platform, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, platform) DO NOTHING")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(user_id)
            .bind(customer_id)
            .bind(platform)
            .bind(now_ms)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Record (or refresh) a payment method of a user.
pub async fn save_method(
    db: &Db,
    user_id: &str,
    platform: &str,
    customer_id: &str,
    payment_method_id: &str,
    card_info: &serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO payment_methods (id, user_id, payment_method_id, customer_id, platform, \
             card_info, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (user_id, platform, payment_method_id) DO UPDATE SET card_info = $6, \
             customer_id = $4, updated_at = $7, is_active = TRUE")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(user_id)
            .bind(payment_method_id)
            .bind(customer_id)
            .bind(platform)
            .bind(card_info.to_string())
            .bind(now_ms)
            .execute(pool)
            .await?;
    });
    Ok(())
}
