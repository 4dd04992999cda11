//! Typed configuration, read once per cold start. Handlers never read the environment.
//!
//! Each function reads only the sections it needs; a missing or malformed variable is an error
//! that names the variable. Connection URLs are parsed here, at start-up, so a malformed
//! `DATABASE_URL` or `REDIS_URL` is reported by name rather than as "unavailable" on the first
//! request. Secrets (the MySQL URL carries a password) are redacted in `Debug`.
//!
//! This is the only module that reads the environment: functions and the local runner compose
//! the sections below.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use sqlx::mysql::MySqlConnectOptions;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// A required variable.
pub fn var(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn var_or(name: &'static str, default: &str) -> String {
    var(name).unwrap_or_else(|_| default.to_owned())
}

fn parsed_or<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Malformed { name, reason: e.to_string() })
        }
        _ => Ok(default),
    }
}

/// What every function reads: Redis, MySQL and the sale's knobs. A function's own
/// configuration is this plus whatever else it needs (a queue URL, a directory).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub redis: RedisConfig,
    pub mysql: MysqlConfig,
    pub sale: SaleConfig,
    pub metrics: MetricsConfig,
}

impl CoreConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            redis: RedisConfig::from_env()?,
            mysql: MysqlConfig::from_env()?,
            sale: SaleConfig::from_env()?,
            metrics: MetricsConfig::from_env()?,
        })
    }
}

/// Metrics (`telemetry::metrics`): the CloudWatch namespace (`METRICS_NAMESPACE`, default
/// `FlashSale`) and where the documents go (stdout in Lambda; the local runner swaps in its
/// registry).
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub namespace: String,
    pub sink: crate::telemetry::metrics::Sink,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { namespace: "FlashSale".into(), sink: crate::telemetry::metrics::Sink::stdout() }
    }
}

impl MetricsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let namespace = var_or("METRICS_NAMESPACE", "FlashSale");
        // CloudWatch: 1 to 255 characters, no leading colon.
        if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with(':') {
            return Err(ConfigError::Malformed {
                name: "METRICS_NAMESPACE",
                reason: "1 to 255 characters, not starting with ':'".into(),
            });
        }
        Ok(Self { namespace, sink: crate::telemetry::metrics::Sink::stdout() })
    }
}

/// Redis: the hot copy of every sale.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS). In cluster mode, any one node (MemoryDB's cluster
    /// endpoint, ElastiCache's configuration endpoint).
    pub url: String,
    /// `REDIS_CLUSTER=true`: speak the cluster protocol (MemoryDB, ElastiCache cluster mode).
    pub cluster: bool,
    /// `REDIS_TLS_CA_FILE`: a private CA to trust instead of the system roots (local tests).
    pub tls_ca: Option<CaFile>,
    /// Prefix of every key (`fs` in production); tests use their own so they run in parallel.
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// `REDIS_WAIT_REPLICAS`: replicas a purchase must reach before the buyer hears 202
    /// (`WAIT` in the script's round trip). 1 by default in cluster mode, 0 otherwise; 0 for
    /// MemoryDB, whose acknowledged writes are already durable.
    pub wait_replicas: u32,
    /// `REDIS_WAIT_TIMEOUT_MS`: how long that wait may take (default 200 ms).
    pub wait_timeout: Duration,
}

/// A CA certificate file, read at start-up (its contents are not secret; `Debug` shows the path).
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl CaFile {
    /// Reads and checks a PEM CA file, naming `REDIS_TLS_CA_FILE` in any error.
    pub fn read(path: &str) -> Result<Self, ConfigError> {
        let malformed = |reason: String| ConfigError::Malformed { name: "REDIS_TLS_CA_FILE", reason };
        let pem = std::fs::read(path).map_err(|e| malformed(format!("cannot read {path}: {e}")))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(malformed(format!("{path} holds no PEM certificate")));
        }
        Ok(Self { path: path.into(), pem })
    }
}

/// Checks that `REDIS_URL`'s value is a Redis URL, naming the variable if not.
fn redis_url(url: String) -> Result<String, ConfigError> {
    match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        Ok(_) => Ok(url),
        Err(e) => Err(ConfigError::Malformed { name: "REDIS_URL", reason: e.to_string() }),
    }
}

