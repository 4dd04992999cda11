//! The stock a page shows: Redis only, unless the sale must be rebuilt. Its `state` is decided
//! by Redis' clock, read with the sale, as `buy.lua` decides the window.

use super::{Sale, SaleError};
use crate::domain::{SaleState, UNLIMITED};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockView {
    pub product_id: u64,
    pub activity_id: u64,
    pub stock: i64,
    pub unlimited: bool,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub state: SaleState,
}

impl Sale {
    /// The product's stock as a page shows it. Redis only, unless the sale must be rebuilt.
    #[tracing::instrument(skip(self), err)]
    pub async fn stock(&self, product_id: u64) -> Result<StockView, SaleError> {
        let snap = match self.redis.sale(product_id).await? {
            Some(s) => s,
            None => {
                self.ensure_loaded(product_id).await?;
                self.redis.sale(product_id).await?.ok_or(SaleError::RebuildBusy)?
            }
        };
        if snap.activity_id == 0 {
            return Err(SaleError::ProductNotFound);
        }
        Ok(StockView {
            product_id,
            activity_id: snap.activity_id,
            stock: snap.stock,
            unlimited: snap.stock == UNLIMITED,
            starts_at_ms: snap.starts_at_ms,
            ends_at_ms: snap.ends_at_ms,
            state: SaleState::at(snap.now_ms, snap.starts_at_ms, snap.ends_at_ms),
        })
    }
}
