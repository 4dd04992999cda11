//! `GET /orders/{receipt}` and `POST /orders/{receipt}/pay`: the owner's order status and the
//! payment (the interface a payment provider would call).

use super::receipts::receipt_product;
use crate::{
    domain::{OrderRow, OrderStatus},
    sale::{Sale, SaleError},
};

/// Order status as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderView {
    /// Bought (202) but not yet written to MySQL.
    Processing {
        receipt: String,
        created_at_ms: i64,
    },
    Stored(OrderRow),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    Paid(OrderRow),
    NotFound,
    NotReady,
    /// Cancelled, failed, or past its `pay_by`.
    Cancelled,
}

/// `GET /orders/{receipt}` and `POST /orders/{receipt}/pay`.
pub struct Orders {
    pub sale: Sale,
}

impl Orders {
    /// The caller's order. Another user's receipt reads as not found.
    #[tracing::instrument(skip(self), err)]
    pub async fn lookup(&self, user: &str, receipt: &str) -> Result<Option<OrderView>, SaleError> {
        let Some(product_id) = receipt_product(receipt) else { return Ok(None) };
        // The outbox is read before MySQL: the consumer writes the row before it removes the
        // entry, so a purchase missing from the first read is in the second.
        let pending = self.sale.redis.outbox_entry(product_id, receipt).await?;
        if let Some(o) = self.sale.db.order(receipt).await? {
            return Ok((o.user_id == user).then_some(OrderView::Stored(o)));
        }
        Ok(pending
            .filter(|m| m.user_id == user)
            .map(|m| OrderView::Processing { receipt: m.receipt, created_at_ms: m.created_at_ms }))
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn pay(&self, user: &str, receipt: &str) -> Result<PayOutcome, SaleError> {
        if receipt_product(receipt).is_none() {
            return Ok(PayOutcome::NotFound);
        }
        if self.sale.db.pay_if_pending(receipt, user).await? {
            tracing::info!(receipt, user, "order paid");
        }
        Ok(match self.lookup(user, receipt).await? {
            None => PayOutcome::NotFound,
            Some(OrderView::Processing { .. }) => PayOutcome::NotReady,
            Some(OrderView::Stored(o)) if o.status == OrderStatus::Paid => PayOutcome::Paid(o),
            Some(OrderView::Stored(_)) => PayOutcome::Cancelled,
        })
    }
}
