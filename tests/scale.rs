//! Lambda at scale (issue 14): limits that hold across function instances, each instance a
//! separate `flash-local` process with its own in-process state, against the real servers.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Duration as Span;
use flash_tests::{SECRET, TestEnv};

/// A child process killed when dropped.
struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runner_binary() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/flash-local");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): cargo build -p runner --bin flash-local (scripts/test.sh does)", bin.display())
    });
    // A binary older than the code it runs would test yesterday's behaviour.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["lua", "shared/src", "runner/src", "functions"].iter().map(|d| newest_file(&root.join(d))).max();
    assert!(
        newest.flatten().is_none_or(|n| n <= built),
        "{} is older than the sources: cargo build -p runner --bin flash-local (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn newest_file(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() { newest_file(&path) } else { entry.metadata().and_then(|m| m.modified()).ok() };
        newest = newest.max(t);
    }
    newest
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// One more instance of every function: a `flash-local` process on the test's database, key
/// prefix and queues.
async fn instance(env: &TestEnv, product_id: u64) -> (Instance, String) {
    let port = free_port();
    let mut cmd = Command::new(runner_binary());
    cmd.arg("serve")
        .env("REDIS_URL", flash_tests::redis_url())
        .env("REDIS_CLUSTER", flash_tests::redis_cluster().to_string())
        .env("REDIS_KEY_PREFIX", &env.prefix)
        .env("DATABASE_URL", &env.database_url)
        .env("AWS_ENDPOINT_URL", flash_tests::sqs_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("ORDERS_QUEUE_URL", &env.orders_queue_url)
        .env("PAYMENT_TIMEOUTS_QUEUE_URL", &env.timeouts_queue_url)
        .env("LOCAL_JWT_SECRET", SECRET)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(ca) = std::env::var("TEST_REDIS_TLS_CA_FILE") {
        cmd.env("REDIS_TLS_CA_FILE", ca);
    }
    let child = Instance(cmd.spawn().expect("start flash-local"));
    let base = format!("http://127.0.0.1:{port}");
    flash_tests::eventually(Duration::from_secs(30), "the instance answering", || async {
        reqwest::get(format!("{base}/products/{product_id}/stock")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    (child, base)
}

#[tokio::test]
async fn three_instances_admit_at_most_rate_times_time_plus_burst_between_them() {
    let env = TestEnv::start().await;
    let (rate, burst) = (20u32, 10u32);
    let a = env.create_sale(100_000, Span::seconds(-5), Span::hours(1), (rate, burst, 1_000)).await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&env, a.product_id).await);
    }

    // Every instance gets as many distinct buyers as 16 connections can send for 3 s.
    let (admitted, limited) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let run_for = Duration::from_secs(3);
    let mut clients = Vec::new();
    for (_, base) in &instances {
        for _ in 0..16 {
            let (base, admitted, limited) = (base.clone(), admitted.clone(), limited.clone());
            let http = env.http.clone();
            let client = clients.len();
            clients.push(tokio::spawn(async move {
                for i in 0.. {
                    if started.elapsed() >= run_for {
                        break;
                    }
                    let user = format!("scaler-{client}-{i}");
                    let token =
                        runner::auth::mint(SECRET.as_bytes(), &user, None, Duration::from_secs(600)).expect("mint");
                    let r = http
                        .post(format!("{base}/buy"))
                        .bearer_auth(token)
                        .body(format!(r#"{{"product_id":{}}}"#, a.product_id))
                        .send()
                        .await
                        .expect("the instance answers");
                    match r.status().as_u16() {
                        202 => admitted.fetch_add(1, Ordering::SeqCst),
                        429 => limited.fetch_add(1, Ordering::SeqCst),
                        other => panic!("unexpected {other}: {}", r.text().await.unwrap_or_default()),
                    };
                }
            }));
        }
    }
    for c in clients {
        c.await.expect("client");
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(instances);

    let admitted = admitted.load(Ordering::SeqCst) as f64;
    let limited = limited.load(Ordering::SeqCst);
    let ceiling = f64::from(rate) * elapsed + f64::from(burst);
    println!("3 instances, {elapsed:.2} s: {admitted} admitted (ceiling {ceiling:.0}), {limited} answered 429");
    // The bound, with one token of slack for the clock edges.
    assert!(admitted <= ceiling + 1.0, "{admitted} admitted over {elapsed:.2} s; at most {ceiling:.0}");
    // And the bucket refills: more than the burst, about the rate.
    assert!(admitted >= f64::from(burst) + f64::from(rate) * elapsed / 2.0, "{admitted} admitted only");
    assert!(limited > 0, "the load never reached the limit");
    assert_eq!(env.redis_stock(a.product_id).await, Some(100_000 - admitted as i64));
}

#[tokio::test]
async fn the_activity_bucket_spares_the_users_allowance_and_follows_a_change_of_limits_at_once() {
    use shared::redis::scripts::buy::BuyReply;
    const RETRY_AFTER: Duration = Duration::from_secs(30);
    let env = TestEnv::start().await;
    // 1 purchase a second, a burst of 2, 3 attempts per user and minute.
    let a = env.create_sale(100, Span::seconds(-5), Span::hours(1), (1, 2, 3)).await;
    let buy = |user: &'static str| env.sale.redis.buy(a.product_id, user, RETRY_AFTER);
    for user in ["first", "second"] {
        let r = buy(user).await.expect("buy");
        assert!(matches!(r, BuyReply::Queued { .. }), "{user}: {r:?}");
    }
    // The bucket is empty: five refusals for one user, each saying when a token is back...
    for _ in 0..5 {
        let r = buy("patient").await.expect("buy");
        assert!(
            matches!(r, BuyReply::ActivityLimited { retry_after_ms, .. } if (1..=1000).contains(&retry_after_ms)),
            "{r:?}"
        );
    }
    // ...none of which used up that user's 3 attempts: once a token is back, the user buys.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = buy("patient").await.expect("buy");
    assert!(matches!(r, BuyReply::Queued { .. }), "{r:?}");

    // An admin's change applies from the next call: a refresh to a high rate admits at once.
    sqlx::query("UPDATE activities SET rate_limit_per_sec = 1000000, burst = 1000000 WHERE id = ?")
        .bind(a.id)
        .execute(env.sale.db.pool())
        .await
        .expect("update limits");
    let activity = env.sale.db.activity(a.id).await.expect("read").expect("activity");
    env.sale.warm(&activity).await.expect("refresh");
    for user in ["after-1", "after-2", "after-3"] {
        let r = buy(user).await.expect("buy");
        assert!(matches!(r, BuyReply::Queued { .. }), "{user}: {r:?}");
    }
    // And back down to 1 a second, burst 1: one more purchase, then refusals.
    sqlx::query("UPDATE activities SET rate_limit_per_sec = 1, burst = 1 WHERE id = ?")
        .bind(a.id)
        .execute(env.sale.db.pool())
        .await
        .expect("update limits");
    let activity = env.sale.db.activity(a.id).await.expect("read").expect("activity");
    env.sale.warm(&activity).await.expect("refresh");
    let r = buy("down-1").await.expect("buy");
    assert!(matches!(r, BuyReply::Queued { .. }), "{r:?}");
    let r = buy("down-2").await.expect("buy");
    assert!(matches!(r, BuyReply::ActivityLimited { .. }), "{r:?}");
}
