//! A returned purchase's unit back in stock, once per receipt (`restore.lua`'s `restored` set),
//! then recorded in MySQL (`unit_restored`); until that record exists, the sweep redoes it.

use super::{Sale, SaleError};
use crate::{
    redis::scripts::restore::RestoreReply,
    telemetry::metrics::{Event, Metric},
};

impl Sale {
    /// Gives a returned purchase's unit back, once. If the sale is not in Redis, it is rebuilt
    /// first (the rebuild already counts this unit as returned, so the retry finds it done).
    #[tracing::instrument(skip(self), err)]
    pub async fn restore_unit(
        &self,
        product_id: u64,
        activity_id: u64,
        receipt: &str,
    ) -> Result<RestoreReply, SaleError> {
        match self.redis.restore(product_id, activity_id, receipt).await? {
            RestoreReply::NotLoaded => {
                // Boxed: keeps the callers' future types shallow.
                // The bucket that sold it (a split sale may have lost only that one).
                match Box::pin(self.ensure_loaded(crate::redis::shard_of(product_id, receipt))).await {
                    // The product has no activity now: the rebuild left its negative entry,
                    // against which the restore is recorded with no unit to give back.
                    Ok(()) | Err(SaleError::ProductNotFound) => {}
                    Err(e) => return Err(e),
                }
                Ok(self.redis.restore(product_id, activity_id, receipt).await?)
            }
            done => Ok(done),
        }
    }
}

impl Sale {
    /// The last steps after a cancel or a dead letter committed: the unit back in Redis, then
    /// `unit_restored` in MySQL. Safe to redo (the sweep does, for any purchase whose record
    /// is missing because a run died between the two).
    #[tracing::instrument(skip(self), err)]
    pub async fn give_back(&self, product_id: u64, activity_id: u64, receipt: &str) -> Result<RestoreReply, SaleError> {
        let reply = self.restore_unit(product_id, activity_id, receipt).await?;
        if reply == RestoreReply::Restored {
            self.metrics.emit(Event::new(Some(activity_id)).add(Metric::UnitsRestored, 1.0));
        }
        // The buyer's next poll must not read the kept "pending_payment"; if this fails, a
        // pending entry past its pay_by is not trusted anyway (redis::order_status).
        if let Err(e) = self.redis.forget_order_status(product_id, receipt).await {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), receipt, "kept order status not dropped");
        }
        self.db.mark_restored(&[receipt]).await?;
        Ok(reply)
    }
}
