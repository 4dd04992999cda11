//! The reconcile report of DESIGN.md: invariant 1 for one activity, from Redis and MySQL.

use serde::Serialize;

use super::{Admin, AdminError};
use crate::{
    domain::UNLIMITED,
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
}

impl Admin {
    /// Invariant 1 for one activity. Redis (stock and outbox, atomically) is read before MySQL,
    /// as the consumer writes a row before it removes the outbox entry.
    #[tracing::instrument(skip(self), err)]
    pub async fn reconcile(&self, activity_id: u64) -> Result<Reconcile, AdminError> {
        let a = self.sale.db.activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let read = self.sale.redis.sale_and_outbox(a.product_id).await?;
        let live = read.live;
        let mine: Vec<_> = read.outbox.into_iter().filter(|m| m.activity_id == a.id).collect();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let outbox_oldest_age_ms = mine.iter().map(|m| (now_ms - m.created_at_ms).max(0)).max();
        let outbox: Vec<String> = mine.into_iter().map(|m| m.receipt).collect();
        let counts = self.sale.db.status_counts(a.id).await?;
        let stored = self.sale.db.existing_receipts(&outbox).await?;
        let outbox_pending = outbox.iter().filter(|r| !stored.contains(r)).count() as i64;
        let redis_stock = live.filter(|(id, _)| *id == a.id).map(|(_, stock)| stock);
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
        })
    }
}