impl RedisConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = redis_url(var("REDIS_URL")?)?;
        let cluster = parsed_or("REDIS_CLUSTER", false)?;
        let tls_ca = var("REDIS_TLS_CA_FILE").ok().map(|p| CaFile::read(&p)).transpose()?;
        if tls_ca.is_some() && !url.starts_with("rediss://") {
            return Err(ConfigError::Malformed {
                name: "REDIS_TLS_CA_FILE",
                reason: "is set but REDIS_URL is not a rediss:// (TLS) URL".into(),
            });
        }
        Ok(Self {
            url,
            cluster,
            tls_ca,
            key_prefix: var_or("REDIS_KEY_PREFIX", "fs"),
            connect_timeout: Duration::from_millis(parsed_or("REDIS_CONNECT_TIMEOUT_MS", 500)?),
            response_timeout: Duration::from_millis(parsed_or("REDIS_RESPONSE_TIMEOUT_MS", 1000)?),
            wait_replicas: parsed_or("REDIS_WAIT_REPLICAS", u32::from(cluster))?,
            wait_timeout: Duration::from_millis(parsed_or("REDIS_WAIT_TIMEOUT_MS", 200)?),
        })
    }

    /// The local single node, no TLS, no replica wait.
    pub fn local(key_prefix: &str) -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            tls_ca: None,
            key_prefix: key_prefix.into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(1000),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(200),
        }
    }
}

/// MySQL: the record. The URL carries credentials, hence the redacting `Debug`.
#[derive(Clone)]
pub struct MysqlConfig {
    pub url: String,
    /// `url`, parsed.
    pub options: MySqlConnectOptions,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Longest a statement may run (lock waits included) before the server stops it and the
    /// caller answers 503.
    pub statement_timeout: Duration,
}

impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = match self.url.split_once('@') {
            Some((_, host)) => format!("mysql://***@{host}"),
            None => self.url.clone(),
        };
        f.debug_struct("MysqlConfig")
            .field("url", &redacted)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl MysqlConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            max_connections: parsed_or("DATABASE_MAX_CONNECTIONS", 5)?,
            acquire_timeout: Duration::from_millis(parsed_or("DATABASE_ACQUIRE_TIMEOUT_MS", 3000)?),
            statement_timeout: Duration::from_millis(parsed_or("DATABASE_STATEMENT_TIMEOUT_MS", 5000)?),
            ..Self::new(&var("DATABASE_URL")?)?
        })
    }

    /// A URL with the default pool settings (tests and tools); a malformed URL names
    /// `DATABASE_URL`, the variable it normally comes from.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(ConfigError::Malformed { name: "DATABASE_URL", reason: "not a mysql:// URL".into() });
        }
        let options = url.parse::<MySqlConnectOptions>().map_err(|e| ConfigError::Malformed {
            name: "DATABASE_URL",
            // sqlx's message can quote the URL; only its kind is kept, never the password.
            reason: match e {
                sqlx::Error::Configuration(_) => "not a mysql:// URL".into(),
                other => redact(&other.to_string(), url),
            },
        })?;
        Ok(Self {
            url: url.to_owned(),
            options,
            max_connections: 5,
            acquire_timeout: Duration::from_millis(3000),
            statement_timeout: Duration::from_millis(5000),
        })
    }
}

/// Removes a URL's credentials from a message that might quote it.
fn redact(message: &str, url: &str) -> String {
    match url.split_once('@') {
        Some((creds, _)) => message.replace(creds, "mysql://***"),
        None => message.to_owned(),
    }
}

/// An AWS client's settings (SQS, S3). `endpoint_url` is LocalStack locally
/// (`AWS_ENDPOINT_URL`; for S3 it also switches to path-style addressing); unset in AWS.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub endpoint_url: Option<String>,
    pub region: String,
    /// Fixed credentials for LocalStack in tests; `None` uses the default provider chain.
    pub static_credentials: Option<(String, String)>,
    pub operation_timeout: Duration,
}

/// The SQS client's settings (`SQS_TIMEOUT_MS`, default 3000).
pub type SqsConfig = AwsConfig;
/// The S3 client's settings, where sale pages are published (`S3_TIMEOUT_MS`, default 5000).
pub type S3Config = AwsConfig;

