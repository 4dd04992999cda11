//! The sweep (run by the scheduled `outbox-retry`): nothing after the 202 depends on a single
//! SQS message arriving or a single run finishing.
//! - An unpaid order more than `sweep_grace` past its `pay_by` (MySQL's clock) is cancelled,
//!   whatever became of its payment-timeout message (it may be in the DLQ).
//! - A cancelled or failed purchase whose unit's return is not recorded (`unit_restored = 0`:
//!   the run that committed it died, or Redis was away) gets it back, once (the `restored` set).

use futures::StreamExt;

use crate::{
    sale::{Sale, SaleError},
    telemetry::error_chain,
};

/// Rows one sweep looks at per step; the next run takes the rest.
const SWEEP_BATCH: u32 = 500;
/// Restores in flight at once.
const PARALLEL: usize = 16;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Unpaid orders past `pay_by` + grace, cancelled by the sweep.
    pub cancelled: u64,
    /// Units given back (and recorded) by the sweep.
    pub restored: usize,
    /// Restores that failed this time (the next run retries them).
    pub restore_failed: usize,
}

/// One sweep: cancels what is overdue, then redoes every unrecorded unit return.
#[tracing::instrument(skip(sale), err)]
pub async fn sweep(sale: &Sale) -> Result<SweepReport, SaleError> {
    let mut report = SweepReport {
        cancelled: sale.db.cancel_overdue(sale.cfg.sweep_grace, SWEEP_BATCH).await?,
        ..Default::default()
    };
    if report.cancelled > 0 {
        tracing::warn!(
            cancelled = report.cancelled,
            "unpaid orders past pay_by cancelled by the sweep (their timeouts did not)"
        );
    }
    let returned = sale.db.units_to_restore(SWEEP_BATCH).await?;
    let results: Vec<bool> = futures::stream::iter(returned)
            .map(|r| async move {
                match sale.give_back(r.product_id, r.activity_id, &r.receipt).await {
                    Ok(reply) => {
                        tracing::info!(receipt = %r.receipt, ?reply, "unit return redone by the sweep");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), receipt = %r.receipt, "restore failed; the next sweep retries");
                        false
                    }
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
    report.restored = results.iter().filter(|ok| **ok).count();
    report.restore_failed = results.len() - report.restored;
    Ok(report)
}
