use std::sync::{Arc, Mutex, PoisonError};

use super::TokenStore;
use crate::error::Result;
use crate::token::StoredToken;

/// A store that lives as long as the process: tests, short jobs, or tokens
/// obtained elsewhere. Clones share one slot.
#[derive(Debug, Clone, Default)]
pub struct MemoryTokenStore {
    slot: Arc<Mutex<Option<StoredToken>>>,
}

impl MemoryTokenStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `token`.
    #[must_use]
    pub fn with_token(token: StoredToken) -> Self {
        let store = Self::default();
        *store.lock() = Some(token);
        store
    }

    /// What the store holds now.
    #[must_use]
    pub fn get(&self) -> Option<StoredToken> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<StoredToken>> {
        // The slot is always in a consistent state, so a panic elsewhere
        // while it was held does not make it unusable.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TokenStore for MemoryTokenStore {
    async fn load(&self) -> Result<Option<StoredToken>> {
        Ok(self.get())
    }

    async fn save(&self, token: &StoredToken) -> Result<()> {
        *self.lock() = Some(token.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        *self.lock() = None;
        Ok(())
    }

    fn name(&self) -> String {
        "the in-memory token store".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clones_share_one_slot() {
        let a = MemoryTokenStore::new();
        let b = a.clone();
        assert!(a.load().await.unwrap().is_none());
        let t = StoredToken::from_json(br#"{"client_id": "c"}"#).unwrap();
        b.save(&t).await.unwrap();
        assert_eq!(a.load().await.unwrap().unwrap().client_id(), Some("c"));
        a.clear().await.unwrap();
        assert!(b.load().await.unwrap().is_none());
    }
}
