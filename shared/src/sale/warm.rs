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
    /// Activities that wait for the product's live one to end.
    pub deferred: usize,
    pub bloom_refilled: bool,
}

/// How often a load that lost its compare-and-set is derived again before giving up (503).
const LOAD_TRIES: usize = 5;

impl Sale {
    /// Warm-up of one activity: bloom bits, then the sale. A live sale of the same activity
    /// keeps its stock (only window and limits change), so running it twice or mid-sale never
    /// hands out a unit twice; a missing one is derived from MySQL and the outbox. Another
    /// activity of the product that is open (or starts first) is never disturbed: this one is
    /// `Deferred` until that one has ended. A load whose reading went stale meanwhile is
    /// derived again.
    #[tracing::instrument(skip(self, activity), fields(activity_id = activity.id, product_id = activity.product_id), err)]
    pub async fn warm(&self, activity: &Activity) -> Result<LoadReply, SaleError> {
        self.redis.bloom_add(activity.product_id).await?;
        for _ in 0..LOAD_TRIES {
            // One load per bucket (one for a sale that is not split); what they did, together:
            // deferred if any bucket deferred, written if any was written, else refreshed.
            let mut replies = Vec::new();
            for (shard, load) in self.derive_loads(activity).await? {
                replies.push(
                    self.redis
                        .load_sale(shard, LoadMode::Refresh, &load.load, self.cfg.negative_ttl, self.cfg.retention)
                        .await?,
                );
            }
            if !replies.contains(&LoadReply::Stale) {
                return Ok([LoadReply::Deferred, LoadReply::Written, LoadReply::AlreadyLoaded]
                    .into_iter()
                    .find(|r| replies.contains(r))
                    .unwrap_or(LoadReply::Refreshed));
            }
            tracing::info!("the sale changed while it was derived; deriving again");
        }
        Err(SaleError::RebuildBusy)
    }

    /// The scheduled warm-up: every activity that starts within the horizon and has not ended
    /// (for each product, the one `current_activity` names), and the bloom filter refilled if
    /// Redis lost it.
    #[tracing::instrument(skip(self), err)]
    pub async fn warm_upcoming(&self, horizon: std::time::Duration) -> Result<WarmReport, SaleError> {
        let now = Utc::now();
        let mut report = WarmReport { activities: 0, written: 0, refreshed: 0, deferred: 0, bloom_refilled: false };
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
                LoadReply::Deferred => report.deferred += 1,
                _ => report.written += 1,
            }
        }
        tracing::info!(?report, "warm-up run");
        Ok(report)
    }
}
