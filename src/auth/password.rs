//! Argon2id hashing for passwords (and, later, PINs and passphrases). Hashing is CPU-heavy,
//! so it runs on the blocking pool, never on an async worker.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters: {0}")]
    Params(String),
    #[error("hashing: {0}")]
    Hash(String),
    #[error("hashing task failed")]
    Join,
}

/// Hashes and verifies secrets with fixed argon2id parameters.
#[derive(Clone)]
pub struct SecretHasher {
    params: Params,
    /// A hash of a random secret, verified against when the user does not exist, so that a
    /// login for an unknown email takes as long as one with a wrong password.
    dummy: String,
}

impl SecretHasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        let dummy_secret = uuid::Uuid::new_v4().to_string();
        let dummy = hash_with(&params, &dummy_secret)?;
        Ok(SecretHasher { params, dummy })
    }

    /// An argon2id PHC string for `secret`.
    pub async fn hash(&self, secret: SecretString) -> Result<String, HashError> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, secret.expose_secret()))
            .await
            .map_err(|_| HashError::Join)?
    }

    /// True when `secret` matches `hash`. With no hash (unknown user, or an account without a
    /// password), verifies against a dummy and answers false, taking the same time.
    pub async fn verify(
        &self,
        secret: SecretString,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let (hash, real) = match hash {
            Some(hash) => (hash, true),
            None => (self.dummy.clone(), false),
        };
        let matched = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| HashError::Hash(e.to_string()))?;
            Ok::<_, HashError>(
                Argon2::default()
                    .verify_password(secret.expose_secret().as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(|_| HashError::Join)??;
        Ok(real && matched)
    }
}

fn hash_with(params: &Params, secret: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::thread_rng());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}
