//! Everything after the 202: the order consumer, the payment timeout, the payment and order
//! status, and the outbox retry. Each keeps invariants 1-5 under at-least-once delivery:
//! - the consumer's insert is idempotent on the receipt (unique key);
//! - cancel and pay are conditional updates on `pending_payment`, so exactly one wins;
//! - a unit comes back through `restore.lua`, once per receipt (the `restored` set);
//! - a dead letter and a late order race on the same unique receipt, so only one exists.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;

use crate::{
    db::{NewOrder, OrderRow},
    domain::{OrderMessage, OrderStatus, TimeoutMessage, to_ms},
    queue::Queue,
    sale::{Sale, SaleError},
    scripts::RestoreReply,
};

/// An SQS record as the pipeline needs it: its id (for the batch response) and its body.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub body: String,
}

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
                self.ensure_loaded(product_id).await?;
                Ok(self.redis.restore(product_id, activity_id, receipt).await?)
            }
            done => Ok(done),
        }
    }
}

/// `order-consumer`: SQS `orders` -> MySQL, then the payment timeout and the outbox ack.
pub struct OrderConsumer {
    pub sale: Sale,
    pub timeouts: Queue,
}

impl OrderConsumer {
    /// Processes one batch; returns the ids of the records that failed (and only those), for
    /// SQS to deliver again.
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    pub async fn consume(&self, records: &[Record]) -> Vec<String> {
        let mut failed = Vec::new();
        let mut messages: Vec<(&str, OrderMessage)> = Vec::new();
        for r in records {
            match serde_json::from_str::<OrderMessage>(&r.body) {
                Ok(m) => messages.push((&r.id, m)),
                Err(e) => {
                    tracing::error!(error = %e, id = %r.id, body = %r.body, "order message does not parse");
                    failed.push(r.id.clone());
                }
            }
        }
        if messages.is_empty() {
            return failed;
        }

        let mut activity_ids: Vec<u64> = messages.iter().map(|(_, m)| m.activity_id).collect();
        activity_ids.sort_unstable();
        activity_ids.dedup();
        let prices = match self.sale.db.activity_prices(&activity_ids).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %crate::api::error_chain(&e), "MySQL unavailable; the batch will be redelivered");
                failed.extend(messages.iter().map(|(id, _)| (*id).to_owned()));
                return failed;
            }
        };
        let pay_by = Utc::now() + chrono::Duration::from_std(self.sale.cfg.payment_window).unwrap_or_default();
        let mut rows: Vec<(&str, NewOrder)> = Vec::new();
        for (id, m) in messages {
            match prices.get(&m.activity_id) {
                Some(&price_cents) => rows.push((id, NewOrder { message: m, price_cents, pay_by })),
                None => {
                    tracing::error!(receipt = %m.receipt, activity_id = m.activity_id, "order for an unknown activity");
                    failed.push(id.to_owned());
                }
            }
        }

        // The whole batch in one statement; if that fails, row by row, so one bad message
        // cannot hold the others back.
        let batch: Vec<NewOrder> = rows.iter().map(|(_, o)| o.clone()).collect();
        let stored: Vec<(&str, NewOrder)> = match self.sale.db.insert_orders(&batch).await {
            Ok(()) => rows,
            Err(e) => {
                tracing::warn!(error = %crate::api::error_chain(&e), "batch insert failed; inserting one by one");
                let mut stored = Vec::new();
                for (id, order) in rows {
                    match self.sale.db.insert_orders(std::slice::from_ref(&order)).await {
                        Ok(()) => stored.push((id, order)),
                        Err(e) => {
                            tracing::error!(error = %crate::api::error_chain(&e), receipt = %order.message.receipt, "order insert failed");
                            failed.push(id.to_owned());
                        }
                    }
                }
                stored
            }
        };

        // The timeout for each stored order (also for a redelivered one: a second timeout
        // message is harmless, a missing one would leave the unit unpaid forever).
        let timeouts: Vec<(String, String)> = stored
            .iter()
            .map(|(id, o)| {
                let t = TimeoutMessage {
                    receipt: o.message.receipt.clone(),
                    activity_id: o.message.activity_id,
                    product_id: o.message.product_id,
                };
                ((*id).to_owned(), serde_json::to_string(&t).unwrap_or_default())
            })
            .collect();
        let unsent = self.timeouts.send_all(&timeouts, self.sale.cfg.payment_window).await;
        failed.extend(unsent.iter().cloned());

        // Ack the outbox for what is fully done. If the ack fails, outbox-retry resends the
        // message later and the consumer dedupes it: no need to fail the record.
        let mut by_product: HashMap<u64, Vec<&OrderMessage>> = HashMap::new();
        for (id, o) in &stored {
            if !unsent.iter().any(|u| u == id) {
                by_product.entry(o.message.product_id).or_default().push(&o.message);
            }
        }
        for (product_id, orders) in by_product {
            match self.sale.redis.ack_outbox(product_id, &orders).await {
                Ok((0, 0)) => {}
                Ok((adopted, oversold)) => {
                    tracing::warn!(product_id, adopted, "orders the live sale had lost (Redis rebuilt) adopted");
                    if oversold > 0 {
                        tracing::error!(product_id, oversold, "units handed out twice after Redis lost its data");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, product_id, "outbox ack failed; entries will be resent and deduplicated")
                }
            }
        }
        failed
    }
}

/// What a payment timeout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Cancelled now or by an earlier attempt; the unit's restore is `RestoreReply`.
    Cancelled(RestoreReply),
    /// Paid (or failed) before the timeout: nothing to do.
    Untouched,
    /// No such order (should not happen: the timeout is sent after the insert).
    UnknownOrder,
}

