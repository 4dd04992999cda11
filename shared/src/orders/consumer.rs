//! `order-consumer`: a batch of order messages becomes order rows (one statement, row by row
//! on failure), then each order's payment timeout is sent and the outbox acknowledged.

use std::collections::HashMap;

use crate::{
    domain::{KnownOrder, NewOrder, OrderMessage, OrderRow, Record, TimeoutMessage},
    sale::{Sale, SaleError},
    sqs::Queue,
    telemetry::{
        error_chain,
        metrics::{Event, Metric},
    },
};

/// A second purchase by a buyer who already has an order for the activity (Redis lost the
/// first and sold again): it becomes a failed purchase, a dead letter without an order row
/// (the one-per-user key keeps the first), and its unit comes back. Logged as an error: it
/// means a unit was handed out twice to one buyer. Safe to redo.
pub(crate) async fn reject_second_order(sale: &Sale, m: &OrderMessage) -> Result<(), SaleError> {
    let payload = serde_json::to_string(m).unwrap_or_default();
    let reason = "the buyer already has another order for this activity (one per user)";
    if sale.db.insert_dead_letter(m, &payload, reason).await? {
        tracing::error!(receipt = %m.receipt, user = %m.user_id, activity_id = m.activity_id, "second order for one buyer; failed and its unit restored");
    }
    sale.give_back(m.product_id, m.activity_id, &m.receipt).await?;
    Ok(())
}

/// `OrdersWritten` and `PipelineLag` (purchase to order row) by activity. A redelivered
/// message counts again: SQS delivers at least once and the insert does not say which rows
/// were new.
fn record_written(sale: &Sale, stored: &[(&str, NewOrder)]) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut by_activity: std::collections::BTreeMap<u64, Event> = std::collections::BTreeMap::new();
    for (_, o) in stored {
        let m = &o.message;
        let event = by_activity.entry(m.activity_id).or_insert_with(|| Event::new(Some(m.activity_id)));
        event.push(Metric::OrdersWritten, 1.0);
        event.push(Metric::PipelineLag, (now_ms - m.created_at_ms).max(0) as f64);
    }
    for event in by_activity.into_values() {
        sale.metrics.emit(event);
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
                tracing::error!(error = %error_chain(&e), "MySQL unavailable; the batch will be redelivered");
                failed.extend(messages.iter().map(|(id, _)| (*id).to_owned()));
                return failed;
            }
        };
        let mut rows: Vec<(&str, NewOrder)> = Vec::new();
        for (id, m) in messages {
            match prices.get(&m.activity_id) {
                Some(&price_cents) => {
                    rows.push((id, NewOrder { message: m, price_cents, payment_window: self.sale.cfg.payment_window }))
                }
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
                tracing::warn!(error = %error_chain(&e), "batch insert failed; inserting one by one");
                let mut stored = Vec::new();
                for (id, order) in rows {
                    match self.sale.db.insert_orders(std::slice::from_ref(&order)).await {
                        Ok(()) => stored.push((id, order)),
                        Err(e) => {
                            tracing::error!(error = %error_chain(&e), receipt = %order.message.receipt, "order insert failed");
                            failed.push(id.to_owned());
                        }
                    }
                }
                stored
            }
        };

        // A receipt the idempotent insert did not store lost to the one-per-user key: its buyer
        // already has another order for the activity (possible only after Redis lost data).
        let receipts: Vec<String> = stored.iter().map(|(_, o)| o.message.receipt.clone()).collect();
        let rows: HashMap<String, OrderRow> = match self.sale.db.orders_by_receipt(&receipts).await {
            Ok(rows) => rows.into_iter().map(|o| (o.receipt.clone(), o)).collect(),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "MySQL unavailable after the insert; the batch will be redelivered");
                failed.extend(stored.iter().map(|(id, _)| (*id).to_owned()));
                return failed;
            }
        };
        let (stored, second_orders): (Vec<_>, Vec<_>) =
            stored.into_iter().partition(|(_, o)| rows.contains_key(&o.message.receipt));
        for (id, o) in second_orders {
            if let Err(e) = reject_second_order(&self.sale, &o.message).await {
                tracing::error!(error = %error_chain(&e), receipt = %o.message.receipt, "could not fail a second order; redelivered");
                failed.push(id.to_owned());
            }
        }

        record_written(&self.sale, &stored);

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
            // The status the buyer polls, from the rows just read (a pending one never replaces
            // a final one: see redis::order_status).
            let known: Vec<KnownOrder> =
                orders.iter().filter_map(|m| rows.get(&m.receipt)).cloned().map(KnownOrder::Stored).collect();
            if let Err(e) = self.sale.redis.keep_order_status(product_id, &known, self.sale.cfg.retention).await {
                tracing::warn!(error = %error_chain(&e), product_id, "order statuses not kept in Redis; polls read MySQL");
            }
            match self.sale.redis.ack_outbox(product_id, &orders).await {
                Ok(r) if r.adopted == 0 && r.oversold == 0 => {}
                Ok(crate::redis::scripts::ack::AckReply { adopted, oversold }) => {
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
