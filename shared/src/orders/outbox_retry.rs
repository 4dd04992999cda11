//! `outbox-retry` (scheduled, every minute): resends outbox entries nobody acknowledged, and
//! dead-letters a purchase only when the queue accepted it `outbox_max_attempts` times and the
//! consumer never took it, or when it is older than `outbox_max_age`. A send that fails (SQS
//! unreachable) is not an attempt. Each run drains the backlog within its time budget (claims
//! of `outbox_claim_batch`, SendMessageBatch of ten, batches concurrently), a product's failure
//! does not stop the others, and a product is visited until its outbox is empty. The run ends
//! with the [`sweep`](super::sweep).

use std::time::{Duration, Instant};

use chrono::Utc;

use super::sweep::{SweepReport, sweep};
use crate::{
    domain::{OrderMessage, Shard},
    sale::{Sale, SaleError},
    sqs::Queue,
    telemetry::{
        error_chain,
        metrics::{Event, Metric},
    },
};

/// What one `outbox-retry` run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    pub products: usize,
    /// Products whose visit failed (Redis or MySQL error); the next run visits them again.
    pub products_failed: usize,
    pub claimed: usize,
    pub resent: usize,
    pub send_failed: usize,
    pub dead_lettered: usize,
    pub delivered_after_all: usize,
    /// Products still holding entries when the run's time budget ran out.
    pub unfinished: usize,
    /// Entries left in the outboxes after the run (not yet acknowledged by the consumer).
    pub pending: u64,
    /// Moves between stock buckets that a dead refill left half done, finished by this run.
    pub moves_finished: u64,
    /// Age of the oldest entry this run claimed (every entry unacknowledged for longer than
    /// `OUTBOX_RETRY_AFTER_SECS` is claimed at least once per backoff), in milliseconds.
    pub oldest_age_ms: i64,
    pub sweep: SweepReport,
}

/// `outbox-retry`: resends outbox entries nobody acknowledged; dead-letters after the cap.
pub struct OutboxRetry {
    pub sale: Sale,
    pub orders: Queue,
}