impl AwsConfig {
    /// The shared variables, and the operation timeout from `timeout_var`.
    fn from_env_with(timeout_var: &'static str, default_ms: u64) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint_url: var("AWS_ENDPOINT_URL").ok(),
            region: var_or("AWS_REGION", &var_or("AWS_DEFAULT_REGION", "us-east-1")),
            static_credentials: None,
            operation_timeout: Duration::from_millis(parsed_or(timeout_var, default_ms)?),
        })
    }

    pub fn sqs_from_env() -> Result<Self, ConfigError> {
        Self::from_env_with("SQS_TIMEOUT_MS", 3000)
    }

    pub fn s3_from_env() -> Result<Self, ConfigError> {
        Self::from_env_with("S3_TIMEOUT_MS", 5000)
    }
}

/// `LOG_FORMAT=text`: human-readable log lines instead of JSON (read by `telemetry::init`,
/// before anything else is configured; `RUST_LOG` is read by tracing's own filter).
pub fn log_format_is_text() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|v| v == "text")
}

/// `ORDERS_QUEUE_URL`: where `buy` and `outbox-retry` send order messages.
pub fn orders_queue_url() -> Result<String, ConfigError> {
    var("ORDERS_QUEUE_URL")
}

/// `PAYMENT_TIMEOUTS_QUEUE_URL`: where `order-consumer` sends the delayed payment timeouts.
pub fn payment_timeouts_queue_url() -> Result<String, ConfigError> {
    var("PAYMENT_TIMEOUTS_QUEUE_URL")
}

/// `PUBLISH_DIR`: where the admin's publish writes sale pages when no bucket is set.
pub fn publish_dir() -> PathBuf {
    var_or("PUBLISH_DIR", "/tmp/flash-sale-pages").into()
}

/// Where publishing puts a sale's page and the assets it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishTarget {
    /// `PUBLISH_BUCKET`: an S3 bucket, objects under `p/` (AWS: the template's PagesBucket,
    /// served by CloudFront; locally LocalStack's, served by the runner's `/p/`).
    Bucket(String),
    /// No bucket set: `PUBLISH_DIR` (default `/tmp/flash-sale-pages`), for the tools that run a
    /// function without LocalStack's S3 (`sam local invoke`, `cargo lambda watch`). Never in
    /// AWS: the template always sets the bucket, and an instance's `/tmp` is served by nothing.
    Dir(PathBuf),
}

/// `PUBLISH_BUCKET`, else `PUBLISH_DIR`.
pub fn publish_target() -> Result<PublishTarget, ConfigError> {
    match var("PUBLISH_BUCKET") {
        Ok(bucket) => Ok(PublishTarget::Bucket(bucket_name(bucket.trim())?)),
        Err(_) => Ok(PublishTarget::Dir(publish_dir())),
    }
}

/// Checks an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens, starting
/// and ending with a letter or digit), naming `PUBLISH_BUCKET` if it is not one.
pub fn bucket_name(name: &str) -> Result<String, ConfigError> {
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let bytes = name.as_bytes();
    if (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && !name.contains("..")
    {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::Malformed {
            name: "PUBLISH_BUCKET",
            reason: "an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens".into(),
        })
    }
}

/// Which API a published page calls (`PUBLIC_API_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiBase {
    /// Unset or empty: the origin that served the page (the local runner serves both).
    SameOrigin,
    /// An absolute `http(s)://` URL, without a trailing slash (a custom domain, or the
    /// HttpApi's URL written out); the API must allow the page's origin (CORS).
    Url(String),
    /// `request`: the API the publish request itself came through (`x-forwarded-proto` and
    /// `host` of that request; in AWS the HttpApi's own URL, which template.yaml cannot hand to
    /// a function of that API without a circular dependency).
    Request,
}

/// `PUBLIC_API_URL`: see [`ApiBase`].
pub fn public_api_url() -> Result<ApiBase, ConfigError> {
    api_base(&std::env::var("PUBLIC_API_URL").unwrap_or_default())
}

