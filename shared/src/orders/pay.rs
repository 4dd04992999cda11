//! `GET /orders/{receipt}` and `POST /orders/{receipt}/pay`: the owner's order status and the
//! payment (the interface a payment provider would call).

use super::receipts::receipt_product;
use crate::{
    domain::{DeadLetter, KnownOrder, OrderRow, OrderStatus},
    sale::{Sale, SaleError},
    telemetry::{
        error_chain,
        metrics::{Event, Metric},
    },
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

impl From<KnownOrder> for OrderView {
    fn from(known: KnownOrder) -> Self {
        match known {
            KnownOrder::Stored(o) => Self::Stored(o),
            KnownOrder::Failed(d) => Self::Failed(d),
        }
    }
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
    ///
    /// From Redis, where the pipeline keeps each order's status as it changes
    /// ([`crate::redis::order_status`]); MySQL only when Redis has no final answer: no entry
    /// (Redis lost it, or the sale's keys expired), or a pending entry whose `pay_by` has passed
    /// (by this instance's clock: the cancellation itself is MySQL's decision, and this only
    /// decides where to read it). What MySQL says is then kept for the next poll.
    #[tracing::instrument(skip(self), err)]
    pub async fn lookup(&self, user: &str, receipt: &str) -> Result<Option<OrderView>, SaleError> {
        let Some(product_id) = self.listed_product(receipt).await? else { return Ok(None) };
        // The status and the outbox entry are read in one step: the consumer writes the row,
        // keeps its status, then removes the entry, so a written purchase is in one of the two
        // (or, if keeping the status failed, in MySQL).
        let (kept, pending) = self.sale.redis.order_status(product_id, receipt).await?;
        if let Some(known) = kept
            && (known.is_final() || matches!(&known, KnownOrder::Stored(o) if o.pay_by > chrono::Utc::now()))
        {
            return Ok((known.user_id() == user).then(|| known.into()));
        }
        // Still in the outbox: bought, not yet acknowledged as a row (at most a moment stale
        // if the row is in and the consumer's acknowledgement is under way).
        if let Some(m) = pending {
            return Ok((m.user_id == user)
                .then_some(OrderView::Processing { receipt: m.receipt, created_at_ms: m.created_at_ms }));
        }
        let known = match self.sale.db.order(receipt).await? {
            Some(o) => KnownOrder::Stored(o),
            None => match self.sale.db.dead_letter(receipt).await? {
                Some(d) => KnownOrder::Failed(d),
                None => return Ok(None),
            },
        };
        self.keep(product_id, known.clone()).await;
        Ok((known.user_id() == user).then(|| known.into()))
    }

    /// Keeps an order's status for the next poll; a failure costs only a later MySQL read. If a
    /// final status cannot be written, the entry is dropped if it can be (else a kept pending
    /// entry stands until its `pay_by`, when readers stop trusting it).
    async fn keep(&self, product_id: u64, known: KnownOrder) {
        let receipt = known.receipt().to_owned();
        let is_final = known.is_final();
        if let Err(e) = self.sale.redis.keep_order_status(product_id, &[known], self.sale.cfg.retention).await {
            tracing::warn!(error = %error_chain(&e), product_id, %receipt, "order status not kept in Redis; the next poll reads MySQL");
            if is_final && let Err(e) = self.sale.redis.forget_order_status(product_id, &receipt).await {
                tracing::warn!(error = %error_chain(&e), product_id, %receipt, "kept order status not dropped either");
            }
        }
    }

    /// Pays the caller's order. The payment and the answer come from one MySQL transaction;
    /// what is read before it (the bloom filter, and Redis when there is no row yet) changes
    /// nothing, so a 503 always means nothing was paid.
    #[tracing::instrument(skip(self), err)]
    pub async fn pay(&self, user: &str, receipt: &str) -> Result<PayOutcome, SaleError> {
        let Some(product_id) = self.listed_product(receipt).await? else { return Ok(PayOutcome::NotFound) };
        match self.sale.db.pay(receipt, user).await? {
            Some((o, _)) if o.user_id != user => Ok(PayOutcome::NotFound),
            Some((o, paid_now)) if o.status == OrderStatus::Paid => {
                if paid_now {
                    tracing::info!(receipt, user, "order paid");
                    self.sale.metrics.emit(Event::new(Some(o.activity_id)).add(Metric::Payments, 1.0));
                }
                // After the commit, and never a reason to answer otherwise than paid.
                self.keep(product_id, KnownOrder::Stored(o.clone())).await;
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