impl OutboxRetry {
    #[tracing::instrument(skip(self), err)]
    pub async fn run(&self) -> Result<RetryReport, SaleError> {
        let started = Instant::now();
        let cfg = &self.sale.cfg;
        // Products of recent activities (an entry older than `outbox_max_age` is dead-lettered,
        // so older activities have none unless a run could not finish them: those are on the
        // list an earlier run left in Redis).
        let since = cfg.horizon.max(cfg.outbox_max_age + Duration::from_secs(3600));
        // Every bucket of a recent activity's sale, and the shards an earlier run left.
        let recent = self.sale.db.recent_activities(Utc::now(), since).await?;
        let mut products: Vec<Shard> = Vec::new();
        for &(product_id, _, buckets) in &recent {
            products.extend(Shard::all(product_id, buckets));
        }
        products.extend(self.sale.redis.outbox_products().await?);
        products.sort_unstable_by_key(Shard::label);
        products.dedup_by_key(|s| s.label());
        let mut report = RetryReport { products: products.len(), ..Default::default() };
        let deadline = started + cfg.outbox_run_budget;
        for shard in products {
            // Boxed: keeps this future's type shallow (a drain reaches the rebuild and the bloom refill).
            if let Err(e) = Box::pin(self.drain(shard, deadline, &mut report)).await {
                report.products_failed += 1;
                let product_id = shard.product_id;
                tracing::error!(error = %error_chain(&e), product_id, bucket = shard.bucket, "outbox retry failed for this product; the next run retries it");
            }
        }
        // Moves a dead refill left half done (sale::rebalance): their units sell again.
        for &(product_id, activity_id, buckets) in recent.iter().filter(|(_, _, n)| *n > 1) {
            match self.sale.recover_moves(product_id, buckets, activity_id).await {
                Ok(n) => report.moves_finished += n,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), product_id, "unfinished moves not finished; the next run retries")
                }
            }
        }
        report.sweep = sweep(&self.sale).await?;
        self.sale.metrics.emit(
            Event::new(None)
                .add(Metric::OutboxPending, report.pending as f64)
                .add(Metric::OutboxOldestAge, report.oldest_age_ms as f64 / 1000.0),
        );
        tracing::info!(?report, elapsed_ms = started.elapsed().as_millis() as u64, "outbox retry run");
        Ok(report)
    }

    /// Resends everything due in one product's outbox, claim after claim, until nothing is due
    /// or the run's budget is spent; then records whether the outbox still has entries.
    async fn drain(&self, product_id: Shard, deadline: Instant, report: &mut RetryReport) -> Result<(), SaleError> {
        let cfg = &self.sale.cfg;
        let max_age_ms = cfg.outbox_max_age.as_millis() as i64;
        loop {
            if Instant::now() >= deadline {
                report.unfinished += 1;
                break;
            }
            let claim = self.sale.redis.claim_due(product_id, cfg.outbox_backoff, cfg.outbox_claim_batch).await?;
            let full = claim.entries.len() as u32 >= cfg.outbox_claim_batch;
            report.claimed += claim.entries.len();
            let mut resend = Vec::new();
            for c in claim.entries {
                let m = match serde_json::from_str::<OrderMessage>(&c.message) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(error = %e, receipt = %c.receipt, entry = %c.message, "outbox entry does not parse; left for an operator");
                        continue;
                    }
                };
                report.oldest_age_ms = report.oldest_age_ms.max(claim.now_ms - m.created_at_ms);
                let reason = if c.attempts >= cfg.outbox_max_attempts {
                    Some(format!(
                        "the queue accepted the order message {} times and the consumer never took it",
                        c.attempts
                    ))
                } else if claim.now_ms - m.created_at_ms > max_age_ms {
                    Some(format!(
                        "the order message was not delivered within {} h",
                        cfg.outbox_max_age.as_secs() / 3600
                    ))
                } else {
                    None
                };
                let Some(reason) = reason else {
                    resend.push((c.receipt, c.message));
                    continue;
                };
                match self.dead_letter(&m, &c.message, &reason, c.attempts).await {
                    Ok(true) => {
                        report.dead_lettered += 1;
                        self.sale.metrics.emit(Event::new(Some(m.activity_id)).add(Metric::DeadLetters, 1.0));
                    }
                    Ok(false) => report.delivered_after_all += 1,
                    Err(e) => {
                        tracing::error!(error = %error_chain(&e), receipt = %c.receipt, "dead-lettering failed; next run retries")
                    }
                }
            }
            let failed = self.orders.send_all(&resend, Duration::ZERO).await;
            report.send_failed += failed.len();
            let accepted: Vec<String> = resend.into_iter().map(|(r, _)| r).filter(|r| !failed.contains(r)).collect();
            report.resent += accepted.len();
            self.sale.redis.record_sent(product_id, &accepted).await?;
            if !full {
                break;
            }
        }
        report.pending += self.sale.redis.track_outbox(product_id).await?;
        Ok(())
    }

    /// The purchase becomes `failed` and its unit comes back, unless its order exists after
    /// all, in which case only the outbox entry goes.
    #[tracing::instrument(skip(self, m, payload), fields(receipt = %m.receipt), err)]
    async fn dead_letter(
        &self,
        m: &OrderMessage,
        payload: &str,
        reason: &str,
        attempts: u32,
    ) -> Result<bool, SaleError> {
        if self.sale.db.insert_failed(m, payload, reason, attempts).await? {
            tracing::warn!(receipt = %m.receipt, attempts, reason, "purchase dead-lettered; unit restored");
            self.sale.give_back(m.product_id, m.activity_id, &m.receipt).await?;
            Ok(true)
        } else if self.sale.db.order(&m.receipt).await?.is_some() {
            self.sale.redis.ack_outbox(m.product_id, &[m]).await?;
            Ok(false)
        } else {
            // Not this receipt's row: its buyer's other order holds the one-per-user key.
            super::consumer::reject_second_order(&self.sale, m).await?;
            Ok(true)
        }
    }
}