/// Parses a `PUBLIC_API_URL` value, naming the variable if it is malformed.
pub fn api_base(value: &str) -> Result<ApiBase, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(ApiBase::SameOrigin);
    }
    if value == "request" {
        return Ok(ApiBase::Request);
    }
    let rest = value.strip_prefix("https://").or_else(|| value.strip_prefix("http://"));
    // Only characters a page may put into a URL unescaped (the value lands in an attribute).
    let plain = value.bytes().all(|b| b.is_ascii_graphic() && !b"\"'<>`\\".contains(&b));
    match rest {
        Some(rest) if plain && !rest.is_empty() && !rest.starts_with('/') && !value.contains(['?', '#']) => {
            Ok(ApiBase::Url(value.trim_end_matches('/').to_owned()))
        }
        _ => Err(ConfigError::Malformed {
            name: "PUBLIC_API_URL",
            reason: "empty (same origin), `request`, or an http(s):// URL without query".into(),
        }),
    }
}

/// Publishing: where pages go, which API they call, and the S3 client's settings.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub target: PublishTarget,
    pub api: ApiBase,
    pub s3: S3Config,
}

impl PublishConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { target: publish_target()?, api: public_api_url()?, s3: S3Config::s3_from_env()? })
    }
}

/// `ADMIN_SCOPE`: the OAuth scope an admin token carries (default `admin`; with Cognito
/// `<resource-server>/admin`). The HttpApi's admin routes require the same (template.yaml).
pub fn admin_scope() -> Result<String, ConfigError> {
    let scope = var_or("ADMIN_SCOPE", "admin");
    // RFC 6749 scope-token: printable ASCII except space, '"' and '\'.
    if scope.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\') {
        Ok(scope)
    } else {
        Err(ConfigError::Malformed { name: "ADMIN_SCOPE", reason: "one OAuth scope (printable, no spaces)".into() })
    }
}

/// `WARMUP_HORIZON_SECS`: the scheduled warm-up loads activities starting this soon.
pub fn warmup_horizon() -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(parsed_or("WARMUP_HORIZON_SECS", 3600)?))
}

/// `LOCAL_JWT_SECRET`: the HS256 secret of the local runner's JWT check (local only).
/// The local runner's HS256 secret (`LOCAL_JWT_SECRET`, default `local-dev-secret-change-me`,
/// as `scripts/services.sh` sets it, so `flash-local token` works in a fresh shell too).
pub fn local_jwt_secret() -> Result<String, ConfigError> {
    Ok(var_or("LOCAL_JWT_SECRET", "local-dev-secret-change-me"))
}

/// `CORS_ALLOWED_ORIGINS` (local runner): the origins the runner's CORS answers allow, comma
/// separated, as template.yaml's HttpApi CorsConfiguration allows the pages' CloudFront origin.
/// Empty (the default): same-origin only, no CORS answers at all.
pub fn cors_allowed_origins() -> Result<Vec<String>, ConfigError> {
    origins(&std::env::var("CORS_ALLOWED_ORIGINS").unwrap_or_default())
}

/// Parses a comma-separated list of origins (`http(s)://host[:port]`, no path), naming
/// `CORS_ALLOWED_ORIGINS` if one is not an origin.
pub fn origins(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")).unwrap_or_default();
            let ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if ok {
                Ok(o.to_ascii_lowercase())
            } else {
                Err(ConfigError::Malformed {
                    name: "CORS_ALLOWED_ORIGINS",
                    reason: format!("{o:?} is not an origin (http(s)://host[:port], no path)"),
                })
            }
        })
        .collect()
}

/// The local runner's own settings (it stands in for API Gateway, the SQS event source
/// mappings and EventBridge; none of these exist in AWS).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub listen_addr: String,
    pub web_dir: PathBuf,
    /// Long-poll wait of the local pollers.
    pub poll_wait: Duration,
    /// Pollers per queue (the event source mapping's maximum concurrency).
    pub pollers: usize,
    /// How often `outbox-retry` and `warmup` run (template.yaml: rate(1 minute)).
    pub schedule_every: Duration,
    /// `GATEWAY_THROTTLE_RATE` / `GATEWAY_THROTTLE_BURST`: the stage throttling the HttpApi
    /// applies in AWS (ThrottlingRateLimit / ThrottlingBurstLimit); 0 = none (the default, so
    /// the local benchmark measures the functions).
    pub throttle_rate: u32,
    pub throttle_burst: u32,
}

