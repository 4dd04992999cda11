//! `lua/sent.lua`: counts the resends the queue accepted (only those are attempts).

use std::sync::LazyLock;

use super::Lua;
use crate::redis::{RedisStore, StoreError};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/sent.lua")));

impl RedisStore {
    /// Records one accepted send for each receipt still in the product's outbox; returns how
    /// many were counted.
    #[tracing::instrument(skip(self, receipts), fields(n = receipts.len()), err)]
    pub async fn record_sent(&self, product_id: crate::domain::Shard, receipts: &[String]) -> Result<u64, StoreError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        let k = &self.keys;
        let mut inv = SCRIPT.key(k.outbox(product_id));
        inv.key(k.outbox_attempts(product_id));
        for r in receipts {
            inv.arg(r);
        }
        Ok(self.run(&inv).await?)
    }
}
