//! The wallet service: the wallet actors' registry and loader, and what every dialect needs to
//! talk to them (PIN checks, idempotency fingerprints). Dialects build commands; this module
//! has no dialect in it.

use std::sync::Arc;

use actors::registry::{ArbiterPool, Loaded, Loader, Registry, RegistrySettings, StoredReply};
use actors::wallet::{Command, PinCheck, PinPolicy, Reply, Wallet};
use actors::{ActorError, DomainEvent, IdempotencyKey, Request, StoredKeys};
use async_trait::async_trait;
use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::password::{HashError, SecretHasher};
use crate::store::idempotency::{self, ReplyLookups};
use crate::store::{journal, ledger, Db, StoreError};

/// Loads wallets from the store.
struct WalletLoader {
    db: Db,
    policy: PinPolicy,
    replies: ReplyLookups,
}

#[async_trait]
impl Loader<Wallet> for WalletLoader {
    async fn load(&self, id: &String) -> Result<Loaded<Wallet>, String> {
        // Raise the epoch first: a batch of an older activation that commits after this point
        // is refused, so nothing can land between the load and this actor's first write.
        let epoch = journal::raise_epoch(&self.db, "wallet", id)
            .await
            .map_err(|e| e.to_string())?;
        let state = ledger::load_wallet(&self.db, id, self.policy)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Loaded { state, epoch })
    }

    async fn stored_reply(
        &self,
        id: &String,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredReply>, String> {
        self.replies.get(id, key.as_str()).await
    }

    async fn stored_keys(&self, id: &String, max: usize) -> Result<StoredKeys, String> {
        idempotency::stored_keys(&self.db, "wallet", id, max)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Why a wallet operation did not get a wallet's answer.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Actor(#[from] ActorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// The wallets of every user.
pub struct Wallets {
    registry: Registry<Wallet, DomainEvent>,
    db: Db,
    hasher: SecretHasher,
}

impl Wallets {
    pub fn new(
        db: Db,
        hasher: SecretHasher,
        pool: ArbiterPool,
        journal: actors::journal::JournalHandle<DomainEvent>,
        settings: RegistrySettings,
        policy: PinPolicy,
    ) -> Arc<Self> {
        let loader = Arc::new(WalletLoader {
            db: db.clone(),
            policy,
            replies: ReplyLookups::start(db.clone(), "wallet"),
        });
        Arc::new(Wallets {
            registry: Registry::new(pool, loader, journal, settings),
            db,
            hasher,
        })
    }

    pub fn registry(&self) -> &Registry<Wallet, DomainEvent> {
        &self.registry
    }

    /// Send a command to a user's wallet and wait for its durable answer.
    pub async fn ask(
        &self,
        user_id: &str,
        command: Command,
        key: Option<(IdempotencyKey, String)>,
    ) -> Result<Reply, ActorError> {
        let request = match key {
            Some((key, fingerprint)) => Request::with_key(command, key, fingerprint),
            None => Request::plain(command),
        };
        self.registry.ask(user_id.to_owned(), request).await
    }

    /// Verify a PIN against the user's stored hash (off the async workers).
    pub async fn check_pin(&self, user_id: &str, pin: &str) -> Result<PinCheck, WalletError> {
        let Some(hash) = ledger::pin_hash(&self.db, user_id).await? else {
            return Ok(PinCheck::NotSet);
        };
        let matched = self
            .hasher
            .verify(SecretString::from(pin.to_owned()), Some(hash))
            .await?;
        Ok(if matched {
            PinCheck::Correct
        } else {
            PinCheck::Wrong
        })
    }

    /// Store a new PIN (hashed).
    pub async fn set_pin(&self, user_id: &str, pin: &str) -> Result<(), WalletError> {
        let hash = self.hasher.hash(SecretString::from(pin.to_owned())).await?;
        ledger::set_pin_hash(&self.db, user_id, &hash).await?;
        Ok(())
    }
}

/// A stable digest of what a request asks for, stored with its idempotency key so that the
/// same key with a different request is refused.
pub fn fingerprint(operation: &str, request: &impl Serialize) -> String {
    let body = serde_json::to_vec(request).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update([0]);
    hasher.update(&body);
    hex::encode(hasher.finalize())
}
