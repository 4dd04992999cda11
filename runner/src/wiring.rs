//! How the functions are wired together: one set of settings (the environment variables the
//! functions read in AWS), each function's configuration cut from it, and the event sources
//! and schedules of `template.yaml`.

use std::time::Duration;

use lambda_http::Error;
use shared::config::{self, ConfigError, CoreConfig, LocalConfig, PublishConfig, SqsConfig};

use crate::{
    Functions,
    events::{Consumer, EventSource},
};

/// Records per invocation of an SQS-triggered function (template.yaml: BatchSize).
pub const BATCH_SIZE: i32 = 10;
/// template.yaml: MaximumBatchingWindowInSeconds of both SQS events.
pub const BATCHING_WINDOW: Duration = Duration::from_secs(1);
/// template.yaml: each function's Timeout (the deadline of a local invocation's Context).
pub const ORDER_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30);
pub const PAYMENT_TIMEOUT_TIMEOUT: Duration = Duration::from_secs(30);
pub const OUTBOX_RETRY_TIMEOUT: Duration = Duration::from_secs(60);
pub const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The HTTP functions' Timeout (StockQuery, Buy, Orders, Admin).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Settings {
    pub core: CoreConfig,
    pub sqs: SqsConfig,
    pub orders_queue_url: String,
    pub payment_timeouts_queue_url: String,
    pub local: LocalConfig,
    pub publish: PublishConfig,
    pub warmup_horizon: Duration,
    pub admin_scope: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            core: CoreConfig::from_env()?,
            sqs: SqsConfig::sqs_from_env()?,
            orders_queue_url: config::orders_queue_url()?,
            payment_timeouts_queue_url: config::payment_timeouts_queue_url()?,
            local: LocalConfig::from_env()?,
            publish: PublishConfig::from_env()?,
            warmup_horizon: config::warmup_horizon()?,
            admin_scope: config::admin_scope()?,
        })
    }

    /// Every function's state, each built from its own configuration as its `main` would.
    pub async fn build(&self) -> Result<Functions, Error> {
        let core = &self.core;
        Ok(Functions {
            stock_query: stock_query::build(core).await?,
            buy: buy::build(&buy::Config {
                core: core.clone(),
                sqs: self.sqs.clone(),
                orders_queue_url: self.orders_queue_url.clone(),
            })
            .await?,
            orders: orders::build(core).await?,
            order_consumer: order_consumer::build(&order_consumer::Config {
                core: core.clone(),
                sqs: self.sqs.clone(),
                payment_timeouts_queue_url: self.payment_timeouts_queue_url.clone(),
            })
            .await?,
            payment_timeout: payment_timeout::build(core).await?,
            outbox_retry: outbox_retry::build(&outbox_retry::Config {
                core: core.clone(),
                sqs: self.sqs.clone(),
                orders_queue_url: self.orders_queue_url.clone(),
            })
            .await?,
            admin: admin::build(&admin::Config {
                core: core.clone(),
                publish: self.publish.clone(),
                admin_scope: self.admin_scope.clone(),
            })
            .await?,
            warmup: warmup::build(&warmup::Config { core: core.clone(), horizon: self.warmup_horizon }).await?,
        })
    }

    /// The pollers' SQS client: its operation timeout must outlast the long-poll wait, or
    /// every empty receive would end as a timeout.
    pub async fn poller_client(&self) -> aws_sdk_sqs::Client {
        let cfg = SqsConfig { operation_timeout: self.local.poll_wait + Duration::from_secs(5), ..self.sqs.clone() };
        shared::sqs::client(&cfg).await
    }

    /// The SQS event source mappings.
    pub fn event_sources(&self) -> Vec<EventSource> {
        let source = |consumer, queue_url: &String| EventSource {
            consumer,
            queue_url: queue_url.clone(),
            batch_size: BATCH_SIZE,
            wait: self.local.poll_wait,
            concurrency: self.local.pollers,
            batching_window: BATCHING_WINDOW,
            function_timeout: match consumer {
                Consumer::OrderConsumer => ORDER_CONSUMER_TIMEOUT,
                Consumer::PaymentTimeout => PAYMENT_TIMEOUT_TIMEOUT,
            },
        };
        vec![
            source(Consumer::OrderConsumer, &self.orders_queue_url),
            source(Consumer::PaymentTimeout, &self.payment_timeouts_queue_url),
        ]
    }
}

