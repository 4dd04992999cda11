//! `POST /buy`: rate limit, bloom filter, one Lua call, then the order message to SQS.
//! `main.rs` is the Lambda bootstrap; the local runner and the tests call [`handler`] directly.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_http::{Body, Error, Request, Response, http::StatusCode};
use serde::Deserialize;
use shared::{
    config::{self, ConfigError, CoreConfig, SqsConfig},
    domain::SaleState,
    http::{self, ApiError},
    sale::{self, BuyOutcome, BuyService, Freshness},
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
            sqs: SqsConfig::from_env()?,
            orders_queue_url: config::orders_queue_url()?,
        })
    }
}

/// The function's state, built once per cold start.
pub async fn build(cfg: &Config) -> Result<BuyService, Error> {
    let sale = sale::connect(&cfg.core).await?;
    let queue = Queue::new(sqs::client(&cfg.sqs).await, cfg.orders_queue_url.clone()).grouped();
    Ok(BuyService::new(sale, queue))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyRequest {
    #[serde(deserialize_with = "http::deserialize_id")]
    product_id: u64,
}

pub async fn handler(svc: &BuyService, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::respond(buy(svc, &req).await))
}

#[tracing::instrument(skip_all, fields(user, product_id))]
async fn buy(svc: &BuyService, req: &Request) -> Result<Response<Body>, ApiError> {
    let user = http::user(req)?;
    let body: BuyRequest = http::json_body(req)?;
    let span = tracing::Span::current();
    span.record("user", user.as_str());
    span.record("product_id", body.product_id);
    // The sale page's resend of a buy whose answer never came asks past the instance's memo.
    let freshness = if http::asks_no_cache(req) { Freshness::Fresh } else { Freshness::MayUseMemo };
    match svc.buy(&user, body.product_id, freshness).await? {
        BuyOutcome::Queued { receipt, activity_id } => Ok(http::json(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "status": "queued",
                "receipt": receipt,
                "activity_id": activity_id,
                "product_id": body.product_id,
            }),
        )),
        BuyOutcome::SoldOut => Err(ApiError::SoldOut),
        BuyOutcome::AlreadyBought { receipt } => Err(ApiError::AlreadyBought { receipt }),
        BuyOutcome::NotOpen { state: SaleState::Upcoming, .. } => Err(ApiError::SaleNotStarted),
        BuyOutcome::NotOpen { .. } => Err(ApiError::SaleEnded),
        BuyOutcome::RateLimited { retry_after } => Err(ApiError::RateLimited { retry_after }),
    }
}
