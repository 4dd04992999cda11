//! `lua/ack.lua`: the consumer's acknowledgement; orders that are rows leave the outbox, and a
//! purchase the live sale lost (Redis rebuilt while its message was in flight) is adopted.

use std::sync::LazyLock;

use super::Lua;
use crate::{
    domain::OrderMessage,
    redis::{RedisStore, StoreError},
};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/ack.lua")));

/// What `ack.lua` did beyond removing the entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckReply {
    /// Purchases the live sale did not know, now recorded with their unit taken.
    pub adopted: i64,
    /// Adoptions that found no unit left: a unit was handed out twice.
    pub oversold: i64,
}

impl RedisStore {
    #[tracing::instrument(skip(self, orders), fields(n = orders.len()), err)]
    pub async fn ack_outbox(&self, product_id: u64, orders: &[&OrderMessage]) -> Result<AckReply, StoreError> {
        if orders.is_empty() {
            return Ok(AckReply::default());
        }
        let k = &self.keys;
        let mut inv = SCRIPT.key(k.sale(product_id));
        inv.key(k.buyers(product_id))
            .key(k.outbox(product_id))
            .key(k.outbox_due(product_id))
            .key(k.outbox_attempts(product_id));
        for m in orders {
            inv.arg(m.activity_id).arg(&m.user_id).arg(&m.receipt);
        }
        let (adopted, oversold): (i64, i64) = self.run(&inv).await?;
        Ok(AckReply { adopted, oversold })
    }
}
