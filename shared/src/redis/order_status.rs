//! The order status a buyer polls, kept in Redis so that the polls of thousands of winners
//! never reach MySQL (`keys.order_status(product)`: receipt -> `KnownOrder` JSON, in the
//! product's slot, expiring `SALE_RETENTION_HOURS` after its last write).
//!
//! Who writes what, and why no update can go backwards:
//! - a pending order (the consumer after its insert, a poll that had to read MySQL) is written
//!   only if the receipt has no entry yet (`HSETNX`), so it never overwrites a final status;
//! - a final status (the payment, a poll that read one from MySQL) overwrites (`HSET`): paid,
//!   cancelled and failed exclude each other in MySQL, so two final writers never disagree.
//!
//! A cancellation or a dead letter (the payment timeout, the sweep, outbox-retry) removes the
//! entry once its unit is back, so the next poll reads the final row from MySQL and keeps it.
//! Should that removal fail (or a poll that read MySQL before the cancellation put the pending
//! row back), the rule that settles it: a reader never trusts a pending entry past its `pay_by`,
//! and a cancellation only happens after `pay_by`. A write that fails costs a MySQL read later,
//! never a wrong answer.

use std::time::Duration;

use super::{RedisStore, StoreError, parse_entry};
use crate::domain::{KnownOrder, OrderMessage};

impl RedisStore {
    /// The receipt's kept status and its outbox entry, in one round trip (one slot).
    #[tracing::instrument(skip(self), err)]
    pub async fn order_status(
        &self,
        product_id: u64,
        receipt: &str,
    ) -> Result<(Option<KnownOrder>, Option<OrderMessage>), StoreError> {
        let (status, entry): (Option<String>, Option<String>) = redis::pipe()
            .hget(self.keys.order_status(super::shard_of(product_id, receipt)), receipt)
            .hget(self.keys.outbox(super::shard_of(product_id, receipt)), receipt)
            .query_async(&mut self.conn())
            .await?;
        let status = status.and_then(|raw| match serde_json::from_str(&raw) {
            Ok(known) => Some(known),
            Err(e) => {
                // Read past, not trusted: MySQL answers and the entry is written anew.
                tracing::error!(error = %e, receipt, entry = %raw, "kept order status does not parse; ignored");
                None
            }
        });
        Ok((status, entry.and_then(|m| parse_entry(&m))))
    }

    /// Keeps these orders' statuses (all of one product): pending ones only where the receipt
    /// has none yet, final ones over whatever is there. The key lives `ttl` (a sale's
    /// retention) after its last write.
    #[tracing::instrument(skip(self, orders), fields(n = orders.len()), err)]
    pub async fn keep_order_status(
        &self,
        product_id: u64,
        orders: &[KnownOrder],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if orders.is_empty() {
            return Ok(());
        }
        // Each status lives in the bucket that sold the receipt; one pipeline per bucket (its
        // commands share a slot).
        let mut by_key: std::collections::BTreeMap<String, Vec<&KnownOrder>> = Default::default();
        for o in orders {
            by_key.entry(self.keys.order_status(super::shard_of(product_id, o.receipt()))).or_default().push(o);
        }
        for (key, orders) in by_key {
            let mut pipe = redis::pipe();
            for o in orders {
                let json =
                    serde_json::to_string(o).map_err(|e| super::ReplyError::new("order status", e.to_string()))?;
                if o.is_final() {
                    pipe.hset(&key, o.receipt(), json).ignore();
                } else {
                    pipe.hset_nx(&key, o.receipt(), json).ignore();
                }
            }
            // Sliding: the hash lives `ttl` after its last write (no `NX`, which needs Redis 7).
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl.as_millis() as u64).ignore();
            let () = pipe.query_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Drops a receipt's kept status (its order was cancelled or failed): the next poll reads
    /// MySQL and keeps the final row.
    #[tracing::instrument(skip(self), err)]
    pub async fn forget_order_status(&self, product_id: u64, receipt: &str) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("HDEL")
            .arg(self.keys.order_status(super::shard_of(product_id, receipt)))
            .arg(receipt)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }
}
