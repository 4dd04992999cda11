//! `outbox-retry`: resends outbox entries nobody acknowledged; dead-letters after the cap.

use std::time::Duration;

use chrono::Utc;

use crate::{
    domain::{OrderMessage, to_ms},
    sale::{Sale, SaleError},
    sqs::Queue,
    telemetry::error_chain,
};

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
                            tracing::error!(error = %error_chain(&e), receipt = %c.receipt, "dead-lettering failed; next run retries")
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
    #[tracing::instrument(skip(self, m, payload), fields(receipt = %m.receipt), err)]
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
