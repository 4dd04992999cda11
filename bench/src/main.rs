//! `bench`: a flash sale under load, driven over HTTP against the local runner (release build,
//! started as a separate process), each figure printed beside a ceiling measured in the same
//! run on the same machine.
//!
//!   cargo build --release -p runner -p bench
//!   target/release/bench [--users 100000] [--units 1000] [--connections 256] [--json FILE]
//!
//! Phases: the sale (every user refreshes the page, then presses buy), after the sell-out
//! (up to 50,000 users press buy and refresh again), status polling (each winner polls her
//! order 10 times). Each phase reports its rate and latencies, the Redis commands per request
//! on the node that serves the sale (`INFO stats`), and the CPU the load generator and the
//! runner used (from `/proc`), so a figure bounded by the client's own CPU shows as such; the
//! polling phase also reports MySQL SELECTs per poll (`Com_select`).
//!
//! Ceilings: `redis-benchmark` running `buy.lua` by EVALSHA on both branches a buy takes (the
//! full purchase, and the sold-out answer), LocalStack's raw SendMessageBatch and
//! ReceiveMessage+DeleteMessageBatch rates (the drain), MariaDB's multi-row insert rate. The
//! end state is checked and the process exits non-zero if a unit was oversold, an order is
//! missing, or a user got two.
//!
//! Plots (`plot`): beside the JSON, `throughput.svg` (requests completed per 100 ms over the
//! run, one colour per phase) and `latency.svg` (each phase's latency by percentile, log
//! scale); the series they draw are in the JSON under `plots`. Progress goes to stderr: a line
//! per step and, during a phase, every 2 s.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::Row;

mod buckets;
mod plot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SECRET: &str = "bench-secret";
const MYSQL: &str = "mysql://root@127.0.0.1:3306";
const SQS: &str = "http://127.0.0.1:4566";

struct Args {
    users: usize,
    units: i64,
    connections: usize,
    json: PathBuf,
    runner: PathBuf,
    port: u16,
    /// `--compare-buckets 1,3`: instead of the full benchmark, the same sale with each number
    /// of stock buckets (`buckets`).
    compare_buckets: Option<Vec<u16>>,
}

fn args() -> Result<Args, BoxError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        users: 100_000,
        units: 1_000,
        connections: 256,
        json: root.join("target/bench/latest.json"),
        runner: root.join("target/release/flash-local"),
        port: 3917,
        compare_buckets: None,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut it = raw.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => a.users = value.parse()?,
            "--units" => a.units = value.parse()?,
            "--connections" => a.connections = value.parse()?,
            "--json" => a.json = value.into(),
            "--runner" => a.runner = value.into(),
            "--port" => a.port = value.parse()?,
            "--compare-buckets" => {
                a.compare_buckets = Some(value.split(',').map(str::parse).collect::<Result<_, _>>()?);
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn sqs_config() -> shared::config::SqsConfig {
    shared::config::SqsConfig {
        endpoint_url: Some(SQS.into()),
        region: "us-east-1".into(),
        static_credentials: Some(("test".into(), "test".into())),
        operation_timeout: Duration::from_secs(10),
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, BoxError> {
    sqs.create_queue().queue_name(name).send().await?;
    Ok(format!("{SQS}/000000000000/{name}"))
}

// ---------------- ceilings ----------------

/// The Redis the sale runs on: `REDIS_URL`, `REDIS_CLUSTER`, `REDIS_TLS_CA_FILE`,
/// `REDIS_WAIT_REPLICAS` as the functions read them (the local single node by default).
fn redis_config() -> Result<shared::config::RedisConfig, BoxError> {
    if std::env::var("REDIS_URL").is_err() {
        return Ok(shared::config::RedisConfig::local("bench"));
    }
    Ok(shared::config::RedisConfig::from_env()?)
}

/// The node that serves `key` (in a cluster: the primary of its slot) as host and port.
async fn node_for(cfg: &shared::config::RedisConfig, key: &str) -> Result<(String, u16), BoxError> {
    let info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())?;
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
        other => return Err(format!("unsupported Redis address {other:?}").into()),
    };
    if !cfg.cluster {
        return Ok((host, port));
    }
    let mut c = shared::redis::RedisStore::connect(cfg).await?.conn();
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut c).await?;
    let ranges: Vec<(u16, u16, Vec<redis::Value>)> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<Vec<redis::Value>>>(&mut c)
        .await?
        .into_iter()
        .filter_map(|r| {
            let start = redis::from_redis_value_ref(r.first()?).ok()?;
            let end = redis::from_redis_value_ref(r.get(1)?).ok()?;
            let redis::Value::Array(primary) = r.get(2)? else { return None };
            Some((start, end, primary.clone()))
        })
        .collect();
    let (_, _, primary) =
        ranges.iter().find(|(s, e, _)| (*s..=*e).contains(&slot)).ok_or("slot not served by the cluster")?;
    let host: String = redis::from_redis_value_ref(primary.first().ok_or("no host")?)?;
    let port: u16 = redis::from_redis_value_ref(primary.get(1).ok_or("no port")?)?;
    Ok((host, port))
}

