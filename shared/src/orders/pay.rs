//! `GET /orders/{receipt}` and `POST /orders/{receipt}/pay`: the owner's order status and the
//! payment (the interface a payment provider would call).

use super::receipts::receipt_product;
use crate::{
    domain::{DeadLetter, OrderRow, OrderStatus},
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
    /// A purchase that failed without an order row (its buyer already had another order for
    /// the activity); its unit went back to the sale.
    Failed(DeadLetter),
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
    /// The product a receipt names, if the bloom filter says it may exist: a receipt naming an
    /// unknown product never reaches MySQL (invariant 7).
    async fn listed_product(&self, receipt: &str) -> Result<Option<u64>, SaleError> {
        let Some(product_id) = receipt_product(receipt) else { return Ok(None) };
        Ok(self.sale.product_may_exist(product_id).await?.then_some(product_id))
    }

    /// The caller's order. Another user's receipt reads as not found.
    #[tracing::instrument(skip(self), err)]
    pub async fn lookup(&self, user: &str, receipt: &str) -> Result<Option<OrderView>, SaleError> {
        let Some(product_id) = self.listed_product(receipt).await? else { return Ok(None) };
        // The outbox is read before MySQL: the consumer writes the row before it removes the
        // entry, so a purchase missing from the first read is in the second.
        let pending = self.sale.redis.outbox_entry(product_id, receipt).await?;
        if let Some(o) = self.sale.db.order(receipt).await? {
            return Ok((o.user_id == user).then_some(OrderView::Stored(o)));
        }
        if let Some(m) = pending {
            return Ok((m.user_id == user)
                .then_some(OrderView::Processing { receipt: m.receipt, created_at_ms: m.created_at_ms }));
        }
        Ok(self.sale.db.dead_letter(receipt).await?.filter(|d| d.user_id == user).map(OrderView::Failed))
    }

    /// Pays the caller's order. The payment and the answer come from one MySQL transaction;
    /// what is read before it (the bloom filter, and Redis when there is no row yet) changes
    /// nothing, so a 503 always means nothing was paid.
    #[tracing::instrument(skip(self), err)]
    pub async fn pay(&self, user: &str, receipt: &str) -> Result<PayOutcome, SaleError> {
        if self.listed_product(receipt).await?.is_none() {
            return Ok(PayOutcome::NotFound);
        }
        match self.sale.db.pay(receipt, user).await? {
            Some((o, _)) if o.user_id != user => Ok(PayOutcome::NotFound),
            Some((o, paid_now)) if o.status == OrderStatus::Paid => {
                if paid_now {
                    tracing::info!(receipt, user, "order paid");
                }
                Ok(PayOutcome::Paid(o))
            }
            Some(_) => Ok(PayOutcome::Cancelled),
            None => Ok(match self.lookup(user, receipt).await? {
                None => PayOutcome::NotFound,
                Some(OrderView::Processing { .. }) => PayOutcome::NotReady,
                Some(OrderView::Stored(_) | OrderView::Failed(_)) => PayOutcome::Cancelled,
            }),
        }
    }
}
