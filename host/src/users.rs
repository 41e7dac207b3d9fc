//! Users and their API keys. A key is shown once, when it is made; the
//! store keeps only its sha256, so a leaked database leaks no key.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::store::{Store, StoreResult, User};

/// The prefix of every user key, so a key is recognisable in a config or a
/// log scanner.
pub const KEY_PREFIX: &str = "sk-scribe-";

/// A fresh random API key (256 bits).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a user with a new key; returns the user and the key (the only
/// time the key is available).
pub async fn add(store: &dyn Store, name: &str, now_ms: i64) -> StoreResult<(User, String)> {
    let key = generate_key();
    let user = store.create_user(name, &hash_key(&key), now_ms).await?;
    Ok((user, key))
}

/// The most keys [`Authenticator`] remembers.
pub const KNOWN_KEYS_MAX: u64 = 100_000;

/// Finds the user a bearer key belongs to, remembering the keys it found.
///
/// A key is never changed or removed once made, so a user found by a key
/// stays the right answer, and every request after a key's first costs no
/// store read. Unknown keys are not remembered: a key made a moment ago by
/// `scribe users add` (another process) is found at its first use.
pub struct Authenticator {
    store: Arc<dyn Store>,
    known: moka::sync::Cache<String, User>,
}

impl Authenticator {
    /// Finds users in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, known: moka::sync::Cache::new(KNOWN_KEYS_MAX) }
    }

    /// The user `key` belongs to, if any.
    pub async fn user_for_key(&self, key: &str) -> StoreResult<Option<User>> {
        let hash = hash_key(key);
        if let Some(user) = self.known.get(&hash) {
            return Ok(Some(user));
        }
        let found = self.store.user_by_key_hash(&hash).await?;
        if let Some(user) = &found {
            self.known.insert(hash, user.clone());
        }
        Ok(found)
    }
}
