//! Users and their API keys. A key is shown once, when it is made; the
//! store keeps only its sha256, so a leaked database leaks no key.

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

/// The user a bearer key belongs to.
pub async fn authenticate(store: &dyn Store, key: &str) -> StoreResult<Option<User>> {
    store.user_by_key_hash(&hash_key(key)).await
}
