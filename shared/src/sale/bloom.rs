//! Listing a product and keeping the bloom filter whole: an id the filter rules out never
//! reaches MySQL (invariant 7), so every listed id must be in it.

use super::{Sale, SaleError};
use crate::domain::NewProduct;

impl Sale {
    /// Lists a product: the MySQL row, then its bloom filter bits.
    #[tracing::instrument(skip(self, product), fields(name = %product.name), err)]
    pub async fn list_product(&self, product: &NewProduct) -> Result<u64, SaleError> {
        let id = self.db.insert_product(product).await?;
        self.redis.bloom_add(id).await?;
        Ok(id)
    }

    /// Refills the bloom filter from MySQL if Redis lost it; true if it was refilled.
    #[tracing::instrument(skip(self), err)]
    pub async fn refill_bloom_if_lost(&self) -> Result<bool, SaleError> {
        if self.redis.bloom_exists().await? {
            return Ok(false);
        }
        let ids = self.db.product_ids().await?;
        self.redis.bloom_add_many(&ids).await?;
        Ok(true)
    }
}
