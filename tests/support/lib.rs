//! Test harness: each test gets its own MySQL database, Redis key prefix and SQS queue, and
//! its own local runner on an ephemeral port, so tests run in parallel against the real
//! servers. Nothing here is mocked; `Proxy` stands between the app and a real server so a
//! test can take that dependency away.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

pub mod proxy;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use reqwest::StatusCode;
use runner::{App, auth::JwtCheck, wiring::Settings};
use serde_json::Value;
use shared::{
    config::{
        ApiBase, CoreConfig, LocalConfig, MetricsConfig, MysqlConfig, PublishConfig, PublishTarget, RedisConfig,
        S3Config, SaleConfig, SqsConfig,
    },
    domain::{Activity, NewActivity, NewProduct},
    mysql::Db,
    sale::{self, Sale},
    telemetry::metrics::{Registry, Sink},
};
use sqlx::mysql::MySqlPoolOptions;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-secret";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn mysql_server() -> String {
    env_or("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
}
pub fn redis_url() -> String {
    env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379")
}
/// True when the tests run against a Redis Cluster (`TEST_REDIS_CLUSTER=true`, with
/// `TEST_REDIS_URL` a node of it and `TEST_REDIS_TLS_CA_FILE` its CA).
pub fn redis_cluster() -> bool {
    env_or("TEST_REDIS_CLUSTER", "false") == "true"
}

/// The Redis configuration for `url`: the test server's (`TEST_REDIS_*`: single node or
/// cluster, TLS or not) when `url` is that server, a plain single node otherwise (a proxy).
pub fn redis_config(url: &str, prefix: &str) -> RedisConfig {
    let mut cfg = RedisConfig { url: url.to_owned(), ..RedisConfig::local(prefix) };
    if url == redis_url() {
        cfg.cluster = redis_cluster();
        cfg.tls_ca = std::env::var("TEST_REDIS_TLS_CA_FILE")
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| shared::config::CaFile::read(&p).expect("TEST_REDIS_TLS_CA_FILE"));
        cfg.wait_replicas = env_or("TEST_REDIS_WAIT_REPLICAS", if cfg.cluster { "1" } else { "0" })
            .parse()
            .expect("TEST_REDIS_WAIT_REPLICAS");
    }
    cfg
}
pub fn sqs_endpoint() -> String {
    env_or("TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
}

pub fn unique_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:012x}", n >> 16)
}

/// Where the app (not the fixture) finds its dependencies; a test may point one at a proxy.
#[derive(Debug, Clone)]
pub struct Options {
    pub redis_url: String,
    pub sqs_endpoint: String,
    pub sale: SaleConfig,
    pub visibility_timeout: Duration,
    /// The app's MySQL statement time limit.
    pub mysql_statement_timeout: Duration,
    /// The app's `REDIS_WAIT_REPLICAS`, if not the test server's default.
    pub redis_wait_replicas: Option<u32>,
    /// Publish to a fresh LocalStack S3 bucket (`TestEnv::pages_bucket`) rather than a directory.
    pub pages_bucket: bool,
    /// The app's `PUBLIC_API_URL`.
    pub public_api_url: ApiBase,
    /// The runner's `CORS_ALLOWED_ORIGINS`.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis_url: redis_url(),
            sqs_endpoint: sqs_endpoint(),
            // No instance-local answers unless a test asks for them: most tests read what a
            // purchase just changed (tests/memo.rs covers the memo itself).
            sale: SaleConfig {
                memo_ttl: Duration::ZERO,
                memo_upcoming_max: Duration::ZERO,
                stock_cache_ttl: Duration::ZERO,
                ..SaleConfig::default()
            },
            visibility_timeout: Duration::from_secs(2),
            mysql_statement_timeout: Duration::from_secs(5),
            redis_wait_replicas: None,
            pages_bucket: false,
            public_api_url: ApiBase::SameOrigin,
            cors_allowed_origins: Vec::new(),
        }
    }
}

