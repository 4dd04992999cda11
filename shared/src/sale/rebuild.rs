//! The cache-miss rebuild: ids the bloom filter rules out are refused without MySQL; otherwise
//! one caller (holding the product's lock) rebuilds from MySQL while the others wait for it.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicU64, Ordering},
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

fn lock_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Sale {
    /// Makes sure the product's sale is in Redis. Ids the bloom filter rules out are refused
    /// without MySQL; otherwise one caller (holding the product's lock) rebuilds from MySQL
    /// while the others wait for it, up to `rebuild_wait`, then give up (503).
    #[tracing::instrument(skip(self), err)]
    pub async fn ensure_loaded(&self, product_id: u64) -> Result<(), SaleError> {
        if !self.redis.bloom_may_contain(product_id).await? {
            return Err(SaleError::ProductNotFound);
        }
        let token = lock_token();
        let deadline = Instant::now() + self.cfg.rebuild_wait;
        loop {
            if self.redis.try_lock(product_id, LOCK_TTL, &token).await? {
                let rebuilt = self.rebuild(product_id).await;
                match self.redis.unlock(product_id, &token).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("the rebuild outlived its lock"),
                    Err(e) => tracing::warn!(error = %e, "could not release the rebuild lock; it expires by itself"),
                }
                return rebuilt;
            }
            tokio::time::sleep(POLL).await;
            if self.redis.sale(product_id).await?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SaleError::RebuildBusy);
            }
        }
    }

    #[tracing::instrument(skip(self), err)]
    async fn rebuild(&self, product_id: u64) -> Result<(), SaleError> {
        let Some(activity) = self.db.current_activity(product_id, Utc::now()).await? else {
            self.redis.load_sale(product_id, LoadMode::IfMissing, &SaleLoad::absent(), self.cfg.negative_ttl).await?;
            return Err(SaleError::ProductNotFound);
        };
        let load = self.derive_load(&activity).await?;
        let reply = self.redis.load_sale(product_id, LoadMode::IfMissing, &load, self.cfg.negative_ttl).await?;
        tracing::info!(activity_id = activity.id, stock = load.stock, ?reply, "sale rebuilt from MySQL");
        Ok(())
    }

    /// What Redis should hold for an activity, derived from the record rather than copied from
    /// the activity row: a unit is taken by every outbox entry and every order, except those
    /// whose unit came back (cancelled, dead-lettered). The outbox is read before MySQL: the
    /// consumer inserts a row before it removes the entry, so no purchase falls between reads.
    #[tracing::instrument(skip(self, a), fields(activity_id = a.id), err)]
    pub(super) async fn derive_load(&self, a: &Activity) -> Result<SaleLoad, SaleError> {
        let outbox: Vec<OrderMessage> =
            self.redis.outbox(a.product_id).await?.into_iter().filter(|m| m.activity_id == a.id).collect();
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
        })
    }
}
