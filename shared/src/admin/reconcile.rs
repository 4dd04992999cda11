//! The reconcile report of DESIGN.md: invariant 1 for one activity, from Redis and MySQL.

use serde::Serialize;

use super::{Admin, AdminError};
use crate::{
    domain::{Shard, UNLIMITED},
    telemetry::metrics::{Event, Metric},
};

/// The reconcile report of DESIGN.md: invariant 1 for one activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconcile {
    pub activity_id: u64,
    pub initial: i64,
    /// `None` when Redis does not hold this activity's sale (not warmed, or lost).
    pub redis_stock: Option<i64>,
    pub orders_pending_payment: i64,
    pub orders_paid: i64,
    pub orders_cancelled: i64,
    /// Purchases in the outbox with no order row yet.
    pub outbox_pending: i64,
    pub dead_lettered: i64,
    pub balanced: bool,
    /// How far behind the order pipeline is: the age of the oldest purchase still in the
    /// outbox (not yet acknowledged by the consumer), `None` when the outbox is empty.
    pub outbox_oldest_age_ms: Option<i64>,
    /// Each stock bucket (one for a sale that is not split): `redis_stock` above is the sum of
    /// their `stock` and `moving_out`, `outbox_pending` of theirs.
    pub buckets: Vec<BucketReport>,
}

/// One stock bucket in the reconcile report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketReport {
    pub bucket: u16,
    /// `None` when this bucket does not hold the activity.
    pub stock: Option<i64>,
    /// Units a rebalance took from this bucket that the receiver has not yet been seen to have.
    pub moving_out: i64,
    /// Purchases this bucket sold that are in its outbox with no order row yet.
    pub outbox_pending: i64,
}

impl Admin {
    /// Invariant 1 for one activity. Redis (stock and outbox, atomically) is read before MySQL,
    /// as the consumer writes a row before it removes the outbox entry.
    #[tracing::instrument(skip(self), err)]
    pub async fn reconcile(&self, activity_id: u64) -> Result<Reconcile, AdminError> {
        let a = self.sale.db.activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let mut reads = Vec::new();
        for shard in Shard::all(a.product_id, a.buckets) {
            reads.push((shard, self.sale.redis.sale_and_outbox(shard).await?));
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut outbox_oldest_age_ms = None;
        let mut outboxes = Vec::new();
        for (_, read) in &reads {
            let mut mine = Vec::new();
            for m in read.outbox.iter().filter(|m| m.activity_id == a.id) {
                outbox_oldest_age_ms = outbox_oldest_age_ms.max(Some((now_ms - m.created_at_ms).max(0)));
                mine.push(m.receipt.clone());
            }
            outboxes.push(mine);
        }
        let counts = self.sale.db.status_counts(a.id).await?;
        let all: Vec<String> = outboxes.iter().flatten().cloned().collect();
        let stored = self.sale.db.existing_receipts(&all).await?;
        let mut buckets: Vec<BucketReport> = Vec::new();
        for ((shard, read), outbox) in reads.iter().zip(&outboxes) {
            buckets.push(BucketReport {
                bucket: shard.bucket,
                stock: read.live.filter(|(id, _)| *id == a.id).map(|(_, stock)| stock),
                moving_out: self.sale.redis.in_transit(&read.moving).await?,
                outbox_pending: outbox.iter().filter(|r| !stored.contains(r)).count() as i64,
            });
        }
        let outbox_pending = buckets.iter().map(|b| b.outbox_pending).sum();
        // Every bucket must hold the activity for Redis' side to be known.
        let redis_stock = if buckets.iter().all(|b| b.stock.is_some()) {
            let stocks: Vec<i64> = buckets.iter().filter_map(|b| b.stock).collect();
            if stocks.contains(&UNLIMITED) {
                Some(UNLIMITED)
            } else {
                Some(stocks.iter().sum::<i64>() + buckets.iter().map(|b| b.moving_out).sum::<i64>())
            }
        } else {
            None
        };
        let balanced = match redis_stock {
            None => false,
            Some(_) if a.stock == UNLIMITED => redis_stock == Some(UNLIMITED),
            Some(stock) => stock + counts.pending_payment + counts.paid + outbox_pending == a.stock,
        };
        let unbalanced = if balanced { 0.0 } else { 1.0 };
        self.sale.metrics.emit(Event::new(Some(a.id)).add(Metric::ReconcileUnbalanced, unbalanced));
        Ok(Reconcile {
            activity_id: a.id,
            initial: a.stock,
            redis_stock,
            orders_pending_payment: counts.pending_payment,
            orders_paid: counts.paid,
            orders_cancelled: counts.cancelled,
            outbox_pending,
            dead_lettered: counts.failed,
            balanced,
            outbox_oldest_age_ms,
            buckets,
        })
    }
}