pub struct TestEnv {
    pub base_url: String,
    pub http: reqwest::Client,
    pub app: Arc<App>,
    /// The app's wiring (its own Redis / SQS endpoints, which a test may have cut).
    pub settings: Settings,
    /// The fixture's own view (own pool and connection), so the app's counters stay its own.
    pub sale: Sale,
    pub sqs: aws_sdk_sqs::Client,
    pub orders_queue_url: String,
    pub timeouts_queue_url: String,
    /// The LocalStack bucket the app publishes to (`Options::pages_bucket`).
    pub pages_bucket: Option<String>,
    pub prefix: String,
    pub database_url: String,
    /// What the app's functions emitted: every EMF document, and the registry `/metrics` shows.
    pub emitted: Arc<Mutex<Vec<serde_json::Value>>>,
    pub registry: Arc<Registry>,
    server: JoinHandle<()>,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// LocalStack's S3, on the SQS test endpoint (one LocalStack serves both).
pub fn s3_config() -> S3Config {
    S3Config {
        endpoint_url: Some(sqs_endpoint()),
        region: "us-east-1".into(),
        static_credentials: Some(("test".into(), "test".into())),
        operation_timeout: Duration::from_secs(5),
    }
}

pub fn sqs_config(endpoint: &str) -> SqsConfig {
    SqsConfig {
        endpoint_url: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        static_credentials: Some(("test".into(), "test".into())),
        operation_timeout: Duration::from_secs(3),
    }
}

/// Creates a queue on LocalStack and returns its URL on the test endpoint (LocalStack's own
/// URLs name a host that may not resolve offline; the path is what matters).
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, visibility: Duration) -> String {
    let created = sqs
        .create_queue()
        .queue_name(name)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, visibility.as_secs().to_string())
        .send()
        .await
        .expect("create queue");
    let url = created.queue_url().expect("queue url");
    let path: Vec<&str> = url.rsplit('/').take(2).collect();
    format!("{}/{}/{}", sqs_endpoint(), path[1], path[0])
}

impl TestEnv {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let id = unique_id();
        let database_url = format!("{}/flash_t_{id}", mysql_server());
        let mysql = MysqlConfig::new(&database_url).expect("test database URL");
        Db::create_and_migrate(&mysql.options).await.expect("create and migrate the test database");
        let prefix = format!("t{id}");

        let sqs = shared::sqs::client(&sqs_config(&sqs_endpoint())).await;
        let orders_queue_url = create_queue(&sqs, &format!("t-{id}-orders"), opts.visibility_timeout).await;
        let timeouts_queue_url = create_queue(&sqs, &format!("t-{id}-payment-timeouts"), opts.visibility_timeout).await;

        let pages_bucket = if opts.pages_bucket {
            let bucket = format!("t-{id}-pages");
            let s3 = shared::s3::client(&s3_config()).await;
            s3.create_bucket().bucket(&bucket).send().await.expect("create the pages bucket (LocalStack runs S3?)");
            Some(bucket)
        } else {
            None
        };
        let publish_target = match &pages_bucket {
            Some(bucket) => PublishTarget::Bucket(bucket.clone()),
            None => PublishTarget::Dir(std::env::temp_dir().join(format!("flash-pages-{id}"))),
        };

        let emitted = Arc::new(Mutex::new(Vec::new()));
        let registry = Arc::new(Registry::default());
        let settings = Settings {
            core: CoreConfig {
                metrics: MetricsConfig {
                    namespace: "FlashSaleTest".into(),
                    sink: Sink { stdout: false, registry: Some(registry.clone()), capture: Some(emitted.clone()) },
                },
                redis: RedisConfig {
                    wait_replicas: opts
                        .redis_wait_replicas
                        .unwrap_or(redis_config(&opts.redis_url, &prefix).wait_replicas),
                    ..redis_config(&opts.redis_url, &prefix)
                },
                mysql: MysqlConfig { statement_timeout: opts.mysql_statement_timeout, ..mysql.clone() },
                sale: opts.sale.clone(),
            },
            sqs: sqs_config(&opts.sqs_endpoint),
            orders_queue_url: orders_queue_url.clone(),
            payment_timeouts_queue_url: timeouts_queue_url.clone(),
            local: LocalConfig {
                listen_addr: "127.0.0.1:0".into(),
                web_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web"),
                poll_wait: Duration::from_secs(1),
                pollers: 2,
                schedule_every: Duration::from_secs(1),
                throttle_rate: 0,
                throttle_burst: 0,
            },
            publish: PublishConfig { target: publish_target, api: opts.public_api_url.clone(), s3: s3_config() },
            warmup_horizon: Duration::from_secs(3600),
            admin_scope: "admin".into(),
        };
        let functions = settings.build().await.expect("functions");
        let app = Arc::new(
            App::new(functions, JwtCheck::hs256(SECRET.as_bytes()), settings.local.web_dir.clone())
                .with_cors(runner::cors::Cors::new(opts.cors_allowed_origins.clone())),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(runner::serve(listener, app.clone()));

        let pool = MySqlPoolOptions::new().max_connections(3).connect(&database_url).await.expect("fixture pool");
        let sale = sale::connect(
            &CoreConfig {
                redis: redis_config(&redis_url(), &prefix),
                mysql,
                sale: opts.sale.clone(),
                metrics: MetricsConfig { sink: Sink::default(), ..MetricsConfig::default() },
            },
            "fixture",
        )
        .await
        .expect("fixture sale");
        let sale = Sale { db: Db::from_pool(pool), ..sale };
        let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("http client");
        Self {
            base_url,
            http,
            app,
            settings,
            sale,
            sqs,
            orders_queue_url,
            timeouts_queue_url,
            pages_bucket,
            prefix,
            database_url,
            emitted,
            registry,
            server,
        }
    }

