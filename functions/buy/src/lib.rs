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
    telemetry::metrics::{self, BuyResult, Event, Metric},
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

/// The function's state, built once per cold start.
pub async fn build(cfg: &Config) -> Result<BuyService, Error> {
    let sale = sale::connect(&cfg.core, "buy").await?;
    let queue = Queue::new(sqs::client(&cfg.sqs).await, cfg.orders_queue_url.clone()).grouped();
    Ok(BuyService::new(sale, queue))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyRequest {
    #[serde(deserialize_with = "http::deserialize_id")]
    product_id: u64,
}

/// One buy, and its metrics: `Buys` by outcome, the Redis and MySQL calls it made.
pub async fn handler(svc: &BuyService, req: Request) -> Result<Response<Body>, Error> {
    let mut activity_id = None;
    let (result, calls) = metrics::calls(buy(svc, &req, &mut activity_id)).await;
    let outcome = match &result {
        Ok(_) => BuyResult::Queued,
        Err(ApiError::SoldOut) => BuyResult::SoldOut,
        Err(ApiError::AlreadyBought { .. }) => BuyResult::AlreadyBought,
        Err(ApiError::SaleNotStarted | ApiError::SaleEnded) => BuyResult::NotOpen,
        Err(ApiError::RateLimited { .. }) => BuyResult::RateLimited,
        Err(ApiError::Unavailable(_)) => BuyResult::Unavailable,
        Err(_) => BuyResult::Rejected,
    };
    svc.sale.metrics.emit(Event::new(activity_id).outcome(outcome).add(Metric::Buys, 1.0).with_calls(calls));
    Ok(http::respond(result))
}

#[tracing::instrument(skip_all, fields(user, product_id))]
async fn buy(svc: &BuyService, req: &Request, activity_id: &mut Option<u64>) -> Result<Response<Body>, ApiError> {
    let user = http::user(req)?;
    let body: BuyRequest = http::json_body(req)?;
    let span = tracing::Span::current();
    span.record("user", user.as_str());
    span.record("product_id", body.product_id);
    // The sale page's resend of a buy whose answer never came asks past the instance's memo.
    let freshness = if http::asks_no_cache(req) { Freshness::Fresh } else { Freshness::MayUseMemo };
    let decision = svc.buy(&user, body.product_id, freshness).await?;
    *activity_id = decision.activity_id;
    match decision.outcome {
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
