//! `lua/unlock.lua`: releases a lock only if this caller still holds it.

use std::sync::LazyLock;

use redis::Script;

use crate::redis::{RedisStore, StoreError};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../../../lua/unlock.lua")));

impl RedisStore {
    /// True if this caller's lock was released; false if it had expired (and may be another's).
    #[tracing::instrument(skip(self, token), err)]
    pub async fn unlock(&self, lock: &str, token: &str) -> Result<bool, StoreError> {
        let released: i64 = SCRIPT.key(lock).arg(token).invoke_async(&mut self.conn()).await?;
        Ok(released == 1)
    }
}