    /// Starts the SQS event source mappings (order consumer, payment timeout) on real SQS,
    /// through the app's own SQS client settings. Abort the handles to kill them.
    pub async fn start_pollers(&self) -> Vec<JoinHandle<()>> {
        let sqs = self.settings.poller_client().await;
        self.settings
            .event_sources()
            .into_iter()
            .flat_map(|source| runner::events::start(self.app.clone(), sqs.clone(), source))
            .collect()
    }

    pub fn token(&self, user: &str) -> String {
        runner::auth::mint(SECRET.as_bytes(), user, None, Duration::from_secs(3600)).expect("mint")
    }

    /// Lists a product and an activity through the library calls the admin API makes, then
    /// warms it. `starts_in` may be negative (already open).
    pub async fn create_sale(
        &self,
        stock: i64,
        starts_in: chrono::Duration,
        lasts: chrono::Duration,
        limits: (u32, u32, u32),
    ) -> Activity {
        self.create_split_sale(stock, 1, starts_in, lasts, limits).await
    }

    /// [`Self::create_sale`] with its stock split into `buckets` buckets.
    pub async fn create_split_sale(
        &self,
        stock: i64,
        buckets: u16,
        starts_in: chrono::Duration,
        lasts: chrono::Duration,
        limits: (u32, u32, u32),
    ) -> Activity {
        let product_id = self
            .sale
            .list_product(
                &NewProduct {
                    name: "Test phone".into(),
                    description: "for tests".into(),
                    price_cents: 1999,
                    image_url: String::new(),
                },
                None,
            )
            .await
            .expect("list product");
        let starts_at = Utc::now() + starts_in;
        let activity_id = self
            .sale
            .db
            .insert_activity(&NewActivity {
                product_id,
                stock,
                starts_at,
                ends_at: starts_at + lasts,
                rate_limit_per_sec: limits.0,
                burst: limits.1,
                per_user_per_min: limits.2,
                buckets,
            })
            .await
            .expect("insert activity");
        let activity = self.sale.db.activity(activity_id).await.expect("read activity").expect("activity exists");
        self.sale.warm(&activity).await.expect("warm");
        activity
    }

