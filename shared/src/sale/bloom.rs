//! Listing a product and keeping the bloom filter whole: an id the filter rules out never
//! reaches MySQL (invariant 7), so every listed id must be in it, and a lost filter is
//! refilled before anything is ruled out by it.

use super::{Sale, SaleError, rebuild::Flight};
use crate::domain::NewProduct;

impl Sale {
    /// Lists a product: the MySQL row, then its bloom filter bits. With an idempotency key,
    /// a retry (say after a 503 between the two) finds the row and completes the bits.
    #[tracing::instrument(skip(self, product), fields(name = %product.name), err)]
    pub async fn list_product(&self, product: &NewProduct, key: Option<&str>) -> Result<u64, SaleError> {
        let id = self.db.insert_product(product, key).await?;
        self.redis.bloom_add(id).await?;
        Ok(id)
    }

    /// False only when the bloom filter rules the product out. A missing filter (Redis lost
    /// it) is "unknown", never "absent": one caller refills it from MySQL under the filter's
    /// lock while the others wait (503 if that takes longer than `rebuild_wait`).
    #[tracing::instrument(skip(self), err)]
    pub async fn product_may_exist(&self, product_id: u64) -> Result<bool, SaleError> {
        if let Some(may) = self.redis.bloom_check(product_id).await? {
            return Ok(may);
        }
        self.refill_bloom_if_lost().await?;
        self.redis.bloom_check(product_id).await?.ok_or(SaleError::RebuildBusy)
    }

    /// Refills the bloom filter from MySQL if Redis lost it (one caller at a time; the others
    /// wait for it); true if it was missing.
    #[tracing::instrument(skip(self), err)]
    pub async fn refill_bloom_if_lost(&self) -> Result<bool, SaleError> {
        if self.redis.bloom_check(0).await?.is_some() {
            return Ok(false);
        }
        self.single_flight(Flight::Bloom).await?;
        Ok(true)
    }

    /// The refill itself (run by the holder of the filter's lock).
    pub(super) async fn refill_bloom(&self) -> Result<(), SaleError> {
        if self.redis.bloom_check(0).await?.is_some() {
            return Ok(());
        }
        let ids = self.db.product_ids().await?;
        self.redis.bloom_replace(&ids).await?;
        // A product listed while the filter was built set its bits in the old (missing) key,
        // which the rename replaced: add every id from near the end of the first read on.
        let since = ids.last().map_or(0, |last| last.saturating_sub(1000));
        let recent = self.db.product_ids_from(since).await?;
        self.redis.bloom_add_many(&recent).await?;
        tracing::warn!(products = ids.len(), "the bloom filter was missing; refilled from MySQL");
        Ok(())
    }
}