/// A client of one node (TLS and the private CA as configured), not of the cluster.
fn node_client(cfg: &shared::config::RedisConfig, host: &str, port: u16) -> Result<redis::Client, BoxError> {
    let scheme = if cfg.url.starts_with("rediss://") { "rediss" } else { "redis" };
    let url = format!("{scheme}://{host}:{port}");
    Ok(match &cfg.tls_ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates { client_tls: None, root_cert: Some(ca.pem.clone()) },
        )?,
        None => redis::Client::open(url)?,
    })
}

/// `redis-benchmark` calling buy.lua by EVALSHA with random users on a sale with `stock`
/// units: with stock to spare every call takes the full path (limit, window, dedupe,
/// decrement, outbox); with 0, the sold-out answer. In a
/// cluster it runs on the primary that serves the sale (one sale lives on one primary).
async fn redis_ceiling(run: &str, cfg: &shared::config::RedisConfig, stock: &str) -> Result<f64, BoxError> {
    let keys = shared::redis::Keys::new(format!("ceil{run}s{stock}"));
    let (host, port) = node_for(cfg, &keys.sale(1)).await?;
    let tls = cfg.url.starts_with("rediss://");
    let mut c = node_client(cfg, &host, port)?.get_multiplexed_async_connection().await?;
    let sha: String =
        redis::cmd("SCRIPT").arg("LOAD").arg(include_str!("../../lua/buy.lua")).query_async(&mut c).await?;
    let now = Utc::now().timestamp_millis();
    let _: () = redis::cmd("HSET")
        .arg(keys.sale(1))
        .arg(&[
            "activity_id",
            "1",
            "stock",
            stock,
            "per_user_per_min",
            "1000000",
            "rate",
            "1000000",
            "burst",
            "1000000",
        ])
        .arg("starts_at")
        .arg(now - 1000)
        .arg("ends_at")
        .arg(now + 3_600_000)
        .query_async(&mut c)
        .await?;
    let mut bench = Command::new("redis-benchmark");
    bench.args(["-h", &host, "-p", &port.to_string()]);
    if tls {
        bench.arg("--tls");
        if let Some(ca) = &cfg.tls_ca {
            bench.arg("--cacert").arg(&ca.path);
        }
    }
    let out = bench
        .args(["-n", "200000", "-c", "256", "-r", "100000000", "-q", "EVALSHA", &sha, "5"])
        .args([keys.sale(1), keys.buyers(1), keys.outbox(1), keys.outbox_due(1), keys.user_limit(1, "__rand_int__")])
        .args(["u__rand_int__", "1", "30000"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rate = text
        .split("requests per second")
        .next()
        .and_then(|head| head.rsplit([' ', ':']).find(|s| !s.is_empty()))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("could not read redis-benchmark output: {text}"))?;
    // Every key it made shares the sale's hash tag, so this one node holds them all.
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("ceil{run}s{stock}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await?;
        if !batch.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(batch).query_async(&mut c).await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(rate)
}

/// LocalStack's raw rates: SendMessageBatch of 10, then ReceiveMessage(10) +
/// DeleteMessageBatch, 8 at a time each.
async fn sqs_ceiling(sqs: &aws_sdk_sqs::Client, run: &str) -> Result<(f64, f64), BoxError> {
    const N: usize = 4000;
    let url = create_queue(sqs, &format!("bench-{run}-ceiling")).await?;
    let started = Instant::now();
    let batches = N / 10;
    let next = AtomicUsize::new(0);
    let senders = (0..8).map(|_| async {
        while next.fetch_add(1, Ordering::Relaxed) < batches {
            let mut req = sqs.send_message_batch().queue_url(&url);
            for i in 0..10 {
                req = req.entries(
                    SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body("x".repeat(150)).build()?,
                );
            }
            req.send().await?;
        }
        Ok::<_, BoxError>(())
    });
    for r in futures::future::join_all(senders).await {
        r?;
    }
    let send_rate = N as f64 / started.elapsed().as_secs_f64();

    let received = AtomicUsize::new(0);
    let started = Instant::now();
    let receivers = (0..8).map(|_| async {
        while received.load(Ordering::Relaxed) < N {
            let got =
                sqs.receive_message().queue_url(&url).max_number_of_messages(10).wait_time_seconds(1).send().await?;
            let entries: Vec<_> = got
                .messages()
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle()?)
                        .build()
                        .ok()
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            received.fetch_add(entries.len(), Ordering::Relaxed);
            sqs.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
        }
        Ok::<_, BoxError>(())
    });
    for r in futures::future::join_all(receivers).await {
        r?;
    }
    let drain_rate = received.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    sqs.delete_queue().queue_url(&url).send().await?;
    Ok((send_rate, drain_rate))
}

/// MariaDB: 50,000 order-shaped rows, 1,000 per INSERT, one connection.
async fn mysql_ceiling(pool: &sqlx::MySqlPool) -> Result<f64, BoxError> {
    sqlx::query("DROP TABLE IF EXISTS ceiling_rows").execute(pool).await?;
    sqlx::query("CREATE TABLE ceiling_rows LIKE orders").execute(pool).await?;
    let now = Utc::now();
    let started = Instant::now();
    for batch in 0..50 {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO ceiling_rows (receipt, activity_id, product_id, user_id, price_cents, created_at, pay_by) ",
        );
        q.push_values(0..1000, |mut b, i| {
            let n = batch * 1000 + i;
            b.push_bind(format!("1-1-user{n}-{n}"))
                .push_bind(1u64)
                .push_bind(1u64)
                .push_bind(format!("user{n}"))
                .push_bind(100i64)
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(pool).await?;
    }
    let rate = 50_000.0 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE ceiling_rows").execute(pool).await?;
    Ok(rate)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s, Linux's `USER_HZ`). `None` where there is no procfs.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Commands the Redis node that serves the sale has processed so far (`INFO stats`).
async fn redis_commands(c: &mut redis::aio::MultiplexedConnection) -> Result<u64, BoxError> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(c).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "INFO stats has no total_commands_processed".into())
}

/// SELECT statements the MySQL server has run so far (every client's).
async fn mysql_selects(pool: &sqlx::MySqlPool) -> Result<u64, BoxError> {
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Com_select'").fetch_one(pool).await?;
    let v: String = row.try_get(1)?;
    Ok(v.parse()?)
}

/// What one phase of load measured: latencies and outcome codes of its requests, and when
/// they completed.
#[derive(Default)]
struct Phase {
    latency_us: Vec<u32>,
    codes: BTreeMap<String, u64>,
    secs: f64,
    started: Option<Instant>,
    series: plot::Series,
}

impl Phase {
    fn per_sec(&self) -> f64 {
        self.latency_us.len() as f64 / self.secs
    }
    fn json(&self) -> Value {
        let v = &self.latency_us;
        json!({"requests": v.len(), "per_sec": self.per_sec(), "codes": self.codes,
               "latency": {"p50_ms": percentile(v, 0.50), "p90_ms": percentile(v, 0.90), "p99_ms": percentile(v, 0.99),
                           "max_ms": v.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0)}})
    }
    fn line(&self, name: &str) {
        let v = &self.latency_us;
        println!(
            "{name:<18} {:>9.0} req/s  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms  {}",
            self.per_sec(),
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            v.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0),
            serde_json::to_string(&self.codes).unwrap_or_default()
        );
    }
}

