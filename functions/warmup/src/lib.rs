//! `warmup` (EventBridge schedule, every minute): loads activities that start within the
//! horizon into Redis (stock derived from MySQL and the outbox, window, limits, bloom bits).
//! A live sale keeps its stock, so a run mid-sale hands out nothing twice.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_runtime::{Error, LambdaEvent};
use shared::{
    config::{self, ConfigError, CoreConfig},
    lambda,
    sale::{self, Sale, WarmReport},
};

#[derive(Debug, Clone)]
pub struct Config {
    pub core: CoreConfig,
    pub horizon: std::time::Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { core: CoreConfig::from_env()?, horizon: config::warmup_horizon()? })
    }
}

pub struct Warmup {
    pub sale: Sale,
    pub horizon: std::time::Duration,
}

pub async fn build(cfg: &Config) -> Result<Warmup, Error> {
    Ok(Warmup { sale: sale::connect(&cfg.core, "warmup").await?, horizon: cfg.horizon })
}

pub async fn handler(w: &Warmup, _event: LambdaEvent<serde_json::Value>) -> Result<WarmReport, Error> {
    w.sale.metrics.invocation(Box::pin(w.sale.warm_upcoming(w.horizon))).await.map_err(lambda::failure)
}