/// Environment variables every function gets (template.yaml: Globals.Function.Environment).
pub const COMMON_ENV: &[&str] = &[
    "REDIS_URL",
    "REDIS_CLUSTER",
    "REDIS_WAIT_REPLICAS",
    "REDIS_KEY_PREFIX",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "PAYMENT_WINDOW_SECS",
    "OUTBOX_RETRY_AFTER_SECS",
    "OUTBOX_BACKOFF_SECS",
    "OUTBOX_MAX_ATTEMPTS",
    "SALE_MEMO_MS",
    "STOCK_CACHE_MS",
    "BUCKET_DRY_MS",
    "BUCKET_REFILL_WAIT_MS",
    "RUST_LOG",
    "METRICS_NAMESPACE",
    "ADMIN_SCOPE",
];

/// Each function: its logical id in template.yaml, its binary, and the environment variables
/// it reads beyond [`COMMON_ENV`].
pub const FUNCTIONS: &[(&str, &str, &[&str])] = &[
    ("StockQueryFunction", "stock-query", &[]),
    ("BuyFunction", "buy", &["ORDERS_QUEUE_URL"]),
    ("OrdersFunction", "orders", &[]),
    ("AdminFunction", "admin", &["PUBLISH_BUCKET", "PUBLIC_API_URL"]),
    ("OrderConsumerFunction", "order-consumer", &["PAYMENT_TIMEOUTS_QUEUE_URL"]),
    ("PaymentTimeoutFunction", "payment-timeout", &[]),
    ("OutboxRetryFunction", "outbox-retry", &["ORDERS_QUEUE_URL"]),
    ("WarmupFunction", "warmup", &[]),
];

fn rate(every: Duration) -> String {
    match every.as_secs() {
        60 => "rate(1 minute)".into(),
        s if s % 60 == 0 => format!("rate({} minutes)", s / 60),
        s => format!("rate({s} seconds)"),
    }
}

/// The runner's wiring as `deploy/check_wiring.py` compares it with template.yaml:
/// `flash-local wiring | python3 deploy/check_wiring.py`.
pub fn manifest(settings_every: Duration) -> serde_json::Value {
    use crate::routes::{Auth, ROUTES};
    let routes: Vec<_> = ROUTES
        .iter()
        .map(|r| {
            serde_json::json!({
                "method": r.method,
                "path": r.path,
                "function": r.function.logical_id(),
                "auth": match r.auth { Auth::None => "none", Auth::User => "user", Auth::Admin => "admin" },
            })
        })
        .collect();
    let functions: serde_json::Map<String, serde_json::Value> = FUNCTIONS
        .iter()
        .map(|(id, binary, own)| {
            let env: Vec<&str> = COMMON_ENV.iter().chain(own.iter()).copied().collect();
            ((*id).to_owned(), serde_json::json!({"binary": binary, "env": env}))
        })
        .collect();
    let queue_of = |c: Consumer| match c {
        Consumer::OrderConsumer => ("OrderConsumerFunction", "OrdersQueue"),
        Consumer::PaymentTimeout => ("PaymentTimeoutFunction", "PaymentTimeoutsQueue"),
    };
    let sources: Vec<_> = [Consumer::OrderConsumer, Consumer::PaymentTimeout]
        .into_iter()
        .map(|c| {
            let (function, queue) = queue_of(c);
            serde_json::json!({
                "function": function,
                "queue": queue,
                "batch_size": BATCH_SIZE,
                "batching_window_secs": BATCHING_WINDOW.as_secs(),
            })
        })
        .collect();
    serde_json::json!({
        "routes": routes,
        "functions": functions,
        "event_sources": sources,
        "schedules": [
            {"function": "OutboxRetryFunction", "schedule": rate(settings_every)},
            {"function": "WarmupFunction", "schedule": rate(settings_every)},
        ],
    })
}
