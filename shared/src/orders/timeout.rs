//! `payment-timeout`: cancels an unpaid order and restores its unit, once.

use crate::{
    domain::{OrderStatus, Record, TimeoutMessage},
    redis::scripts::restore::RestoreReply,
    sale::{Sale, SaleError},
    telemetry::{
        error_chain,
        metrics::{Event, Metric},
    },
};

/// What a payment timeout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Cancelled now or by an earlier attempt; the unit's restore is `RestoreReply`.
    Cancelled(RestoreReply),
    /// Paid (or failed) before the timeout: nothing to do.
    Untouched,
    /// No such order (should not happen: the timeout is sent after the insert).
    UnknownOrder,
    /// Still unpaid but not yet past `pay_by` by MySQL's clock (the message came early): the
    /// record fails, so SQS delivers it again later (and the sweep is there regardless).
    NotDue,
}

/// `payment-timeout`: cancels an unpaid order and restores its unit, once.
pub struct PaymentTimeouts {
    pub sale: Sale,
}

impl PaymentTimeouts {
    #[tracing::instrument(skip(self), fields(receipt = %msg.receipt), err)]
    pub async fn expire(&self, msg: &TimeoutMessage) -> Result<Expired, SaleError> {
        if self.sale.db.cancel_if_pending(&msg.receipt).await? {
            self.sale.metrics.emit(Event::new(Some(msg.activity_id)).add(Metric::Cancellations, 1.0));
        } else {
            // Not cancelled by this call: paid, or cancelled by an attempt that may have
            // crashed before restoring (the restore below is idempotent).
            match self.sale.db.order(&msg.receipt).await? {
                Some(o) if o.status == OrderStatus::Cancelled => {}
                Some(o) if o.status == OrderStatus::PendingPayment => return Ok(Expired::NotDue),
                Some(_) => return Ok(Expired::Untouched),
                None => {
                    tracing::warn!(receipt = %msg.receipt, "timeout for an order that does not exist");
                    return Ok(Expired::UnknownOrder);
                }
            }
        }
        let restored = self.sale.give_back(msg.product_id, msg.activity_id, &msg.receipt).await?;
        tracing::info!(receipt = %msg.receipt, ?restored, "unpaid order cancelled");
        Ok(Expired::Cancelled(restored))
    }

    /// One batch; returns the ids of failed records.
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    pub async fn consume(&self, records: &[Record]) -> Vec<String> {
        let work = records.iter().map(|r| async move {
            let msg = match serde_json::from_str::<TimeoutMessage>(&r.body) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, id = %r.id, body = %r.body, "timeout message does not parse");
                    return Some(r.id.clone());
                }
            };
            match self.expire(&msg).await {
                Ok(Expired::NotDue) => {
                    tracing::info!(receipt = %msg.receipt, "timeout came before pay_by; delivered again later");
                    Some(r.id.clone())
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), receipt = %msg.receipt, "timeout failed; will be redelivered");
                    Some(r.id.clone())
                }
            }
        });
        futures::future::join_all(work).await.into_iter().flatten().collect()
    }
}
