//! The user table: one identity shared by every API.

use serde::{Deserialize, Serialize};

use super::{now_ms, Db, StoreError};
use crate::on_db;

/// A user's role. Stored and shown as the marketplace spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Role {
    #[serde(rename = "superAdmin")]
    SuperAdmin,
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "user")]
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "superAdmin",
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "superAdmin" => Some(Role::SuperAdmin),
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    /// Admins and the superadmin.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::SuperAdmin | Role::Admin)
    }
}

/// A stored user. The password hash stays in the store layer: it has no place in this type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub fullname: String,
    pub avatar: Option<String>,
    pub role_id: String,
    pub email_verified: bool,
    pub preferred_language: Option<String>,
    pub bio: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub owner_id: Option<String>,
}

impl User {
    pub fn role(&self) -> Role {
        Role::parse(&self.role_id).unwrap_or(Role::User)
    }
}

/// What a new user is made of.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: Option<String>,
    pub fullname: String,
    pub avatar: Option<String>,
    pub role: Role,
    pub preferred_language: Option<String>,
    pub bio: Option<String>,
}

pub(super) const COLUMNS: &str =
    "id, email, fullname, avatar, role_id, email_verified, preferred_language, \
                       bio, is_active, record_version, created_at, updated_at, owner_id";

/// Insert a user. A taken email (case-insensitive) is a unique violation.
#[tracing::instrument(skip_all)]
pub async fn insert(db: &Db, new: NewUser) -> Result<User, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let sql = format!(
        "INSERT INTO users (id, email, email_lower, password_hash, fullname, avatar, role_id, \
         email_verified, preferred_language, bio, is_active, record_version, created_at, \
         updated_at, owner_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $9, TRUE, 1, $10, $10, $1) \
         RETURNING {COLUMNS}"
    );
    let user = on_db!(db, pool => sqlx::query_as::<_, User>(&sql)
        .bind(&id)
        .bind(&new.email)
        .bind(new.email.to_lowercase())
        .bind(&new.password_hash)
        .bind(&new.fullname)
        .bind(&new.avatar)
        .bind(new.role.as_str())
        .bind(&new.preferred_language)
        .bind(&new.bio)
        .bind(now)
        .fetch_one(pool)
        .await?);
    Ok(user)
}

/// A user by id.
#[tracing::instrument(skip(db))]
pub async fn by_id(db: &Db, id: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(pool).await?))
}

/// A user and their password hash by email (case-insensitive), for login.
#[tracing::instrument(skip_all)]
pub async fn credentials_by_email(
    db: &Db,
    email: &str,
) -> Result<Option<(User, Option<String>)>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, password_hash FROM users WHERE email_lower = $1");
    let lower = email.to_lowercase();
    let found = on_db!(db, pool => {
        let row = sqlx::query(&sql).bind(&lower).fetch_optional(pool).await?;
        match row {
            Some(row) => {
                use sqlx::{FromRow, Row};
                let user = User::from_row(&row)?;
                let hash: Option<String> = row.try_get("password_hash")?;
                Some((user, hash))
            }
            None => None,
        }
    });
    Ok(found)
}

/// True when an account with this email exists (case-insensitive).
pub async fn email_exists(db: &Db, email: &str) -> Result<bool, StoreError> {
    let lower = email.to_lowercase();
    let count: i64 = on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE email_lower = $1")
        .bind(&lower)
        .fetch_one(pool)
        .await?);
    Ok(count > 0)
}
