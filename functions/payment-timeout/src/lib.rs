//! `payment-timeout` (SQS `payment-timeouts`, delayed by the payment window): cancels an order
//! still unpaid with a conditional update and restores its unit exactly once.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::{
    config::{ConfigError, MysqlConfig, RedisConfig, SaleConfig},
    pipeline::{self, PaymentTimeouts},
    sale,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub redis: RedisConfig,
    pub mysql: MysqlConfig,
    pub sale: SaleConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { redis: RedisConfig::from_env()?, mysql: MysqlConfig::from_env()?, sale: SaleConfig::from_env()? })
    }
}

pub fn build(cfg: &Config) -> Result<PaymentTimeouts, Error> {
    Ok(PaymentTimeouts { sale: sale::connect(&cfg.redis, &cfg.mysql, &cfg.sale)? })
}

pub async fn handler(timeouts: &PaymentTimeouts, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    // Boxed: the batch future is deep enough to overflow the compiler's layout depth inline.
    let failed = Box::pin(timeouts.consume(&pipeline::records(&event.payload))).await;
    Ok(pipeline::batch_response(failed))
}
