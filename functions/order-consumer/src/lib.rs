//! `order-consumer` (SQS `orders`): idempotent batch insert into MySQL, then each order's
//! payment timeout and the outbox ack. Reports only the failed records (partial batch
//! response), so one bad message never blocks its batch.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::{
    config::{self, ConfigError, CoreConfig, SqsConfig},
    lambda,
    orders::OrderConsumer,
    sale,
    sqs::{self, Queue},
};

#[derive(Debug, Clone)]
pub struct Config {
    pub core: CoreConfig,
    pub sqs: SqsConfig,
    pub payment_timeouts_queue_url: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            core: CoreConfig::from_env()?,
            sqs: SqsConfig::sqs_from_env()?,
            payment_timeouts_queue_url: config::payment_timeouts_queue_url()?,
        })
    }
}

pub async fn build(cfg: &Config) -> Result<OrderConsumer, Error> {
    Ok(OrderConsumer {
        sale: sale::connect(&cfg.core, "order-consumer").await?,
        timeouts: Queue::new(sqs::client(&cfg.sqs).await, cfg.payment_timeouts_queue_url.clone()),
    })
}

pub async fn handler(consumer: &OrderConsumer, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    // Boxed: the batch future is deep enough to overflow the compiler's layout depth inline.
    let records = lambda::records(&event.payload);
    let failed = consumer.sale.metrics.invocation(Box::pin(consumer.consume(&records))).await;
    Ok(lambda::batch_response(failed))
}