/// Prints a phase's progress to stderr every 2 s until dropped: time into the phase, requests
/// done of `total`, and the rate since the last line.
struct Progress(tokio::task::JoinHandle<()>);

impl Progress {
    fn start(name: &'static str, done: Arc<AtomicUsize>, total: usize) -> Progress {
        Progress(tokio::spawn(async move {
            let started = Instant::now();
            let mut last = (0, started);
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let (n, now) = (done.load(Ordering::Relaxed), Instant::now());
                let rate = n.saturating_sub(last.0) as f64 / (now - last.1).as_secs_f64();
                eprintln!(
                    "  {name}: {:.0} s, {} of {} requests, {} req/s now",
                    (now - started).as_secs_f64(),
                    plot::thousands(n as f64),
                    plot::thousands(total as f64),
                    plot::thousands(rate)
                );
                last = (n, now);
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `n` requests over `connections` workers; `request(i)` makes the i-th and names its
/// outcome. Latencies are sorted on return.
async fn drive<F, Fut>(name: &'static str, connections: usize, n: usize, request: F) -> Result<Phase, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start(name, done.clone(), n);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (request, next, done) = (request.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                let mut local = Phase::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    let code = request(i).await;
                    local.latency_us.push(t.elapsed().as_micros() as u32);
                    local.series.record(started.elapsed(), &code);
                    *local.codes.entry(code).or_default() += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                local
            })
        })
        .collect();
    let mut all = Phase { started: Some(started), ..Phase::default() };
    for w in workers {
        let local = w.await?;
        all.latency_us.extend(local.latency_us);
        for (k, v) in local.codes {
            *all.codes.entry(k).or_default() += v;
        }
        all.series.merge(local.series);
    }
    all.secs = started.elapsed().as_secs_f64();
    drop(progress);
    eprintln!("  {name}: done, {} requests in {:.1} s", plot::thousands(n as f64), all.secs);
    all.latency_us.sort_unstable();
    Ok(all)
}

/// A response's outcome: its status and, for an error, its code.
async fn outcome(sent: reqwest::Result<reqwest::Response>) -> String {
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if status < 300 { status.to_string() } else { format!("{status} {}", error_code(&body)) }
        }
        Err(_) => "transport_error".to_owned(),
    }
}

