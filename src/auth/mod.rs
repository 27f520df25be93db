//! Identity: passwords, tokens, sessions, and finding the token on a request.

pub mod keys;
pub mod password;
pub mod tokens;

use std::sync::Arc;

use actix_web::HttpRequest;
use secrecy::{ExposeSecret, SecretString};

use crate::store::{self, sessions, users, Db, StoreError};
use keys::SigningKeys;
use password::{HashError, SecretHasher};
use tokens::Claims;

/// The marketplace's name for the access-token header and cookie.
pub const TOKEN_HEADER: &str = "airbnb3-access-token";

/// The longest token accepted anywhere (ours are about 700 bytes).
pub const TOKEN_BYTES_MAX: usize = 4096;

/// Why a caller is not authenticated, or authentication could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no access token")]
    Missing,
    #[error("invalid access token")]
    Invalid,
    #[error("session expired or revoked")]
    SessionEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("token signing: {0}")]
    Signing(String),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: users::User,
    pub session: sessions::Session,
    /// The token the caller presented (echoed in session objects, never logged).
    pub token: String,
}

impl Identity {
    pub fn user_id(&self) -> &str {
        &self.user.id
    }

    pub fn role(&self) -> users::Role {
        self.user.role()
    }
}

/// A new session and its token.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: users::User,
    pub session: sessions::Session,
    pub token: String,
}

/// Issues and checks credentials.
pub struct Auth {
    db: Db,
    pub keys: SigningKeys,
    pub hasher: SecretHasher,
    ttl_secs: u64,
    /// Tokens whose signature was checked, by their SHA-256: checking an RS256 signature was
    /// over half the node's CPU in a profile of REST calls (BENCHMARKS.md section 4), and a
    /// client sends the same token with every request. What a token says cannot change, so
    /// remembering it is safe; whether its session is still live is read on every request.
    verified: quick_cache::sync::Cache<[u8; 32], Arc<Claims>>,
}

/// What a checked token is remembered by: its SHA-256, so that any change to any byte of it is
/// a token never seen.
fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Tokens whose checked claims are remembered, at most (about 250 bytes each).
const VERIFIED_TOKENS_MAX: usize = 16_384;

/// Whether a token verified now is remembered for the next request that presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remember {
    /// REST: a client presents its token again with every request.
    Yes,
    /// A WebSocket: its token is checked once for the connection's life; remembering the
    /// tokens of thousands of sockets would only push out the tokens REST clients reuse.
    No,
}

impl Auth {
    pub fn new(db: Db, keys: SigningKeys, hasher: SecretHasher, ttl_secs: u64) -> Arc<Self> {
        Arc::new(Auth {
            db,
            keys,
            hasher,
            ttl_secs,
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS_MAX),
        })
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Check an email and password; a new session on success, `None` on bad credentials
    /// (unknown email, wrong password, inactive account: the caller cannot tell which).
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Option<Login>, AuthError> {
        let found = users::credentials_by_email(&self.db, email).await?;
        let (user, hash) = match found {
            Some((user, hash)) if user.is_active => (Some(user), hash),
            _ => (None, None),
        };
        if !self.hasher.verify(password, hash).await? {
            return Ok(None);
        }
        match user {
            Some(user) => self.start_session(user).await.map(Some),
            None => Ok(None),
        }
    }

    /// Open a session for a user who has proved who they are.
    pub async fn start_session(&self, user: users::User) -> Result<Login, AuthError> {
        let ttl_ms = i64::try_from(self.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
        let session = sessions::create(&self.db, &user.id, ttl_ms).await?;
        let claims = Claims {
            sub: user.id.clone(),
            sid: session.id.clone(),
            role: user.role_id.clone(),
            iat: session.created_at / 1000,
            exp: session.expires_at / 1000,
            iss: tokens::ISSUER.into(),
        };
        let token =
            tokens::issue(&self.keys, &claims).map_err(|e| AuthError::Signing(e.to_string()))?;
        Ok(Login {
            user,
            session,
            token,
        })
    }

    /// Who a token belongs to: signature, expiry, live session and active user all checked.
    /// The signature of a token seen before (and remembered, see [`Remember`]) is not checked
    /// again; the rest is, every time.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        self.authenticate_with(token, Remember::Yes).await
    }

