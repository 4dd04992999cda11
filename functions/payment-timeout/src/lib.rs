//! `payment-timeout` (SQS `payment-timeouts`, delayed by the payment window): cancels an order
//! still unpaid with a conditional update and restores its unit exactly once.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::{config::CoreConfig, lambda, orders::PaymentTimeouts, sale};

/// Redis, MySQL and the sale's knobs; nothing else.
pub type Config = CoreConfig;

pub async fn build(cfg: &Config) -> Result<PaymentTimeouts, Error> {
    Ok(PaymentTimeouts { sale: sale::connect(cfg, "payment-timeout").await? })
}

pub async fn handler(timeouts: &PaymentTimeouts, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    // Boxed: the batch future is deep enough to overflow the compiler's layout depth inline.
    let records = lambda::records(&event.payload);
    let failed = timeouts.sale.metrics.invocation(Box::pin(timeouts.consume(&records))).await;
    Ok(lambda::batch_response(failed))
}
