//! Access tokens: RS256 JWTs naming a user and a session.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::SigningKeys;

/// The issuer written into and required of every token.
pub const ISSUER: &str = "node";

/// Seconds past its `exp` that a token is still accepted (clock skew between nodes).
pub const LEEWAY_SECS: i64 = 5;

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session id; revoking the session revokes the token.
    pub sid: String,
    /// The user's role when the token was issued.
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

#[derive(Debug, thiserror::Error)]
#[error("token rejected: {0}")]
pub struct TokenError(String);

/// Sign claims with the node's key.
pub fn issue(keys: &SigningKeys, claims: &Claims) -> Result<String, TokenError> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(keys.key_id.clone());
    jsonwebtoken::encode(&header, claims, &keys.encoding).map_err(|e| TokenError(e.to_string()))
}

/// Check a token's signature, issuer and expiry.
pub fn verify(keys: &SigningKeys, token: &str) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.leeway = LEEWAY_SECS.unsigned_abs();
    jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| TokenError(e.to_string()))
}
