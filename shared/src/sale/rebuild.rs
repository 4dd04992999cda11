//! The cache-miss rebuild: ids the bloom filter rules out are refused without MySQL; otherwise
//! one caller (holding the product's lock) rebuilds from MySQL while the others wait for it.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::Utc;

use super::{Sale, SaleError};
use crate::{
    domain::{Activity, OrderMessage, UNLIMITED, to_ms},
    redis::scripts::load_sale::{LoadMode, SaleLoad},
};

/// How long one rebuilder may hold a product's lock. Longer than any rebuild should take; if
/// the holder dies, the next caller takes over after this.
const LOCK_TTL: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Work that one caller does while the others wait for it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Flight {
    /// Rebuild a product's sale from MySQL.
    Sale(u64),
    /// Refill the lost bloom filter from MySQL.
    Bloom,
}

impl Sale {
    /// Makes sure the product's sale is in Redis. Ids the bloom filter rules out are refused
    /// without MySQL; otherwise one caller (holding the product's lock) rebuilds from MySQL
    /// while the others wait for it, up to `rebuild_wait`, then give up (503).
    #[tracing::instrument(skip(self), err)]
    pub async fn ensure_loaded(&self, product_id: u64) -> Result<(), SaleError> {
        if !self.product_may_exist(product_id).await? {
            return Err(SaleError::ProductNotFound);
        }
        self.single_flight(Flight::Sale(product_id)).await
    }

    /// Does `flight`'s work as the one holder of its lock, or waits for the holder until the
    /// work is seen done (up to `rebuild_wait`, then `RebuildBusy`: 503). A holder that dies
    /// frees the lock after `LOCK_TTL`.
    /// Boxed, so that every caller's future stays shallow (the hot paths, the sweep and the
    /// order lookups all reach it; nested, their types overflow the compiler's layout limit).
    pub(super) fn single_flight(
        &self,
        flight: Flight,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SaleError>> + Send + '_>> {
        Box::pin(async move {
            let lock = match flight {
                Flight::Sale(product_id) => self.redis.keys().rebuild_lock(product_id),
                Flight::Bloom => self.redis.keys().bloom_lock(),
            };
            let token = crate::redis::unique_token();
            let deadline = Instant::now() + self.cfg.rebuild_wait;
            loop {
                if self.redis.try_lock(&lock, LOCK_TTL, &token).await? {
                    let result = match flight {
                        Flight::Sale(product_id) => self.rebuild(product_id).await,
                        Flight::Bloom => self.refill_bloom().await,
                    };
                    match self.redis.unlock(&lock, &token).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(lock, "the work outlived its lock"),
                        Err(e) => tracing::warn!(error = %e, lock, "could not release the lock; it expires by itself"),
                    }
                    return result;
                }
                tokio::time::sleep(POLL).await;
                let done = match flight {
                    Flight::Sale(product_id) => self.redis.sale(product_id).await?.is_some(),
                    Flight::Bloom => self.redis.bloom_check(0).await?.is_some(),
                };
                if done {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(SaleError::RebuildBusy);
                }
            }
        })
    }

    #[tracing::instrument(skip(self), err)]
    async fn rebuild(&self, product_id: u64) -> Result<(), SaleError> {
        let Some(activity) = self.db.current_activity(product_id, Utc::now()).await? else {
            self.redis
                .load_sale(
                    product_id,
                    LoadMode::IfMissing,
                    &SaleLoad::absent(),
                    self.cfg.negative_ttl,
                    self.cfg.retention,
                )
                .await?;
            return Err(SaleError::ProductNotFound);
        };
        let load = self.derive_load(&activity).await?;
        let reply = self
            .redis
            .load_sale(product_id, LoadMode::IfMissing, &load, self.cfg.negative_ttl, self.cfg.retention)
            .await?;
        tracing::info!(activity_id = activity.id, stock = load.stock, ?reply, "sale rebuilt from MySQL");
        Ok(())
    }

    /// What Redis should hold for an activity, derived from the record rather than copied from
    /// the activity row: a unit is taken by every outbox entry and every order, except those
    /// whose unit came back (cancelled, dead-lettered). The outbox is read before MySQL: the
    /// consumer inserts a row before it removes the entry, so no purchase falls between reads.
    /// The sale's `ver` is read with the outbox: the load is a compare-and-set on it.
    #[tracing::instrument(skip(self, a), fields(activity_id = a.id), err)]
    pub(super) async fn derive_load(&self, a: &Activity) -> Result<SaleLoad, SaleError> {
        let read = self.redis.sale_and_outbox(a.product_id).await?;
        let outbox: Vec<OrderMessage> = read.outbox.into_iter().filter(|m| m.activity_id == a.id).collect();
        let orders = self.db.order_keys(a.id).await?;

        let mut buyers = HashMap::new();
        let mut taken = HashSet::new();
        let mut returned = HashSet::new();
        for m in &outbox {
            buyers.insert(format!("{}:{}", a.id, m.user_id), m.receipt.clone());
            taken.insert(m.receipt.clone());
        }
        for o in orders {
            buyers.insert(format!("{}:{}", a.id, o.user_id), o.receipt.clone());
            if o.unit_returned {
                returned.insert(o.receipt);
            } else {
                taken.insert(o.receipt);
            }
        }
        let taken = taken.difference(&returned).count() as i64;
        let stock = if a.stock == UNLIMITED { UNLIMITED } else { (a.stock - taken).max(0) };
        Ok(SaleLoad {
            activity_id: a.id,
            stock,
            starts_at_ms: to_ms(a.starts_at),
            ends_at_ms: to_ms(a.ends_at),
            per_user_per_min: a.per_user_per_min,
            rate_per_sec: a.rate_limit_per_sec,
            burst: a.burst,
            seq: buyers.len() as u64,
            buyers: buyers.into_iter().collect(),
            returned: returned.into_iter().collect(),
            read_version: read.version,
        })
    }
}