impl LocalConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: var_or("LISTEN_ADDR", "127.0.0.1:3000"),
            web_dir: var_or("WEB_DIR", "web").into(),
            poll_wait: Duration::from_secs(parsed_or("SQS_POLL_WAIT_SECS", 5)?),
            pollers: parsed_or("SQS_POLLERS", 2)?,
            schedule_every: Duration::from_secs(parsed_or("OUTBOX_RETRY_EVERY_SECS", 60)?),
            throttle_rate: parsed_or("GATEWAY_THROTTLE_RATE", 0)?,
            throttle_burst: parsed_or("GATEWAY_THROTTLE_BURST", 0)?,
        })
    }
}

/// The sale's own knobs.
#[derive(Debug, Clone)]
pub struct SaleConfig {
    /// How long an outbox entry waits after the purchase before `outbox-retry` may resend it.
    pub outbox_retry_after: Duration,
    /// How long a claimed (resent) entry waits before it may be resent again; also what keeps
    /// overlapping `outbox-retry` runs from sending the same entry twice.
    pub outbox_backoff: Duration,
    /// How long a caller waits for another caller's cache rebuild before answering 503.
    pub rebuild_wait: Duration,
    /// How long a "this product has no activity" entry is cached.
    pub negative_ttl: Duration,
    /// How long a buyer has to pay; also the `DelaySeconds` of the payment-timeout message,
    /// so at most 900 s (the SQS maximum).
    pub payment_window: Duration,
    /// Resends of one outbox entry before it is dead-lettered and its unit restored.
    pub outbox_max_attempts: u32,
    /// Entries one `outbox-retry` run claims per product.
    pub outbox_claim_batch: u32,
    /// `outbox-retry` and warm-up look at activities that ended at most this long ago.
    pub horizon: Duration,
    /// How long a product's sale keys (sale, buyers, restored) outlive its activity's end;
    /// `outbox-retry` keeps them while the outbox still has entries.
    pub retention: Duration,
    /// The sweep cancels an unpaid order this long after its `pay_by` if its payment-timeout
    /// message has not (the message is the fast path, the sweep the guarantee).
    pub sweep_grace: Duration,
    /// An outbox entry older than this is dead-lettered even if the queue never accepted it
    /// `outbox_max_attempts` times (SQS unreachable for that long).
    pub outbox_max_age: Duration,
    /// How long one `outbox-retry` run may keep draining (below the function's timeout).
    pub outbox_run_budget: Duration,
    /// `SALE_MEMO_MS`: how long an instance answers "sold out" or "ended" from memory once
    /// Redis said so (see `sale::memo`); 0 turns the memo off.
    pub memo_ttl: Duration,
    /// `SALE_MEMO_UPCOMING_MAX_MS`: the longest an instance answers "not open yet" from memory
    /// (it never does past the start time Redis gave).
    pub memo_upcoming_max: Duration,
    /// `STOCK_CACHE_MS`: how old the stock view an instance serves from memory may be.
    pub stock_cache_ttl: Duration,
    /// `BUCKET_DRY_MS`: how long a bucket of a split sale answers "sold out" once a refill
    /// proved every bucket empty (a unit restored into another bucket meanwhile sells to this
    /// bucket's users at the latest that long after; see `sale::rebalance`).
    pub bucket_dry: Duration,
    /// `BUCKET_REFILL_WAIT_MS`: how long a buy whose bucket is being refilled waits for the
    /// refill before answering 503.
    pub bucket_refill_wait: Duration,
}