    /// [`Auth::authenticate`], saying whether to remember the token's signature as checked.
    pub async fn authenticate_with(
        &self,
        token: &str,
        remember: Remember,
    ) -> Result<Identity, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::Invalid);
        }
        let claims = self.claims(token, remember)?;
        let (session, user) = sessions::with_user(&self.db, &claims.sid, &claims.sub)
            .await?
            .filter(|(s, u)| s.is_live(store::now_ms()) && u.is_active)
            .ok_or(AuthError::SessionEnded)?;
        Ok(Identity {
            user,
            session,
            token: token.to_owned(),
        })
    }

    /// A token's claims: signed by this node's key, by this issuer, not expired.
    fn claims(&self, token: &str, remember: Remember) -> Result<Arc<Claims>, AuthError> {
        let digest = token_digest(token);
        let now_secs = store::now_ms() / 1000;
        if let Some(claims) = self.verified.get(&digest) {
            if claims.exp >= now_secs - tokens::LEEWAY_SECS {
                return Ok(claims);
            }
            self.verified.remove(&digest);
            return Err(AuthError::Invalid);
        }
        let claims = Arc::new(tokens::verify(&self.keys, token).map_err(|_| AuthError::Invalid)?);
        if remember == Remember::Yes {
            self.verified.insert(digest, Arc::clone(&claims));
        }
        Ok(claims)
    }

    /// End a session. Harmless if it already ended.
    pub async fn revoke(&self, session_id: &str) -> Result<bool, AuthError> {
        Ok(sessions::revoke(&self.db, session_id).await?)
    }

    /// Create the configured superadmin if no account has that email yet.
    pub async fn bootstrap_admin(
        &self,
        email: Option<&str>,
        password: Option<&SecretString>,
    ) -> Result<(), AuthError> {
        let (Some(email), Some(password)) = (email, password) else {
            return Ok(());
        };
        if users::email_exists(&self.db, email).await? {
            return Ok(());
        }
        let hash = self
            .hasher
            .hash(SecretString::from(password.expose_secret().to_owned()))
            .await?;
        let created = users::insert(
            &self.db,
            users::NewUser {
                email: email.to_owned(),
                password_hash: Some(hash),
                fullname: "Superadmin".into(),
                avatar: None,
                role: users::Role::SuperAdmin,
                preferred_language: None,
                bio: None,
            },
        )
        .await;
        match created {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "created the bootstrap superadmin");
                Ok(())
            }
            // Another node created it at the same moment.
            Err(e) if e.is_unique_violation() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The access token of a request, from the first of the marketplace's four locations that has
/// one: query `access_token`, `Authorization: Bearer`, header `airbnb3-access-token`, cookie
/// `airbnb3-access-token`.
pub fn token_from_request(req: &HttpRequest) -> Option<String> {
    let from_query = url_query_param(req.query_string(), "access_token");
    let from_bearer = || {
        req.headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            })
    };
    let from_header = || {
        req.headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    let from_cookie = || req.cookie(TOKEN_HEADER).map(|c| c.value().to_owned());
    from_query
        .or_else(from_bearer)
        .or_else(from_header)
        .or_else(from_cookie)
        .filter(|t| !t.is_empty())
}

fn url_query_param(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A node's `Auth` over a fresh store, with a signing key of its own.
    async fn auth() -> (store::TestStore, tempfile::TempDir, Arc<Auth>) {
        let (store, db) = store::test_db().await;
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_generate(&dir.path().join("key.pem")).unwrap();
        let hasher = SecretHasher::new(1024, 1).unwrap();
        (store, dir, Auth::new(db, keys, hasher, 3600))
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "user".into(),
            sid: "session".into(),
            role: "user".into(),
            iat: exp - 60,
            exp,
            iss: tokens::ISSUER.into(),
        }
    }

    #[tokio::test]
    async fn a_checked_token_is_remembered_until_it_expires() {
        let (_store, _dir, auth) = auth().await;
        let now = store::now_ms() / 1000;

        let live = tokens::issue(&auth.keys, &claims(now + 60)).unwrap();
        assert_eq!(auth.claims(&live, Remember::Yes).unwrap().exp, now + 60);
        assert!(auth.verified.get(&token_digest(&live)).is_some());
        assert_eq!(auth.claims(&live, Remember::Yes).unwrap().exp, now + 60);

        let socket = tokens::issue(&auth.keys, &claims(now + 61)).unwrap();
        assert!(auth.claims(&socket, Remember::No).is_ok());
        assert!(auth.verified.get(&token_digest(&socket)).is_none());

        // Remembered while it was valid, past its `exp` and the leeway now: refused, forgotten.
        let ended = tokens::issue(&auth.keys, &claims(now - tokens::LEEWAY_SECS - 1)).unwrap();
        auth.verified.insert(
            token_digest(&ended),
            Arc::new(claims(now - tokens::LEEWAY_SECS - 1)),
        );
        assert!(matches!(
            auth.claims(&ended, Remember::Yes),
            Err(AuthError::Invalid)
        ));
        assert!(auth.verified.get(&token_digest(&ended)).is_none());
        // Checked afresh, it fails on its own.
        assert!(matches!(
            auth.claims(&ended, Remember::Yes),
            Err(AuthError::Invalid)
        ));
    }
}
