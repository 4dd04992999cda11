//! `--compare-buckets 1,3`: the same sale with its stock in 1 and in 3 buckets (issue 15), on
//! the Redis the functions are configured for (the local TLS cluster: `scripts/bench-buckets.sh`).
//! For each: buy requests per second (every user presses buy once; no page refreshes), and the
//! EVALSHA calls each primary served meanwhile (`INFO commandstats` on every primary, before and
//! after), as a share of all of them. With one bucket one primary serves nearly all; with three,
//! none should serve more than 40%. The run fails if a unit was sold twice or a user got two.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use serde_json::{Value, json};

use super::{
    Args, BoxError, MYSQL, SECRET, cpu_secs, create_queue, node_client, redis_config, sqs_config, start_runner,
};

/// The primaries of the configured Redis (one entry for a single node).
async fn primaries(cfg: &shared::config::RedisConfig) -> Result<Vec<(String, u16)>, BoxError> {
    let mut c = shared::redis::RedisStore::connect(cfg).await?.conn();
    if !cfg.cluster {
        let info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())?;
        return Ok(match info.addr() {
            redis::ConnectionAddr::Tcp(h, p) => vec![(h.clone(), *p)],
            redis::ConnectionAddr::TcpTls { host, port, .. } => vec![(host.clone(), *port)],
            other => return Err(format!("unsupported Redis address {other:?}").into()),
        });
    }
    let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await?;
    let mut out = Vec::new();
    for range in slots {
        let Some(redis::Value::Array(primary)) = range.get(2) else { continue };
        let host: String = redis::from_redis_value_ref(primary.first().ok_or("no host")?)?;
        let port: u16 = redis::from_redis_value_ref(primary.get(1).ok_or("no port")?)?;
        if !out.contains(&(host.clone(), port)) {
            out.push((host, port));
        }
    }
    out.sort();
    Ok(out)
}

/// CPU seconds one node has used (`INFO cpu`: user + system).
async fn node_cpu(c: &mut redis::aio::MultiplexedConnection) -> Result<f64, BoxError> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(c).await?;
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    Ok(field("used_cpu_user:") + field("used_cpu_sys:"))
}

/// `cmdstat_evalsha`'s `calls` on one node.
async fn evalsha_calls(c: &mut redis::aio::MultiplexedConnection) -> Result<u64, BoxError> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

