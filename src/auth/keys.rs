//! The RSA key that signs access tokens: generated on first start and kept in a file (mode
//! 0600), or loaded from a configured file. Its public half is published at
//! `/auth-api/publickey` so other services can verify tokens themselves.

use std::path::Path;

use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};

/// Bits of a generated key.
const RSA_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("token key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("token key file {path} is not a PKCS#8 RSA private key in PEM")]
    Format { path: String },
    #[error("RSA: {0}")]
    Rsa(String),
}

/// The signing key and what is derived from it.
pub struct SigningKeys {
    /// Names this key in token headers and at `/publickey`: a digest of the public key.
    pub key_id: String,
    /// The public key, SPKI PEM.
    pub public_pem: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Load the key at `path`, or generate one there if the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        let private = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(io)?;
            RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Format {
                path: shown.clone(),
            })?
        } else {
            let key = RsaPrivateKey::new(&mut rand::thread_rng(), RSA_BITS)
                .map_err(|e| KeyError::Rsa(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Rsa(e.to_string()))?;
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
            }
            write_private(path, pem.as_bytes()).map_err(io)?;
            tracing::info!(path = %shown, "generated a new token signing key");
            key
        };
        Self::from_private(&private)
    }

    fn from_private(private: &RsaPrivateKey) -> Result<Self, KeyError> {
        let rsa = |e: &dyn std::fmt::Display| KeyError::Rsa(e.to_string());
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).map_err(|e| rsa(&e))?;
        let public = private.to_public_key();
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| rsa(&e))?;
        let public_der = public.to_public_key_der().map_err(|e| rsa(&e))?;
        let key_id = hex::encode(&Sha256::digest(public_der.as_bytes())[..8]);
        Ok(SigningKeys {
            key_id,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).map_err(|e| rsa(&e))?,
            decoding: DecodingKey::from_rsa_pem(public_pem.as_bytes()).map_err(|e| rsa(&e))?,
            public_pem,
        })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