impl SaleConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            outbox_retry_after: Duration::from_secs(parsed_or("OUTBOX_RETRY_AFTER_SECS", 30)?),
            outbox_backoff: Duration::from_secs(parsed_or("OUTBOX_BACKOFF_SECS", 60)?),
            rebuild_wait: Duration::from_millis(parsed_or("REBUILD_WAIT_MS", 2000)?),
            negative_ttl: Duration::from_secs(parsed_or("NEGATIVE_CACHE_SECS", 30)?),
            payment_window: {
                let secs: u64 = parsed_or("PAYMENT_WINDOW_SECS", 900)?;
                if secs > 900 {
                    return Err(ConfigError::Malformed {
                        name: "PAYMENT_WINDOW_SECS",
                        reason: "at most 900 (the SQS DelaySeconds maximum)".into(),
                    });
                }
                Duration::from_secs(secs)
            },
            outbox_max_attempts: parsed_or("OUTBOX_MAX_ATTEMPTS", 5)?,
            outbox_claim_batch: parsed_or("OUTBOX_CLAIM_BATCH", 500)?,
            horizon: Duration::from_secs(3600 * parsed_or::<u64>("HORIZON_HOURS", 24)?),
            retention: Duration::from_secs(3600 * parsed_or::<u64>("SALE_RETENTION_HOURS", 24)?),
            sweep_grace: Duration::from_secs(parsed_or("SWEEP_GRACE_SECS", 60)?),
            outbox_max_age: Duration::from_secs(3600 * parsed_or::<u64>("OUTBOX_MAX_AGE_HOURS", 24)?),
            outbox_run_budget: Duration::from_secs(parsed_or("OUTBOX_RUN_BUDGET_SECS", 40)?),
            memo_ttl: Duration::from_millis(parsed_or("SALE_MEMO_MS", 1000)?),
            memo_upcoming_max: Duration::from_millis(parsed_or("SALE_MEMO_UPCOMING_MAX_MS", 30_000)?),
            stock_cache_ttl: Duration::from_millis(parsed_or("STOCK_CACHE_MS", 500)?),
            bucket_dry: Duration::from_millis(parsed_or("BUCKET_DRY_MS", 1000)?),
            bucket_refill_wait: Duration::from_millis(parsed_or("BUCKET_REFILL_WAIT_MS", 3000)?),
        })
    }
}

impl Default for SaleConfig {
    fn default() -> Self {
        Self {
            outbox_retry_after: Duration::from_secs(30),
            outbox_backoff: Duration::from_secs(60),
            rebuild_wait: Duration::from_millis(2000),
            negative_ttl: Duration::from_secs(30),
            payment_window: Duration::from_secs(900),
            outbox_max_attempts: 5,
            outbox_claim_batch: 500,
            horizon: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(24 * 3600),
            sweep_grace: Duration::from_secs(60),
            outbox_max_age: Duration::from_secs(24 * 3600),
            outbox_run_budget: Duration::from_secs(40),
            memo_ttl: Duration::from_millis(1000),
            memo_upcoming_max: Duration::from_secs(30),
            stock_cache_ttl: Duration::from_millis(500),
            bucket_dry: Duration::from_millis(1000),
            bucket_refill_wait: Duration::from_millis(3000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_config_debug_hides_the_password() -> Result<(), ConfigError> {
        let cfg = MysqlConfig::new("mysql://app:hunter2@db.internal:3306/sale")?;
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal:3306/sale"), "{shown}");
        Ok(())
    }

    #[test]
    fn publishing_settings_name_their_variable_when_malformed() {
        assert_eq!(api_base("").ok(), Some(ApiBase::SameOrigin));
        assert_eq!(api_base("request").ok(), Some(ApiBase::Request));
        assert_eq!(
            api_base("https://abc.execute-api.us-east-1.amazonaws.com/").ok(),
            Some(ApiBase::Url("https://abc.execute-api.us-east-1.amazonaws.com".into()))
        );
        for bad in ["abc.example.com", "https://", "https:///x", "http://a\"b", "https://a/?x=1", "ftp://a"] {
            let err = api_base(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("PUBLIC_API_URL"), "{bad}: {err}");
        }
        assert!(bucket_name("flash-pages-1").is_ok());
        for bad in ["ab", "Pages", "-pages", "pages-", "pa..ges", "pages_1"] {
            let err = bucket_name(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("PUBLISH_BUCKET"), "{bad}: {err}");
        }
        assert_eq!(
            origins(" http://localhost:3907, https://d1.cloudfront.net ").ok(),
            Some(vec!["http://localhost:3907".to_owned(), "https://d1.cloudfront.net".to_owned()])
        );
        assert_eq!(origins("").ok(), Some(vec![]));
        let err = origins("https://a.example/path").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("CORS_ALLOWED_ORIGINS"), "{err}");
    }

    #[test]
    fn a_malformed_redis_url_names_its_variable() {
        assert!(redis_url("redis://127.0.0.1:6379".into()).is_ok());
        for bad in ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://127.0.0.1:notaport"] {
            let err = redis_url(bad.into()).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("REDIS_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_malformed_database_url_names_its_variable_and_hides_the_password() {
        for bad in ["postgres://app:hunter2@db/sale", "mysql://app:hunter2@db:notaport/sale", "nonsense"] {
            let err = MysqlConfig::new(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("DATABASE_URL"), "{bad}: {err}");
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
    }
}
