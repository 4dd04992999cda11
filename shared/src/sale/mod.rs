//! The sale: everything up to the 202, on the hot path.
//!
//! - [`buy`]: one press of "buy" (instance limit, one Lua call, the order message to SQS).
//! - [`stock`]: the stock view a page polls (Redis only).
//! - [`rebuild`]: the cache-miss rebuild (bloom filter first, one rebuilder at a time) and what
//!   Redis should hold for an activity, derived from MySQL and the outbox.
//! - [`warm`]: warm-up of one activity and the scheduled warm-up.
//! - [`rebalance`]: a split sale's units moved to a bucket that ran dry, crash-safe.
//! - [`restore`]: a returned purchase's unit back in stock, once.
//! - [`bloom`]: listing a product (its row, then its bloom bits) and refilling a lost filter.
//! - [`limits`]: the per-instance token bucket.
//! - [`memo`]: answers an instance keeps for a short while (sold out, not open, the stock view).

pub mod bloom;
pub mod buy;
pub mod limits;
pub mod memo;
pub mod rebalance;
pub mod rebuild;
pub mod restore;
pub mod stock;
pub mod warm;

pub use buy::{BuyOutcome, BuyService, Decision, Freshness};
pub use stock::{StockQuery, StockView};
pub use warm::WarmReport;

use crate::{
    config::{CoreConfig, SaleConfig},
    mysql::Db,
    redis::{RedisStore, StoreError},
    telemetry::metrics::Metrics,
};

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error("no such product")]
    ProductNotFound,
    #[error("redis is unavailable")]
    Redis(#[from] StoreError),
    #[error("mysql is unavailable")]
    Mysql(#[from] sqlx::Error),
    #[error("another caller is rebuilding the sale and did not finish in time")]
    RebuildBusy,
    #[error("the buyer's stock bucket was being refilled and the refill did not finish in time")]
    RefillBusy,
}

/// Redis + MySQL, as every sale path needs them, and the function's metrics.
#[derive(Clone)]
pub struct Sale {
    pub redis: RedisStore,
    pub db: Db,
    pub cfg: SaleConfig,
    pub metrics: Metrics,
}

/// Builds the sale's state once per cold start, for the function named `function` (its
/// metrics' `Function` dimension). MySQL connects on first use; Redis as
/// [`RedisStore::connect`] says (a cluster's topology is read now). An error names the
/// variable to fix.
pub async fn connect(core: &CoreConfig, function: &'static str) -> Result<Sale, StoreError> {
    Ok(Sale {
        redis: RedisStore::connect(&core.redis).await?,
        db: Db::connect_lazy(&core.mysql),
        cfg: core.sale.clone(),
        metrics: Metrics::new(&core.metrics, function),
    })
}
