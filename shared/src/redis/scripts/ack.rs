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
        // One call per bucket that sold them (each receipt names its bucket).
        let mut by_shard: std::collections::BTreeMap<String, (crate::domain::Shard, Vec<&OrderMessage>)> =
            Default::default();
        for m in orders {
            let shard = crate::redis::shard_of(product_id, &m.receipt);
            by_shard.entry(shard.label()).or_insert_with(|| (shard, Vec::new())).1.push(m);
        }
        let mut reply = AckReply::default();
        for (shard, orders) in by_shard.into_values() {
            let mut inv = SCRIPT.key(k.sale(shard));
            inv.key(k.buyers(shard)).key(k.outbox(shard)).key(k.outbox_due(shard)).key(k.outbox_attempts(shard));
            for m in orders {
                inv.arg(m.activity_id).arg(&m.user_id).arg(&m.receipt);
            }
            let (adopted, oversold): (i64, i64) = self.run(&inv).await?;
            reply.adopted += adopted;
            reply.oversold += oversold;
        }
        Ok(reply)
    }
}