    /// An open sale with generous limits.
    pub async fn open_sale(&self, stock: i64) -> Activity {
        self.create_sale(stock, chrono::Duration::seconds(-5), chrono::Duration::hours(1), (1_000_000, 1_000_000, 5))
            .await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request reaches the runner");
        let status = resp.status();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (retry_after, www_authenticate) = (header("retry-after"), header("www-authenticate"));
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, json, text, retry_after, www_authenticate }
    }

    pub async fn buy(&self, user: &str, product_id: u64) -> Reply {
        let token = self.token(user);
        self.request(reqwest::Method::POST, "/buy", Some(&token), Some(format!(r#"{{"product_id":{product_id}}}"#)))
            .await
    }

    /// A buy's status only (for many buyers at once).
    pub async fn buy_as(&self, user: String, product_id: u64) -> StatusCode {
        self.buy(&user, product_id).await.status
    }

    pub async fn stock(&self, product_id: u64) -> Reply {
        self.request(reqwest::Method::GET, &format!("/products/{product_id}/stock"), None, None).await
    }

    pub fn redis(&self) -> shared::redis::Conn {
        self.sale.redis.conn()
    }

    pub async fn redis_stock(&self, product_id: u64) -> Option<i64> {
        let mut c = self.redis();
        redis::cmd("HGET")
            .arg(self.sale.redis.keys().sale(product_id))
            .arg("stock")
            .query_async(&mut c)
            .await
            .expect("HGET")
    }

    pub async fn outbox_len(&self, product_id: u64) -> u64 {
        let mut c = self.redis();
        redis::cmd("HLEN").arg(self.sale.redis.keys().outbox(product_id)).query_async(&mut c).await.expect("HLEN")
    }

    /// Every key of this test with its serialized value: equal snapshots mean nothing changed.
    pub async fn redis_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut c = self.redis();
        let keys = self.test_keys().await;
        let mut out = BTreeMap::new();
        for k in keys {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query_async(&mut c).await.expect("DUMP");
            out.insert(k, dump);
        }
        out
    }

    /// A checksum of every table.
    pub async fn mysql_snapshot(&self) -> Vec<(String, Option<i64>)> {
        use sqlx::Row;
        let rows = sqlx::query("CHECKSUM TABLE products, activities, orders, dead_letters")
            .fetch_all(self.sale.db.pool())
            .await
            .expect("CHECKSUM");
        rows.iter().map(|r| (r.get::<String, _>(0), r.get::<Option<i64>, _>(1))).collect()
    }

    /// Messages waiting in this test's `orders` queue.
    pub async fn queue_depth(&self) -> u64 {
        self.depth(&self.orders_queue_url).await
    }

    /// Messages waiting (visible) in a queue.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("queue attributes");
        attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub retry_after: Option<String>,
    pub www_authenticate: Option<String>,
}

impl Reply {
    /// Asserts API Gateway's own answer (`{"message": ...}`, which HTTP APIs cannot customise).
    pub fn assert_gateway_error(&self, status: u16, message: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.json, serde_json::json!({ "message": message }), "body: {}", self.text);
        if status == 401 {
            assert!(self.www_authenticate.as_deref().is_some_and(|c| c.starts_with("Bearer")), "{self:?}");
        }
    }

    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the contract's error body: a code and a human sentence.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.error_code(), code, "body: {}", self.text);
        let message = self.json["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "error without a message: {}", self.text);
    }
}

/// An SQS event as Lambda delivers it, from (message id, body) pairs.
pub fn sqs_event(records: &[(String, String)]) -> lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent> {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            serde_json::json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:orders",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let event = serde_json::from_value(serde_json::json!({ "Records": records })).expect("SQS event");
    lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TestEnv {
    /// Receives (and deletes) every message now in a queue: (message id, body).
    pub async fn take_all(&self, queue_url: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut empty_rounds = 0;
        while empty_rounds < 2 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            let messages = got.messages();
            if messages.is_empty() {
                empty_rounds += 1;
                continue;
            }
            for m in messages {
                out.push((m.message_id().unwrap_or_default().to_owned(), m.body().unwrap_or_default().to_owned()));
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        out
    }

    /// Orders of an activity by status.
    pub async fn order_counts(&self, activity_id: u64) -> BTreeMap<String, i64> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT CAST(status AS CHAR) AS s, COUNT(*) AS n FROM orders WHERE activity_id = ? GROUP BY status",
        )
        .bind(activity_id)
        .fetch_all(self.sale.db.pool())
        .await
        .expect("count orders");
        rows.iter().map(|r| (r.get::<String, _>("s"), r.get::<i64, _>("n"))).collect()
    }

    pub async fn total_orders(&self, activity_id: u64) -> i64 {
        self.order_counts(activity_id).await.values().sum()
    }

    /// Invariant 1, sampled: Redis (stock and outbox, atomically) first, then MySQL. Returns
    /// (stock, units taken = outbox ∪ orders not cancelled/failed). A purchase moving between
    /// the reads is counted once; a cancellation between them is undercounted, never over.
    pub async fn units_accounted(&self, a: &Activity) -> (i64, usize) {
        use sqlx::Row;
        let mut c = self.redis();
        let keys = self.sale.redis.keys();
        let (stock, outbox): (Option<i64>, Vec<String>) = redis::pipe()
            .atomic()
            .hget(keys.sale(a.product_id), "stock")
            .hkeys(keys.outbox(a.product_id))
            .query_async(&mut c)
            .await
            .expect("redis sample");
        let rows =
            sqlx::query("SELECT receipt FROM orders WHERE activity_id = ? AND status IN ('pending_payment', 'paid')")
                .bind(a.id)
                .fetch_all(self.sale.db.pool())
                .await
                .expect("mysql sample");
        let mut taken: std::collections::HashSet<String> = outbox.into_iter().collect();
        taken.extend(rows.iter().map(|r| r.get::<String, _>(0)));
        (stock.unwrap_or(0), taken.len())
    }

    pub async fn pay(&self, user: &str, receipt: &str) -> Reply {
        let token = self.token(user);
        self.request(reqwest::Method::POST, &format!("/orders/{receipt}/pay"), Some(&token), None).await
    }

    pub async fn order(&self, user: &str, receipt: &str) -> Reply {
        let token = self.token(user);
        self.request(reqwest::Method::GET, &format!("/orders/{receipt}"), Some(&token), None).await
    }
}