// ---------------- the sale ----------------

struct Runner(Child);

/// Starts the runner (release build) on the bench's database, queues and key prefix, and waits
/// until it answers. Returns it with an HTTP client and its base URL.
async fn start_runner(
    a: &Args,
    redis_cfg: &shared::config::RedisConfig,
    database_url: &str,
    orders_url: &str,
    timeouts_url: &str,
    prefix: &str,
) -> Result<(Runner, reqwest::Client, String), BoxError> {
    let log_path = a.runner.with_file_name("bench-runner.log");
    let log = std::fs::File::create(&log_path)?;
    let base = format!("http://127.0.0.1:{}", a.port);
    let runner_proc = Runner(
        Command::new(&a.runner)
            .args(["serve", "--migrate"])
            .env("REDIS_URL", &redis_cfg.url)
            .env("REDIS_CLUSTER", redis_cfg.cluster.to_string())
            .env("REDIS_WAIT_REPLICAS", redis_cfg.wait_replicas.to_string())
            .env("REDIS_KEY_PREFIX", prefix)
            .env("DATABASE_URL", database_url)
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .env("AWS_ENDPOINT_URL", SQS)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("ORDERS_QUEUE_URL", orders_url)
            .env("PAYMENT_TIMEOUTS_QUEUE_URL", timeouts_url)
            .env("SQS_POLLERS", "8")
            .env("SQS_POLL_WAIT_SECS", "1")
            .env("LOCAL_JWT_SECRET", SECRET)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", a.port))
            .env("RUST_LOG", "warn")
            // The instance-local answers as configured (SALE_MEMO_MS=0 STOCK_CACHE_MS=0 runs
            // the sale without them, for the before/after figures).
            .envs(["SALE_MEMO_MS", "STOCK_CACHE_MS"].iter().filter_map(|k| Some((k, std::env::var(k).ok()?))))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                format!("could not start {} (build it: cargo build --release -p runner): {e}", a.runner.display())
            })?,
    );
    let http = reqwest::Client::builder().pool_max_idle_per_host(a.connections).build()?;
    eprintln!("  starting the runner {} (log: {})", a.runner.display(), log_path.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/products/1/stock")).send().await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("runner did not start; see {}", log_path.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((runner_proc, http, base))
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Tally {
    buy_latency_us: Vec<u32>,
    /// The 202s only: the purchases (their latency includes the replica wait and the SQS send).
    accepted_latency_us: Vec<u32>,
    stock_latency_us: Vec<u32>,
    codes: BTreeMap<String, u64>,
    first_accept: Option<chrono::DateTime<Utc>>,
    accepted_users: Vec<usize>,
    /// (user index, receipt) of each 202.
    receipts: Vec<(usize, String)>,
    /// Completions per time bucket: "stock" (or "stock_transport_error") and the buy's code.
    series: plot::Series,
}

fn error_code(body: &str) -> String {
    body.split("\"code\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("unparsed").to_owned()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let a = args()?;
    if let Some(counts) = a.compare_buckets.clone() {
        return buckets::compare(&a, &counts).await;
    }
    let run = Utc::now().format("%H%M%S").to_string();
    println!("flash-sale benchmark: {} users, {} units, {} connections (run {run})", a.users, a.units, a.connections);

    let database_url = format!("{MYSQL}/flash_bench");
    {
        let server = sqlx::MySqlPool::connect(MYSQL).await?;
        sqlx::query("DROP DATABASE IF EXISTS flash_bench").execute(&server).await?;
    }
    shared::mysql::Db::create_and_migrate(&shared::config::MysqlConfig::new(&database_url)?.options).await?;
    let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(2).connect(&database_url).await?;
    let sqs = shared::sqs::client(&sqs_config()).await;

    let redis_cfg = redis_config()?;
    let redis_mode = json!({
        "url": redis_cfg.url, "cluster": redis_cfg.cluster, "tls": redis_cfg.url.starts_with("rediss://"),
        "wait_replicas": redis_cfg.wait_replicas,
    });
    println!(
        "redis: {} ({}{}), purchases wait for {} replica(s)",
        redis_cfg.url,
        if redis_cfg.cluster { "cluster" } else { "single node" },
        if redis_cfg.url.starts_with("rediss://") { ", TLS" } else { "" },
        redis_cfg.wait_replicas
    );
    let memo = json!({
        "sale_memo_ms": std::env::var("SALE_MEMO_MS").unwrap_or_else(|_| "1000 (default)".into()),
        "stock_cache_ms": std::env::var("STOCK_CACHE_MS").unwrap_or_else(|_| "500 (default)".into()),
    });
    println!("instance-local answers: {memo}");
    println!("measuring ceilings ...");
    // One ceiling per branch the buys take: the full purchase, and the sold-out answer (what
    // 99% of a sale's buys get from Redis).
    eprintln!("  ceiling 1/4: redis-benchmark, 200,000 EVALSHA buy.lua, the full purchase");
    let evalsha = redis_ceiling(&run, &redis_cfg, "1000000000").await?;
    eprintln!("  ceiling 2/4: redis-benchmark, 200,000 EVALSHA buy.lua, the sold-out branch");
    let evalsha_sold_out = redis_ceiling(&run, &redis_cfg, "0").await?;
    eprintln!("  ceiling 3/4: LocalStack, 4,000 messages sent in batches, then received and deleted");
    let (sqs_send, sqs_drain) = sqs_ceiling(&sqs, &run).await?;
    eprintln!("  ceiling 4/4: MariaDB, 50,000 rows in 1,000-row INSERTs");
    let mysql_rows = mysql_ceiling(&pool).await?;

    let orders_url = create_queue(&sqs, &format!("bench-{run}-orders")).await?;
    let timeouts_url = create_queue(&sqs, &format!("bench-{run}-payment-timeouts")).await?;
    let prefix = format!("bench{run}");
    let (runner_proc, http, base) =
        start_runner(&a, &redis_cfg, &database_url, &orders_url, &timeouts_url, &prefix).await?;

    let admin = runner::auth::mint(SECRET.as_bytes(), "bench-admin", Some("admin"), Duration::from_secs(7200))?;
    let post =
        |path: &str, body: Value| http.post(format!("{base}{path}")).bearer_auth(&admin).body(body.to_string()).send();
    let product: Value =
        post("/admin/products", json!({"name": "Bench phone", "price_cents": 99_900})).await?.json().await?;
    let product_id = product["id"].as_u64().ok_or_else(|| format!("product not created: {product}"))?;
    let now = Utc::now();
    let activity: Value = post(
        "/admin/activities",
        json!({
            "product_id": product_id, "stock": a.units, "starts_at": (now - chrono::Duration::seconds(1)).to_rfc3339(),
            "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(), "rate_limit_per_sec": shared::admin::MAX_RATE_PER_SEC,
            "burst": shared::admin::MAX_BURST, "per_user_per_min": 5,
        }),
    )
    .await?
    .json()
    .await?;
    let activity_id = activity["id"].as_u64().ok_or_else(|| format!("activity not created: {activity}"))?;
    post(&format!("/admin/activities/{activity_id}/warmup"), json!({})).await?;

    eprintln!("  sale set up (product {product_id}, activity {activity_id}); minting {} tokens", a.users);
    let tokens: Vec<String> = (0..a.users)
        .map(|i| runner::auth::mint(SECRET.as_bytes(), &format!("u{i}"), None, Duration::from_secs(7200)))
        .collect::<Result<_, _>>()?;
    let tokens = Arc::new(tokens);
    let sale_key = shared::redis::Keys::new(format!("bench{run}")).sale(product_id);
    let (sale_host, sale_port) = node_for(&redis_cfg, &sale_key).await?;
    let mut sale_redis = node_client(&redis_cfg, &sale_host, sale_port)?.get_multiplexed_async_connection().await?;
    let runner_pid = runner_proc.0.id();
    let me = std::process::id();
    let cpu = |pid: u32| cpu_secs(pid).unwrap_or(f64::NAN);
    println!("running the sale ...");
    let (redis_before, bench_cpu0, runner_cpu0) = (redis_commands(&mut sale_redis).await?, cpu(me), cpu(runner_pid));

    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start("sale", done.clone(), 2 * a.users);
    let started = Instant::now();
    let workers: Vec<_> = (0..a.connections)
        .map(|_| {
            let (http, tokens, next, tally, base, done) =
                (http.clone(), tokens.clone(), next.clone(), tally.clone(), base.clone(), done.clone());
            let buy_body = json!({ "product_id": product_id }).to_string();
            tokio::spawn(async move {
                let mut local = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { break };
                    // A page refresh, then the click.
                    let t = Instant::now();
                    match http.get(format!("{base}/products/{product_id}/stock")).send().await {
                        Ok(r) => {
                            let _ = r.bytes().await;
                            local.stock_latency_us.push(t.elapsed().as_micros() as u32);
                            local.series.record(started.elapsed(), "stock");
                        }
                        Err(_) => {
                            *local.codes.entry("stock_transport_error".into()).or_default() += 1;
                            local.series.record(started.elapsed(), "stock_transport_error");
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let sent = http.post(format!("{base}/buy")).bearer_auth(token).body(buy_body.clone()).send().await;
                    let code = match sent {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.text().await.unwrap_or_default();
                            if status == 202 {
                                local.accepted_users.push(i);
                                if let Some(r) = body.split("\"receipt\":\"").nth(1).and_then(|s| s.split('"').next()) {
                                    local.receipts.push((i, r.to_owned()));
                                }
                                local.first_accept.get_or_insert_with(Utc::now);
                                "accepted".to_owned()
                            } else {
                                format!("{status} {}", error_code(&body))
                            }
                        }
                        Err(_) => "transport_error".to_owned(),
                    };
                    let took = t.elapsed().as_micros() as u32;
                    local.buy_latency_us.push(took);
                    if code == "accepted" {
                        local.accepted_latency_us.push(took);
                    }
                    local.series.record(started.elapsed(), &code);
                    *local.codes.entry(code).or_default() += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                let mut all = tally.lock().unwrap_or_else(|p| p.into_inner());
                all.buy_latency_us.extend(local.buy_latency_us);
                all.accepted_latency_us.extend(local.accepted_latency_us);
                all.stock_latency_us.extend(local.stock_latency_us);
                all.accepted_users.extend(local.accepted_users);
                all.receipts.extend(local.receipts);
                for (k, v) in local.codes {
                    *all.codes.entry(k).or_default() += v;
                }
                all.series.merge(local.series);
                all.first_accept = match (all.first_accept, local.first_accept) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let load_secs = started.elapsed().as_secs_f64();
    drop(progress);
    eprintln!("  sale: done, {} requests in {load_secs:.1} s", plot::thousands(2.0 * a.users as f64));
    let (redis_after, bench_cpu1, runner_cpu1) = (redis_commands(&mut sale_redis).await?, cpu(me), cpu(runner_pid));
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let sale_requests = (t.buy_latency_us.len() + t.stock_latency_us.len()) as f64;
    // The INFO call itself counts once.
    let sale_redis_per_request = redis_after.saturating_sub(redis_before + 1) as f64 / sale_requests;
    let sale_cpu = json!({"bench_cores": (bench_cpu1 - bench_cpu0) / load_secs,
                          "runner_cores": (runner_cpu1 - runner_cpu0) / load_secs});

    // The drain: wait for every order row.
    eprintln!("  waiting for the {} order rows (the drain) ...", a.units);
    let drain_started = Instant::now();
    let drain_deadline = drain_started + Duration::from_secs(600);
    let mut drain_said = drain_started;
    let (orders, last_insert) = loop {
        let row = sqlx::query("SELECT COUNT(*), MAX(inserted_at) FROM orders WHERE activity_id = ?")
            .bind(activity_id)
            .fetch_one(&pool)
            .await?;
        let (n, last): (i64, Option<chrono::DateTime<Utc>>) = (row.get(0), row.get(1));
        if n >= a.units || Instant::now() > drain_deadline {
            eprintln!("  drain: {n} of {} order rows ({:.1} s)", a.units, drain_started.elapsed().as_secs_f64());
            break (n, last);
        }
        if drain_said.elapsed() >= Duration::from_secs(2) {
            drain_said = Instant::now();
            eprintln!("  drain: {n} of {} order rows ({:.0} s)", a.units, drain_started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drain_secs = match (t.first_accept, last_insert) {
        (Some(first), Some(last)) => (last - first).num_milliseconds().max(1) as f64 / 1000.0,
        _ => f64::NAN,
    };
    let distinct: i64 = sqlx::query("SELECT COUNT(DISTINCT user_id) FROM orders WHERE activity_id = ?")
        .bind(activity_id)
        .fetch_one(&pool)
        .await?
        .get(0);
    let reconcile: Value = http
        .get(format!("{base}/admin/activities/{activity_id}/reconcile"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;

    // ---- after the sell-out: every user presses buy again and refreshes the page ----
    println!("after the sell-out ...");
    let again = a.users.min(50_000);
    let (r0, b0, n0) = (redis_commands(&mut sale_redis).await?, cpu(me), cpu(runner_pid));
    let after = {
        let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
        let buy_body = json!({ "product_id": product_id }).to_string();
        drive("after sell-out", a.connections, 2 * again, move |i| {
            let (http, base, tokens, buy_body) = (http.clone(), base.clone(), tokens.clone(), buy_body.clone());
            async move {
                let user = i / 2;
                if i % 2 == 0 {
                    outcome(http.get(format!("{base}/products/{product_id}/stock")).send().await).await
                } else {
                    let token = tokens.get(user).cloned().unwrap_or_default();
                    outcome(http.post(format!("{base}/buy")).bearer_auth(token).body(buy_body).send().await).await
                }
            }
        })
        .await?
    };
    let (r1, b1, n1) = (redis_commands(&mut sale_redis).await?, cpu(me), cpu(runner_pid));
    let after_redis_per_request = r1.saturating_sub(r0 + 1) as f64 / after.latency_us.len() as f64;
    let after_cpu = json!({"bench_cores": (b1 - b0) / after.secs, "runner_cores": (n1 - n0) / after.secs});

    // ---- the winners poll their order's status ----
    println!("status polling ...");
    let polls_each = 10;
    let winners = Arc::new(t.receipts.clone());
    let (q0, r0, b0, n0) =
        (mysql_selects(&pool).await?, redis_commands(&mut sale_redis).await?, cpu(me), cpu(runner_pid));
    let polling = {
        let (http, base, tokens, winners) = (http.clone(), base.clone(), tokens.clone(), winners.clone());
        drive("status polling", a.connections, polls_each * winners.len(), move |i| {
            let (http, base, tokens, winners) = (http.clone(), base.clone(), tokens.clone(), winners.clone());
            async move {
                let Some((user, receipt)) = winners.get(i % winners.len().max(1)) else { return "no_winner".into() };
                let token = tokens.get(*user).cloned().unwrap_or_default();
                outcome(http.get(format!("{base}/orders/{receipt}")).bearer_auth(token).send().await).await
            }
        })
        .await?
    };
    let (q1, r1, b1, n1) =
        (mysql_selects(&pool).await?, redis_commands(&mut sale_redis).await?, cpu(me), cpu(runner_pid));
    let polls = polling.latency_us.len() as f64;
    // The two SHOW STATUS reads are not SELECTs; the runner's schedules may add a few.
    let mysql_per_poll = q1.saturating_sub(q0) as f64 / polls;
    let poll_redis_per_request = r1.saturating_sub(r0 + 1) as f64 / polls;
    let poll_cpu = json!({"bench_cores": (b1 - b0) / polling.secs, "runner_cores": (n1 - n0) / polling.secs});

    t.buy_latency_us.sort_unstable();
    t.accepted_latency_us.sort_unstable();
    t.stock_latency_us.sort_unstable();
    let buys = t.buy_latency_us.len();
    let buy_rps = buys as f64 / load_secs;
    let stock_rps = t.stock_latency_us.len() as f64 / load_secs;
    let accepted = t.accepted_users.len() as i64;
    let orders_per_sec = orders as f64 / drain_secs;
    let lat = |v: &[u32]| {
        json!({"p50_ms": percentile(v, 0.50), "p90_ms": percentile(v, 0.90), "p99_ms": percentile(v, 0.99),
               "max_ms": v.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0)})
    };
    // ---- the plots: throughput over the run, latency by percentile ----
    let since_sale = |p: &Phase| p.started.map_or(0.0, |s| (s - started).as_secs_f64());
    let subtitle = format!(
        "{} users, {} units, {} connections; Redis {}{}; SALE_MEMO_MS {}, STOCK_CACHE_MS {}; {} cores; {}",
        plot::thousands(a.users as f64),
        plot::thousands(a.units as f64),
        a.connections,
        if redis_cfg.cluster { "cluster" } else { "single node" },
        if redis_cfg.url.starts_with("rediss://") { " (TLS)" } else { "" },
        std::env::var("SALE_MEMO_MS").unwrap_or_else(|_| "1000".into()),
        std::env::var("STOCK_CACHE_MS").unwrap_or_else(|_| "500".into()),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    let (throughput_svg, throughput_data) = plot::throughput(
        &[
            plot::TimelinePhase {
                label: "the sale (stock + buy)",
                colour: plot::SALE,
                start_s: 0.0,
                secs: load_secs,
                series: &t.series,
                highlight: Some(("accepted", "the sale: 202 accepted", plot::ACCEPTED)),
            },
            plot::TimelinePhase {
                label: "after the sell-out (buy + stock)",
                colour: plot::AFTER,
                start_s: since_sale(&after),
                secs: after.secs,
                series: &after.series,
                highlight: None,
            },
            plot::TimelinePhase {
                label: "status polling (GET /orders)",
                colour: plot::POLLING,
                start_s: since_sale(&polling),
                secs: polling.secs,
                series: &polling.series,
                highlight: None,
            },
        ],
        &subtitle,
    );
    let (latency_svg, latency_data) = plot::latency(
        &[
            plot::LatencySeries {
                label: "the sale: buy",
                colour: plot::SALE,
                dash: None,
                sorted_us: &t.buy_latency_us,
            },
            plot::LatencySeries {
                label: "the sale: stock",
                colour: plot::SALE,
                dash: Some("2 3"),
                sorted_us: &t.stock_latency_us,
            },
            plot::LatencySeries {
                label: "the sale: the 202s only",
                colour: plot::ACCEPTED,
                dash: Some("6 3"),
                sorted_us: &t.accepted_latency_us,
            },
            plot::LatencySeries {
                label: "after the sell-out",
                colour: plot::AFTER,
                dash: None,
                sorted_us: &after.latency_us,
            },
            plot::LatencySeries {
                label: "status polling",
                colour: plot::POLLING,
                dash: None,
                sorted_us: &polling.latency_us,
            },
        ],
        &subtitle,
    );
    let throughput_path = a.json.with_file_name("throughput.svg");
    let latency_path = a.json.with_file_name("latency.svg");
    let plots = json!({
        "files": {"throughput": throughput_path, "latency": latency_path},
        "throughput": throughput_data,
        "latency": latency_data,
    });

    let checks = json!({
        "accepted_equals_units": accepted == a.units,
        "orders_equal_units": orders == a.units,
        "no_user_twice": distinct == orders,
        "reconcile_balanced": reconcile["balanced"] == true,
    });
    let report = json!({
        "when": Utc::now().to_rfc3339(),
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "params": {"users": a.users, "units": a.units, "connections": a.connections},
        "redis": redis_mode,
        "memo": memo,
        "buy": {"requests": buys, "per_sec": buy_rps, "latency": lat(&t.buy_latency_us),
                "accepted_latency": lat(&t.accepted_latency_us)},
        "stock": {"requests": t.stock_latency_us.len(), "per_sec": stock_rps, "latency": lat(&t.stock_latency_us)},
        "codes": t.codes,
        "drain": {"orders": orders, "seconds_first_202_to_last_row": drain_secs, "orders_per_sec": orders_per_sec},
        "sale_redis_commands_per_request": sale_redis_per_request,
        "sale_cpu": sale_cpu,
        "after_sell_out": {"phase": after.json(), "redis_commands_per_request": after_redis_per_request, "cpu": after_cpu},
        "status_polling": {"phase": polling.json(), "mysql_selects_per_poll": mysql_per_poll,
                           "redis_commands_per_poll": poll_redis_per_request, "cpu": poll_cpu},
        "ceilings": {"redis_evalsha_buy_lua_per_sec": evalsha, "redis_evalsha_sold_out_branch_per_sec": evalsha_sold_out, "localstack_send_batch_msgs_per_sec": sqs_send,
                     "localstack_receive_delete_msgs_per_sec": sqs_drain, "mariadb_multirow_insert_rows_per_sec": mysql_rows},
        "ratios": {"buy_vs_evalsha": buy_rps / evalsha, "buy_vs_evalsha_sold_out_branch": buy_rps / evalsha_sold_out, "drain_vs_localstack_receive_delete": orders_per_sec / sqs_drain,
                   "drain_vs_mariadb_insert": orders_per_sec / mysql_rows},
        "reconcile": reconcile,
        "checks": checks,
        "plots": plots,
    });

    println!();
    println!("{:<44} {:>12} {:>12} {:>8}", "figure", "measured", "ceiling", "ratio");
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>8.3}",
        "buy requests/s (vs EVALSHA buy.lua/s)",
        buy_rps,
        evalsha,
        buy_rps / evalsha
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>8.3}",
        "buy requests/s (vs the sold-out branch/s)",
        buy_rps,
        evalsha_sold_out,
        buy_rps / evalsha_sold_out
    );
    println!("{:<44} {:>12.0}", "stock queries/s", stock_rps);
    println!(
        "{:<44} {:>12.1} {:>12.0} {:>8.3}",
        "orders drained/s (vs LocalStack recv+del/s)",
        orders_per_sec,
        sqs_drain,
        orders_per_sec / sqs_drain
    );
    println!(
        "{:<44} {:>12.1} {:>12.0} {:>8.4}",
        "orders drained/s (vs MariaDB rows/s)",
        orders_per_sec,
        mysql_rows,
        orders_per_sec / mysql_rows
    );
    println!("{:<44} {:>12.0}", "LocalStack SendMessageBatch msgs/s", sqs_send);
    for (name, v) in [
        ("buy latency ms:  ", &t.buy_latency_us),
        ("202 latency ms:  ", &t.accepted_latency_us),
        ("stock latency ms:", &t.stock_latency_us),
    ] {
        println!(
            "{name} p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            v.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0)
        );
    }
    println!("outcomes: {}", serde_json::to_string(&t.codes)?);
    println!("sale: Redis commands per request {sale_redis_per_request:.3}; CPU cores used: {sale_cpu}");
    after.line("after sell-out:");
    println!("  Redis commands per request {after_redis_per_request:.4} (target <= 0.05); CPU cores used: {after_cpu}");
    polling.line("status polls:");
    println!(
        "  MySQL SELECTs per poll {mysql_per_poll:.4} (target <= 0.05); Redis commands per poll {poll_redis_per_request:.2}; CPU cores used: {poll_cpu}"
    );
    println!("drain: {orders} orders, first 202 -> last row {drain_secs:.2} s");
    println!("end state: {checks}");
    if let Some(dir) = a.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&report)?)?;
    println!("json: {}", a.json.display());
    std::fs::write(&throughput_path, throughput_svg)?;
    std::fs::write(&latency_path, latency_svg)?;
    println!("plots: {} {}", throughput_path.display(), latency_path.display());

    if checks.as_object().is_some_and(|c| c.values().any(|v| v != true)) {
        eprintln!("END STATE CHECK FAILED: {checks} (reconcile: {reconcile})");
        std::process::exit(1);
    }
    Ok(())
}
