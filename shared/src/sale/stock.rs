//! The stock a page shows: Redis only, unless the sale must be rebuilt. Its `state` is decided
//! by Redis' clock, read with the sale, as `buy.lua` decides the window. The stock-query
//! function serves a view from its instance's memory for `STOCK_CACHE_MS` ([`StockQuery`]):
//! a page's figure and state are at most that old.

use std::time::Instant;

use super::{
    Sale, SaleError,
    memo::{self, Memo},
};
use crate::domain::{SaleState, UNLIMITED};

/// The stock-query function's state: the sale and the views this instance keeps for a while.
#[derive(Clone)]
pub struct StockQuery {
    pub sale: Sale,
    pub cache: Memo<StockView>,
}

impl StockQuery {
    pub fn new(sale: Sale) -> Self {
        Self { sale, cache: Memo::default() }
    }

    /// The product's stock view, from this instance's memory if it is younger than
    /// `STOCK_CACHE_MS`, else from Redis.
    #[tracing::instrument(skip(self), err)]
    pub async fn view(&self, product_id: u64) -> Result<StockView, SaleError> {
        if let Some(v) = self.cache.get_or_refresh(product_id, Instant::now(), memo::REFRESH, |_| true) {
            return Ok(v);
        }
        let v = self.sale.stock(product_id).await?;
        self.cache.put(product_id, v.clone(), Instant::now(), self.sale.cfg.stock_cache_ttl);
        Ok(v)
    }
}

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
        let stock = if snap.buckets > 1 && snap.stock != UNLIMITED {
            self.total_stock(product_id, snap.activity_id, snap.buckets).await?
        } else {
            snap.stock
        };
        Ok(StockView {
            product_id,
            activity_id: snap.activity_id,
            stock,
            unlimited: snap.stock == UNLIMITED,
            starts_at_ms: snap.starts_at_ms,
            ends_at_ms: snap.ends_at_ms,
            state: SaleState::at(snap.now_ms, snap.starts_at_ms, snap.ends_at_ms),
        })
    }
}

impl Sale {
    /// A split sale's stock: every bucket's, and the units on their way between buckets (a
    /// rebalance's move in progress, or one a dead caller left). Each bucket is read on its
    /// own, so the sum is as of slightly different moments, like any cached stock figure. A
    /// bucket Redis lost is rebuilt first.
    #[tracing::instrument(skip(self), err)]
    pub async fn total_stock(&self, product_id: u64, activity_id: u64, buckets: u16) -> Result<i64, SaleError> {
        let mut total = 0;
        for shard in crate::domain::Shard::all(product_id, buckets) {
            let mut read = self.redis.bucket_stock(shard).await?;
            if read.is_none() {
                // Redis lost this bucket: rebuild it (one caller at a time), then read it.
                self.ensure_loaded(shard).await?;
                read = self.redis.bucket_stock(shard).await?;
            }
            if let Some(b) = read.filter(|b| b.activity_id == activity_id) {
                total += b.stock.max(0) + self.redis.in_transit(&b.moving).await?;
            }
        }
        Ok(total)
    }
}
