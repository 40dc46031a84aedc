//! API keys: who may use a server, and which tenant each key acts as.
//!
//! A key is `rap_<id>_<secret>`: `id` (12 hex characters) names the key in listings and
//! revocation; `secret` is 32 random bytes (hex) from the operating system's CSPRNG. The
//! store keeps only the id, the tenant and the sha256 of the whole key: the key itself is
//! shown once, when it is created. (A fast hash is enough for 256-bit random secrets; a
//! password hash would only slow every request.)

use rap_core::{Error, Result, Tenant};
use sha2::{Digest, Sha256};

/// A stored API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyInfo {
    /// The public part of the key (`rap_<id>_...`), used to list and revoke it.
    pub id: String,
    pub tenant: Tenant,
    /// Unix time in milliseconds.
    pub created_at: i64,
    /// When it was revoked (unix ms); a revoked key authenticates nothing.
    pub revoked_at: Option<i64>,
}

/// A key as a store holds it (its hash, never the key), for moving it to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub info: ApiKeyInfo,
    /// [`hash_key`] of the whole key.
    pub hash: String,
}

/// A newly made key: the only moment the full key exists.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: String,
    pub id: String,
    pub hash: String,
}

impl NewApiKey {
    /// Makes a random key.
    pub fn generate() -> Result<Self> {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id)
            .and_then(|_| getrandom::fill(&mut secret))
            .map_err(|e| Error::storage(format!("no randomness for a new key: {e}")))?;
        let id = hex::encode(id);
        let key = format!("rap_{id}_{}", hex::encode(secret));
        let hash = hash_key(&key);
        Ok(NewApiKey { key, id, hash })
    }
}

/// The stored form of a key: lowercase hex sha256 of its bytes.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Storage of API keys (the embedded store keeps them in the same file as the memory).
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key for `tenant` (its id and hash only).
    fn add_api_key(&self, tenant: &Tenant, key: &NewApiKey) -> Result<ApiKeyInfo>;

    /// Every key, revoked ones included, oldest first.
    fn api_keys(&self) -> Result<Vec<ApiKeyInfo>>;

    /// Revokes a key by id (or by the whole key); revoking twice is an error.
    fn revoke_api_key(&self, id: &str) -> Result<ApiKeyInfo>;

    /// The tenant of an active key with this hash, if any.
    fn tenant_for_key_hash(&self, hash: &str) -> Result<Option<Tenant>>;

    /// Whether any key is active (then a server requires one on every request).
    fn has_active_api_keys(&self) -> Result<bool>;

    /// Every key with its hash, revoked ones included, oldest first (for a migration).
    fn export_api_keys(&self) -> Result<Vec<StoredApiKey>>;

    /// Writes keys as another store held them (id, tenant, hash, times), all in one
    /// transaction. A key already stored as given is left alone; one stored differently under
    /// the same id is overwritten if `replace`, else the whole call is refused
    /// ([`Error::Conflict`]) and nothing is written.
    fn import_api_keys(&self, keys: &[StoredApiKey], replace: bool) -> Result<()>;
}

/// How [`ApiKeyStore::import_api_keys`] writes one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAction {
    /// No key of that id is stored.
    Insert,
    /// Another key of that id is stored, and `replace` was given.
    Overwrite,
}

/// What importing `keys` into a store that holds `held` writes, decided for every key before
/// any is written: a key stored exactly so is left out; another key under its id is
/// overwritten if `replace`, else the whole import is a conflict.
pub fn plan_import(
    keys: &[StoredApiKey],
    held: Vec<StoredApiKey>,
    replace: bool,
) -> Result<Vec<(&StoredApiKey, ImportAction)>> {
    let held: std::collections::HashMap<String, StoredApiKey> =
        held.into_iter().map(|k| (k.info.id.clone(), k)).collect();
    let mut plan = Vec::new();
    for key in keys {
        match held.get(&key.info.id) {
            None => plan.push((key, ImportAction::Insert)),
            Some(h) if h == key => {}
            Some(_) if replace => plan.push((key, ImportAction::Overwrite)),
            Some(h) => {
                return Err(Error::Conflict(format!(
                    "API key {} is already stored here for tenant {}, as a different key",
                    key.info.id, h.info.tenant
                )))
            }
        }
    }
    Ok(plan)
}

/// The id in a whole key (`rap_<id>_<secret>`), or the argument itself if it is one.
pub fn key_id(id_or_key: &str) -> Result<String> {
    let s = id_or_key.trim();
    let id = match s.strip_prefix("rap_") {
        Some(rest) => rest.split('_').next().unwrap_or_default(),
        None => s,
    };
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "invalid key id {s:?}: give the 12 hex characters `rap keys list` shows"
        )));
    }
    Ok(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let a = NewApiKey::generate().unwrap();
        let b = NewApiKey::generate().unwrap();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(&format!("rap_{}_", a.id)));
        assert_eq!(a.key.len(), 4 + 12 + 1 + 64);
        assert_eq!(a.hash, hash_key(&a.key));
        assert_ne!(a.hash, hash_key(&b.key));
        assert_eq!(key_id(&a.key).unwrap(), a.id);
        assert_eq!(key_id(&a.id).unwrap(), a.id);
        assert!(key_id("../etc").is_err());
    }
}
