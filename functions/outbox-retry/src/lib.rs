//! `outbox-retry` (EventBridge schedule, every minute): resends outbox entries the consumer
//! never acknowledged; after the cap, dead-letters the purchase and restores its unit. Runs
//! that overlap claim disjoint entries (`claim.lua`).

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_runtime::{Error, LambdaEvent};
use shared::{
    config::{self, ConfigError, CoreConfig, SqsConfig},
    lambda,
    orders::{OutboxRetry, RetryReport},
    sale,
    sqs::{self, Queue},
};

#[derive(Debug, Clone)]
pub struct Config {
    pub core: CoreConfig,
    pub sqs: SqsConfig,
    pub orders_queue_url: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            core: CoreConfig::from_env()?,
            sqs: SqsConfig::sqs_from_env()?,
            orders_queue_url: config::orders_queue_url()?,
        })
    }
}

pub async fn build(cfg: &Config) -> Result<OutboxRetry, Error> {
    Ok(OutboxRetry {
        sale: sale::connect(&cfg.core, "outbox-retry").await?,
        orders: Queue::new(sqs::client(&cfg.sqs).await, cfg.orders_queue_url.clone()),
    })
}

/// The scheduled event's content does not matter: every run looks at all recent activities.
pub async fn handler(retry: &OutboxRetry, _event: LambdaEvent<serde_json::Value>) -> Result<RetryReport, Error> {
    // Boxed: the run's future is deep enough to overflow the compiler's layout depth inline.
    retry.sale.metrics.invocation(Box::pin(retry.run())).await.map_err(lambda::failure)
}