pub async fn compare(a: &Args, counts: &[u16]) -> Result<(), BoxError> {
    let run = Utc::now().format("%H%M%S").to_string();
    println!(
        "stock buckets compared: {} users press buy once, {} units, {} connections, buckets {counts:?} (run {run})",
        a.users, a.units, a.connections
    );
    let database_url = format!("{MYSQL}/flash_bench_buckets");
    {
        let server = sqlx::MySqlPool::connect(MYSQL).await?;
        sqlx::query("DROP DATABASE IF EXISTS flash_bench_buckets").execute(&server).await?;
    }
    shared::mysql::Db::create_and_migrate(&shared::config::MysqlConfig::new(&database_url)?.options).await?;
    let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(2).connect(&database_url).await?;
    let sqs = shared::sqs::client(&sqs_config()).await;
    let redis_cfg = redis_config()?;
    println!("redis: {} ({})", redis_cfg.url, if redis_cfg.cluster { "cluster" } else { "single node" });
    let orders_url = create_queue(&sqs, &format!("bench-{run}-b-orders")).await?;
    let timeouts_url = create_queue(&sqs, &format!("bench-{run}-b-payment-timeouts")).await?;
    let (runner_proc, http, base) =
        start_runner(a, &redis_cfg, &database_url, &orders_url, &timeouts_url, &format!("benchb{run}")).await?;
    let nodes = primaries(&redis_cfg).await?;
    let mut node_conns = Vec::new();
    for (host, port) in &nodes {
        node_conns.push(node_client(&redis_cfg, host, *port)?.get_multiplexed_async_connection().await?);
    }

    let admin = runner::auth::mint(SECRET.as_bytes(), "bench-admin", Some("admin"), Duration::from_secs(7200))?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for &n in counts {
        let post = |path: String, body: Value| {
            http.post(format!("{base}{path}")).bearer_auth(&admin).body(body.to_string()).send()
        };
        let product: Value =
            post("/admin/products".into(), json!({"name": "Bench phone", "price_cents": 99_900})).await?.json().await?;
        let product_id = product["id"].as_u64().ok_or_else(|| format!("product not created: {product}"))?;
        let now = Utc::now();
        let activity: Value = post(
            "/admin/activities".into(),
            json!({
                "product_id": product_id, "stock": a.units, "buckets": n,
                "starts_at": (now - chrono::Duration::seconds(1)).to_rfc3339(),
                "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "rate_limit_per_sec": shared::admin::MAX_RATE_PER_SEC, "burst": shared::admin::MAX_BURST,
                "per_user_per_min": 5,
            }),
        )
        .await?
        .json()
        .await?;
        let activity_id = activity["id"].as_u64().ok_or_else(|| format!("activity not created: {activity}"))?;
        post(format!("/admin/activities/{activity_id}/warmup"), json!({})).await?;
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..a.users)
                .map(|i| runner::auth::mint(SECRET.as_bytes(), &format!("b{n}-u{i}"), None, Duration::from_secs(7200)))
                .collect::<Result<_, _>>()?,
        );
        eprintln!("  {n} bucket(s): product {product_id}, activity {activity_id}; pressing buy ...");

        let mut before = Vec::new();
        let mut cpu_before = Vec::new();
        for c in &mut node_conns {
            before.push(evalsha_calls(c).await?);
            cpu_before.push(node_cpu(c).await?);
        }
        let cpu = |pid: u32| cpu_secs(pid).unwrap_or(f64::NAN);
        let (bench0, runner0) = (cpu(std::process::id()), cpu(runner_proc.0.id()));
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..a.connections)
            .map(|_| {
                let (http, tokens, next, base) = (http.clone(), tokens.clone(), next.clone(), base.clone());
                let body = json!({ "product_id": product_id }).to_string();
                tokio::spawn(async move {
                    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(token) = tokens.get(i) else { break };
                        let code =
                            match http.post(format!("{base}/buy")).bearer_auth(token).body(body.clone()).send().await {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    let text = r.text().await.unwrap_or_default();
                                    if status == 202 {
                                        "accepted".to_owned()
                                    } else {
                                        format!("{status} {}", super::error_code(&text))
                                    }
                                }
                                Err(_) => "transport_error".to_owned(),
                            };
                        *codes.entry(code).or_default() += 1;
                    }
                    codes
                })
            })
            .collect();
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        for w in workers {
            for (k, v) in w.await? {
                *codes.entry(k).or_default() += v;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let (bench_cores, runner_cores) =
            ((cpu(std::process::id()) - bench0) / secs, (cpu(runner_proc.0.id()) - runner0) / secs);
        let mut per_node = Vec::new();
        let mut node_cores = Vec::new();
        for ((c, b), cb) in node_conns.iter_mut().zip(&before).zip(&cpu_before) {
            // The INFO call itself is not an EVALSHA.
            per_node.push(evalsha_calls(c).await?.saturating_sub(*b));
            node_cores.push((node_cpu(c).await? - cb) / secs);
        }
        let total: u64 = per_node.iter().sum();
        let share = |x: u64| if total == 0 { 0.0 } else { x as f64 / total as f64 };
        let max_share = per_node.iter().map(|x| share(*x)).fold(0.0, f64::max);
        let accepted = codes.get("accepted").copied().unwrap_or(0);
        let rate = a.users as f64 / secs;
        let spread: Vec<String> = nodes
            .iter()
            .zip(&per_node)
            .map(|((h, p), x)| format!("{h}:{p} {} ({:.0}%)", super::plot::thousands(*x as f64), 100.0 * share(*x)))
            .collect();
        println!(
            "  {n} bucket(s): buy {} req/s ({} requests in {secs:.1} s), {accepted} × 202; EVALSHA per primary: {}; largest share {:.0}%",
            super::plot::thousands(rate),
            super::plot::thousands(a.users as f64),
            spread.join(", "),
            100.0 * max_share
        );
        println!("    answers: {codes:?}");
        let shown: Vec<String> = node_cores.iter().map(|c| format!("{c:.2}")).collect();
        println!(
            "    CPU (cores, of {} on this machine): bench {bench_cores:.2}, runner {runner_cores:.2}, primaries [{}]",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            shown.join(", ")
        );
        // The sale's own check: no unit twice, no user twice.
        let expected = a.units.min(a.users as i64) as u64;
        if accepted != expected {
            failed.push(format!("{n} bucket(s): {accepted} purchases accepted, {expected} expected"));
        }
        let dup: i64 =
            sqlx::query_scalar("SELECT COUNT(*) - COUNT(DISTINCT user_id) FROM orders WHERE activity_id = ?")
                .bind(activity_id)
                .fetch_one(&pool)
                .await?;
        if dup != 0 {
            failed.push(format!("{n} bucket(s): {dup} users with two orders"));
        }
        results.push(json!({
            "buckets": n, "users": a.users, "units": a.units, "secs": secs, "buy_per_sec": rate,
            "accepted": accepted, "codes": codes,
            "evalsha_per_primary": nodes.iter().zip(&per_node).map(|((h, p), x)| json!({"node": format!("{h}:{p}"), "calls": x, "share": share(*x)})).collect::<Vec<_>>(),
            "largest_share": max_share,
            "cpu_cores": {"bench": bench_cores, "runner": runner_cores, "primaries": node_cores},
        }));
    }
    if let [one, .., many] = results.as_slice() {
        let ratio = many["buy_per_sec"].as_f64().unwrap_or(0.0) / one["buy_per_sec"].as_f64().unwrap_or(1.0);
        println!(
            "  {} buckets vs 1: {ratio:.2} × the buy rate; largest primary share {:.0}% vs {:.0}%",
            many["buckets"],
            100.0 * many["largest_share"].as_f64().unwrap_or(0.0),
            100.0 * one["largest_share"].as_f64().unwrap_or(0.0)
        );
    }
    let path = a.json.with_file_name("buckets.json");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&json!({ "run": run, "results": results }))?)?;
    println!("written: {}", path.display());
    if !failed.is_empty() {
        return Err(failed.join("; ").into());
    }
    Ok(())
}