/// `payment-timeout`: cancels an unpaid order and restores its unit, once.
pub struct PaymentTimeouts {
    pub sale: Sale,
}

impl PaymentTimeouts {
    #[tracing::instrument(skip(self), fields(receipt = %msg.receipt), err)]
    pub async fn expire(&self, msg: &TimeoutMessage) -> Result<Expired, SaleError> {
        if !self.sale.db.cancel_if_pending(&msg.receipt).await? {
            // Not cancelled by this call: paid, or cancelled by an attempt that may have
            // crashed before restoring (the restore below is idempotent).
            match self.sale.db.order(&msg.receipt).await? {
                Some(o) if o.status == OrderStatus::Cancelled => {}
                Some(_) => return Ok(Expired::Untouched),
                None => {
                    tracing::warn!(receipt = %msg.receipt, "timeout for an order that does not exist");
                    return Ok(Expired::UnknownOrder);
                }
            }
        }
        let restored = self.sale.restore_unit(msg.product_id, msg.activity_id, &msg.receipt).await?;
        tracing::info!(receipt = %msg.receipt, ?restored, "unpaid order cancelled");
        Ok(Expired::Cancelled(restored))
    }

    /// One batch; returns the ids of failed records.
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
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %crate::api::error_chain(&e), receipt = %msg.receipt, "timeout failed; will be redelivered");
                    Some(r.id.clone())
                }
            }
        });
        futures::future::join_all(work).await.into_iter().flatten().collect()
    }
}

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

/// The product id a receipt names (`{activity}-{product}-{user}-{n}`), if it is well formed.
pub fn receipt_product(receipt: &str) -> Option<u64> {
    if receipt.is_empty() || receipt.len() > 255 {
        return None;
    }
    let mut parts = receipt.splitn(3, '-');
    let activity = parts.next()?;
    let product = parts.next()?;
    let rest = parts.next()?;
    if !activity.bytes().all(|b| b.is_ascii_digit()) || rest.rsplit_once('-').is_none() {
        return None;
    }
    product.parse().ok().filter(|id| crate::domain::valid_id(*id))
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

/// What one `outbox-retry` run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    pub products: usize,
    pub claimed: usize,
    pub resent: usize,
    pub send_failed: usize,
    pub dead_lettered: usize,
    pub delivered_after_all: usize,
}

/// `outbox-retry`: resends outbox entries nobody acknowledged; dead-letters after the cap.
pub struct OutboxRetry {
    pub sale: Sale,
    pub orders: Queue,
}

impl OutboxRetry {
    #[tracing::instrument(skip(self), err)]
    pub async fn run(&self) -> Result<RetryReport, SaleError> {
        let now = Utc::now();
        let cfg = &self.sale.cfg;
        let products = self.sale.db.recent_products(now, cfg.horizon).await?;
        let mut report = RetryReport { products: products.len(), ..Default::default() };
        for product_id in products {
            let claims =
                self.sale.redis.claim_due(product_id, to_ms(now), cfg.outbox_backoff, cfg.outbox_claim_batch).await?;
            report.claimed += claims.len();
            let mut resend = Vec::new();
            for c in claims {
                if c.attempts <= cfg.outbox_max_attempts {
                    resend.push((c.receipt, c.message));
                    continue;
                }
                match serde_json::from_str::<OrderMessage>(&c.message) {
                    Ok(m) => match self.dead_letter(&m, &c.message, c.attempts).await {
                        Ok(true) => report.dead_lettered += 1,
                        Ok(false) => report.delivered_after_all += 1,
                        Err(e) => {
                            tracing::error!(error = %crate::api::error_chain(&e), receipt = %c.receipt, "dead-lettering failed; next run retries")
                        }
                    },
                    Err(e) => tracing::error!(error = %e, receipt = %c.receipt, "outbox entry does not parse"),
                }
            }
            let failed = self.orders.send_all(&resend, Duration::ZERO).await;
            report.send_failed += failed.len();
            report.resent += resend.len() - failed.len();
        }
        tracing::info!(?report, "outbox retry run");
        Ok(report)
    }

    /// The purchase becomes `failed` and its unit comes back, unless its order exists after
    /// all, in which case only the outbox entry goes.
    async fn dead_letter(&self, m: &OrderMessage, payload: &str, attempts: u32) -> Result<bool, SaleError> {
        let reason = format!("order message not acknowledged after {} resends", attempts - 1);
        if self.sale.db.insert_failed(m, payload, &reason, attempts - 1).await? {
            tracing::warn!(receipt = %m.receipt, attempts, "purchase dead-lettered; unit restored");
            self.sale.restore_unit(m.product_id, m.activity_id, &m.receipt).await?;
            Ok(true)
        } else {
            self.sale.redis.ack_outbox(m.product_id, &[m]).await?;
            Ok(false)
        }
    }
}

/// The records of an SQS event as the pipeline reads them.
pub fn records(event: &aws_lambda_events::event::sqs::SqsEvent) -> Vec<Record> {
    event
        .records
        .iter()
        .map(|m| Record { id: m.message_id.clone().unwrap_or_default(), body: m.body.clone().unwrap_or_default() })
        .collect()
}

/// The partial batch response: only the failed records go back to the queue.
pub fn batch_response(failed: Vec<String>) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    let mut response = aws_lambda_events::event::sqs::SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_name_their_product() {
        assert_eq!(receipt_product("3-7-alice-100"), Some(7));
        assert_eq!(receipt_product("3-7-user-with-dashes-u12"), Some(7));
        assert_eq!(receipt_product("3-7-alice"), None);
        assert_eq!(receipt_product("x-7-alice-1"), None);
        assert_eq!(receipt_product("3-0-alice-1"), None);
        assert_eq!(receipt_product(""), None);
    }
}