impl TestEnv {
    pub fn admin_token(&self) -> String {
        runner::auth::mint(SECRET.as_bytes(), "ops-1", Some("admin"), Duration::from_secs(3600)).expect("mint")
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.admin_token();
        self.request(method, path, Some(&token), body.map(|b| b.to_string())).await
    }

    /// A product, through the admin API: its id.
    pub async fn admin_product(&self) -> u64 {
        let body = serde_json::json!({"name": "Phone X", "description": "the one", "price_cents": 49_900});
        let p = self.admin(reqwest::Method::POST, "/admin/products", Some(body)).await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
        p.json["id"].as_u64().expect("product id")
    }

    /// An activity of an existing product, through the admin API (generous limits): its id.
    pub async fn admin_activity(
        &self,
        product_id: u64,
        stock: i64,
        starts_in: chrono::Duration,
        lasts: chrono::Duration,
    ) -> u64 {
        let starts = Utc::now() + starts_in;
        let body = serde_json::json!({
            "product_id": product_id, "stock": stock,
            "starts_at": starts.to_rfc3339(), "ends_at": (starts + lasts).to_rfc3339(),
            "rate_limit_per_sec": 100_000, "burst": 100_000, "per_user_per_min": 5,
        });
        let a = self.admin(reqwest::Method::POST, "/admin/activities", Some(body)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.json["id"].as_u64().expect("activity id")
    }

    /// Consumes everything in the orders queue through the consumer handler.
    pub async fn consume_orders(&self) {
        let messages = self.take_all(&self.orders_queue_url).await;
        for batch in messages.chunks(10) {
            let response = order_consumer::handler(&self.app.order_consumer, sqs_event(batch)).await.expect("consumer");
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }

    /// Deletes every Redis key of this test: what FLUSHALL does to a sale, without touching
    /// the other tests running against the same server.
    pub async fn flush_redis(&self) {
        let mut c = self.redis();
        for k in self.test_keys().await {
            let _: () = redis::cmd("DEL").arg(&k).query_async(&mut c).await.expect("DEL");
        }
    }

    /// Every key of this test: SCAN on every primary (a cluster's keys are spread over them).
    pub async fn test_keys(&self) -> Vec<String> {
        let mut c = self.redis();
        let pattern = format!("{}:*", self.prefix);
        let mut keys = Vec::new();
        for node in primaries(&mut c).await {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
                let (next, batch): (u64, Vec<String>) = match c.cluster_connection() {
                    Some(mut cc) => {
                        let routing = redis::cluster_routing::RoutingInfo::SingleNode(
                            redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                                host: node.0.clone(),
                                port: node.1,
                            },
                        );
                        let v = cc.route_command(scan.clone(), routing).await.expect("SCAN");
                        redis::from_redis_value(v).expect("SCAN reply")
                    }
                    None => scan.query_async(&mut c).await.expect("SCAN"),
                };
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

/// The primaries' addresses (one pseudo-entry for a single node).
pub async fn primaries(c: &mut shared::redis::Conn) -> Vec<(String, u16)> {
    if !matches!(c, shared::redis::Conn::Cluster(_)) {
        return vec![(String::new(), 0)];
    }
    // CLUSTER SHARDS would do too; CLUSTER SLOTS' first address of each range is its primary.
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await.expect("CLUSTER SLOTS");
    let mut out = Vec::new();
    for range in slots {
        let redis::Value::Array(items) = range else { continue };
        let Some(redis::Value::Array(primary)) = items.get(2) else { continue };
        let host: String = redis::from_redis_value_ref(&primary[0]).expect("host");
        let port: u16 = redis::from_redis_value_ref(&primary[1]).expect("port");
        if !out.contains(&(host.clone(), port)) {
            out.push((host, port));
        }
    }
    out
}
