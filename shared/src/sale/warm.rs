//! Warm-up: an activity loaded into Redis before its sale opens (stock derived, never copied
//! blindly), on an admin's request or by the scheduled run.

use chrono::Utc;
use serde::Serialize;

use super::{Sale, SaleError};
use crate::{
    domain::Activity,
    redis::scripts::load_sale::{LoadMode, LoadReply},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    pub activities: usize,
    pub written: usize,
    pub refreshed: usize,
    pub bloom_refilled: bool,
}

impl Sale {
    /// Warm-up of one activity: bloom bits, then the sale. A live sale of the same activity
    /// keeps its stock (only window and limits change), so running it twice or mid-sale never
    /// hands out a unit twice; a missing one is derived from MySQL and the outbox.
    #[tracing::instrument(skip(self, activity), fields(activity_id = activity.id, product_id = activity.product_id), err)]
    pub async fn warm(&self, activity: &Activity) -> Result<LoadReply, SaleError> {
        self.redis.bloom_add(activity.product_id).await?;
        let load = self.derive_load(activity).await?;
        Ok(self.redis.load_sale(activity.product_id, LoadMode::Refresh, &load, self.cfg.negative_ttl).await?)
    }

    /// The scheduled warm-up: every activity that starts within the horizon and has not ended
    /// (for each product, the one `current_activity` names), and the bloom filter refilled if
    /// Redis lost it.
    #[tracing::instrument(skip(self), err)]
    pub async fn warm_upcoming(&self, horizon: std::time::Duration) -> Result<WarmReport, SaleError> {
        let now = Utc::now();
        let mut report = WarmReport { activities: 0, written: 0, refreshed: 0, bloom_refilled: false };
        report.bloom_refilled = self.refill_bloom_if_lost().await?;
        let mut products: Vec<u64> =
            self.db.activities_to_warm(now, horizon).await?.iter().map(|a| a.product_id).collect();
        products.sort_unstable();
        products.dedup();
        for product_id in products {
            let Some(activity) = self.db.current_activity(product_id, now).await? else { continue };
            report.activities += 1;
            match self.warm(&activity).await? {
                LoadReply::Refreshed => report.refreshed += 1,
                _ => report.written += 1,
            }
        }
        tracing::info!(?report, "warm-up run");
        Ok(report)
    }
}
