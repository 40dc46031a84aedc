//! API keys through the engine: create (the key is returned once), list, revoke, and find the
//! tenant a presented key acts as. Surfaces never see the store's key table directly.

use crate::Engine;
use rap_core::{Error, Result, Tenant};
use rap_memory::api_keys::hash_key;
use rap_memory::{ApiKeyInfo, ApiKeyStore, NewApiKey};

impl Engine {
    fn key_store(&self) -> Result<&dyn ApiKeyStore> {
        self.store()
            .api_key_store()
            .ok_or_else(|| Error::storage("this memory backend does not keep API keys"))
    }

    /// Creates an API key for `tenant`. The returned string is the only copy of the key.
    pub fn create_api_key(&self, tenant: &Tenant) -> Result<(String, ApiKeyInfo)> {
        let new = NewApiKey::generate()?;
        let info = self.key_store()?.add_api_key(tenant, &new)?;
        Ok((new.key, info))
    }

    /// Every API key (without secrets), revoked ones included.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.key_store()?.api_keys()
    }

    /// Revokes a key by its id (or the whole key).
    pub fn revoke_api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        self.key_store()?.revoke_api_key(id)
    }

    /// Whether any key is active: then every request must present one.
    pub fn api_keys_required(&self) -> Result<bool> {
        match self.store().api_key_store() {
            Some(s) => s.has_active_api_keys(),
            None => Ok(false),
        }
    }

    /// The tenant of an active key, or `None` for an unknown or revoked key.
    pub fn authenticate(&self, key: &str) -> Result<Option<Tenant>> {
        self.key_store()?.tenant_for_key_hash(&hash_key(key.trim()))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, EngineConfig};
    use rap_core::Tenant;

    #[test]
    fn keys_authenticate_their_tenant_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path()), Box::new(|| Ok(None))).unwrap();
        assert!(!engine.api_keys_required().unwrap());
        let a = Tenant::new("a").unwrap();
        let (key, info) = engine.create_api_key(&a).unwrap();
        assert!(engine.api_keys_required().unwrap());
        assert_eq!(engine.authenticate(&key).unwrap(), Some(a));
        assert_eq!(engine.authenticate("rap_wrong").unwrap(), None);
        engine.revoke_api_key(&info.id).unwrap();
        assert_eq!(engine.authenticate(&key).unwrap(), None);
        assert!(!engine.api_keys_required().unwrap());
    }
}
