//! `lua/unlock.lua`: releases a lock only if this caller still holds it.

use std::sync::LazyLock;

use super::Lua;
use crate::redis::{RedisStore, StoreError};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/unlock.lua")));

impl RedisStore {
    /// True if this caller's lock was released; false if it had expired (and may be another's).
    #[tracing::instrument(skip(self, token), err)]
    pub async fn unlock(&self, lock: &str, token: &str) -> Result<bool, StoreError> {
        let released: i64 = self.run(SCRIPT.key(lock).arg(token)).await?;
        Ok(released == 1)
    }
}
