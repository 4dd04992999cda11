//! Lambda at scale (issue 14): what one function instance answers from its own memory, and
//! the order status a buyer polls, kept in Redis by the pipeline. Against the real Redis,
//! MariaDB and LocalStack; Redis is reached through a TCP proxy where a test must prove that
//! an answer did not need it.

use std::time::{Duration, Instant};

use flash_tests::{Options, Reply, TestEnv, proxy::Proxy};
use reqwest::StatusCode;
use serde_json::Value;
use shared::{config::SaleConfig, domain::TimeoutMessage, orders::Expired};

fn with_memo(memo: Duration, stock_cache: Duration) -> SaleConfig {
    SaleConfig { memo_ttl: memo, memo_upcoming_max: memo, stock_cache_ttl: stock_cache, ..Options::default().sale }
}

/// An app whose Redis is behind a proxy the test can cut.
async fn behind_proxy(sale: SaleConfig) -> (TestEnv, Proxy) {
    let target = flash_tests::redis_url()
        .trim_start_matches("redis://")
        .parse()
        .expect("the single-node Redis URL is host:port");
    let proxy = Proxy::start(target).await;
    let env =
        TestEnv::start_with(Options { redis_url: format!("redis://{}", proxy.addr), sale, ..Options::default() }).await;
    (env, proxy)
}

/// A buy that asks not to be answered from an instance's memory (the sale page's resend).
async fn buy_fresh(env: &TestEnv, user: &str, product_id: u64) -> Reply {
    let resp = env
        .http
        .post(format!("{}/buy", env.base_url))
        .header("authorization", format!("Bearer {}", env.token(user)))
        .header("cache-control", "no-cache")
        .header("content-type", "application/json")
        .body(format!(r#"{{"product_id":{product_id}}}"#))
        .send()
        .await
        .expect("request reaches the runner");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, json, text, retry_after: None, www_authenticate: None }
}

#[tokio::test]
async fn a_sold_out_sale_is_answered_from_the_instance_memory_without_redis() {
    let (env, proxy) = behind_proxy(with_memo(Duration::from_secs(60), Duration::from_secs(60))).await;
    let a = env.open_sale(1).await;
    let won = env.buy("winner", a.product_id).await;
    assert_eq!(won.status, StatusCode::ACCEPTED, "{}", won.text);
    let receipt = won.json["receipt"].as_str().expect("receipt").to_owned();
    env.buy("first-loser", a.product_id).await.assert_error(409, "sold_out");
    let seen = env.stock(a.product_id).await;
    assert_eq!(seen.json["stock"].as_i64(), Some(0), "{}", seen.text);

    // Redis is gone: the instance still knows the sale is sold out, and its stock view...
    proxy.cut();
    for i in 0..20 {
        env.buy(&format!("late-{i}"), a.product_id).await.assert_error(409, "sold_out");
    }
    let s = env.stock(a.product_id).await;
    assert_eq!((s.status, s.json["stock"].as_i64()), (StatusCode::OK, Some(0)), "{}", s.text);
    // ... and who bought: the winner's repeated buy gets her receipt, as buy.lua would answer.
    let repeat = env.buy("winner", a.product_id).await;
    repeat.assert_error(409, "already_bought");
    assert_eq!(repeat.json["error"]["receipt"].as_str(), Some(receipt.as_str()), "{}", repeat.text);
    // A buy that asks past the memo goes to Redis, which is down.
    buy_fresh(&env, "late-0", a.product_id).await.assert_error(503, "unavailable");

    // Back up: the same answer from Redis itself.
    proxy.restore();
    // (The app's Redis connection comes back on its own after the cut; give it a moment.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = buy_fresh(&env, "winner", a.product_id).await;
    while again.status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = buy_fresh(&env, "winner", a.product_id).await;
    }
    again.assert_error(409, "already_bought");
    assert_eq!(again.json["error"]["receipt"].as_str(), Some(receipt.as_str()), "{}", again.text);
}

#[tokio::test]
async fn a_sale_not_open_yet_is_answered_from_memory_until_its_start_only() {
    let (env, proxy) = behind_proxy(with_memo(Duration::from_secs(60), Duration::ZERO)).await;
    let a =
        env.create_sale(5, chrono::Duration::seconds(3), chrono::Duration::hours(1), (1_000_000, 1_000_000, 5)).await;
    env.buy("early", a.product_id).await.assert_error(403, "sale_not_open");
    proxy.cut();
    env.buy("early-2", a.product_id).await.assert_error(403, "sale_not_open");
    proxy.restore();
    // Past the start the memo has nothing to say, however long its bound: the buy reaches
    // Redis (retried only while the app's connection comes back from the cut).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut r = env.buy("on-time", a.product_id).await;
    while r.status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        r = env.buy("on-time", a.product_id).await;
    }
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

#[tokio::test]
async fn a_sold_out_sale_whose_unit_comes_back_sells_it_again_within_the_memo_ttl() {
    let ttl = Duration::from_secs(1);
    let (env, proxy) = behind_proxy(with_memo(ttl, Duration::ZERO)).await;
    let a = env.open_sale(1).await;
    let won = env.buy("unpaid", a.product_id).await;
    assert_eq!(won.status, StatusCode::ACCEPTED, "{}", won.text);
    let receipt = won.json["receipt"].as_str().expect("receipt").to_owned();
    env.consume_orders().await;
    env.buy("waiting", a.product_id).await.assert_error(409, "sold_out");

    // The unpaid order is cancelled (the payment timeout's own call) and its unit comes back.
    sqlx::query("UPDATE orders SET pay_by = NOW(3) - INTERVAL 1 SECOND WHERE receipt = ?")
        .bind(&receipt)
        .execute(env.sale.db.pool())
        .await
        .expect("move pay_by");
    let msg = TimeoutMessage { receipt: receipt.clone(), activity_id: a.id, product_id: a.product_id };
    let expired = env.app.payment_timeout.expire(&msg).await.expect("expire");
    assert!(matches!(expired, Expired::Cancelled(_)), "{expired:?}");
    let came_back = Instant::now();
    assert_eq!(env.redis_stock(a.product_id).await, Some(1));

    // The instance may say sold out for at most its TTL; then the unit sells.
    let mut sold = None;
    while came_back.elapsed() < ttl + Duration::from_secs(3) {
        let r = env.buy("waiting", a.product_id).await;
        if r.status == StatusCode::ACCEPTED {
            sold = Some(came_back.elapsed());
            break;
        }
        r.assert_error(409, "sold_out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sold = sold.expect("the unit that came back was sold again");
    // Bound, not speed: the memo's TTL plus the slack of one retry loop on a loaded machine.
    assert!(sold <= ttl + Duration::from_secs(3), "sold again after {sold:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(0));

    // Sold out again: the instance's copy of the buyers is read anew (their number changed), so
    // the new buyer's repeat gets her receipt from memory too.
    let r = buy_fresh(&env, "waiting", a.product_id).await;
    r.assert_error(409, "already_bought");
    let receipt2 = r.json["error"]["receipt"].as_str().expect("receipt").to_owned();
    env.buy("another", a.product_id).await.assert_error(409, "sold_out");
    proxy.cut();
    let r = env.buy("waiting", a.product_id).await;
    r.assert_error(409, "already_bought");
    assert_eq!(r.json["error"]["receipt"].as_str(), Some(receipt2.as_str()), "{}", r.text);
    env.buy("unpaid", a.product_id).await.assert_error(409, "already_bought");
}

#[tokio::test]
async fn order_status_polls_are_answered_from_redis_and_never_reach_mysql() {
    let env = TestEnv::start().await;
    let a = env.open_sale(3).await;
    let r = env.buy("poller", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let receipt = r.json["receipt"].as_str().expect("receipt").to_owned();
    let db = &env.app.orders.sale.db;

    // Bought, not yet written: processing, from the outbox.
    let before = db.statements_sent();
    let p = env.order("poller", &receipt).await;
    assert_eq!(p.json["status"], "processing", "{}", p.text);
    assert_eq!(db.statements_sent(), before, "a processing poll reached MySQL");

    // Written by the consumer, which keeps the status in Redis: polls stay off MySQL.
    env.consume_orders().await;
    let before = db.statements_sent();
    for _ in 0..20 {
        let p = env.order("poller", &receipt).await;
        assert_eq!(p.json["status"], "pending_payment", "{}", p.text);
        assert!(p.json["order_id"].as_u64().is_some() && p.json["pay_by"].is_string(), "{}", p.text);
    }
    env.order("someone-else", &receipt).await.assert_error(404, "order_not_found");
    assert_eq!(db.statements_sent(), before, "status polls reached MySQL");

    // Paid: the payment keeps the final status; later polls read it from Redis.
    let paid = env.pay("poller", &receipt).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
    let before = db.statements_sent();
    for _ in 0..10 {
        assert_eq!(env.order("poller", &receipt).await.json["status"], "paid");
    }
    assert_eq!(db.statements_sent(), before, "polls of a paid order reached MySQL");

    // Redis lost the status: one poll reads MySQL and keeps what it found; the next do not.
    let _: () = redis::cmd("DEL")
        .arg(env.sale.redis.keys().order_status(a.product_id))
        .query_async(&mut env.redis())
        .await
        .expect("DEL");
    let before = db.statements_sent();
    assert_eq!(env.order("poller", &receipt).await.json["status"], "paid");
    let after_miss = db.statements_sent();
    assert!(after_miss > before, "a miss must be answered from MySQL");
    for _ in 0..10 {
        assert_eq!(env.order("poller", &receipt).await.json["status"], "paid");
    }
    assert_eq!(db.statements_sent(), after_miss, "the refilled status was not used");
}

#[tokio::test]
async fn a_kept_pending_status_is_not_trusted_past_pay_by_so_a_cancellation_shows() {
    let window = Duration::from_secs(1);
    let sale = SaleConfig { payment_window: window, ..Options::default().sale };
    let env = TestEnv::start_with(Options { sale, ..Options::default() }).await;
    let a = env.open_sale(2).await;
    let r = env.buy("late-payer", a.product_id).await;
    let receipt = r.json["receipt"].as_str().expect("receipt").to_owned();
    env.consume_orders().await;
    assert_eq!(env.order("late-payer", &receipt).await.json["status"], "pending_payment");

    let status_key = env.sale.redis.keys().order_status(a.product_id);
    let kept = |env: &TestEnv| {
        let (key, receipt, mut c) = (status_key.clone(), receipt.clone(), env.redis());
        async move {
            let v: Option<String> = redis::cmd("HGET").arg(key).arg(receipt).query_async(&mut c).await.expect("HGET");
            v
        }
    };
    let pending_entry = kept(&env).await.expect("the consumer kept the pending status");
    assert!(pending_entry.contains("pending_payment"), "{pending_entry}");

    // The window runs out and the timeout cancels the order: the kept entry goes.
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let msg = TimeoutMessage { receipt: receipt.clone(), activity_id: a.id, product_id: a.product_id };
    let expired = env.app.payment_timeout.expire(&msg).await.expect("expire");
    assert!(matches!(expired, Expired::Cancelled(_)), "{expired:?}");
    assert_eq!(kept(&env).await, None, "the cancellation left the pending status in Redis");

    // A poll that read MySQL just before the cancellation may put the pending row back (HSETNX
    // after the removal). Staged here: the same entry, its pay_by now in the past.
    let _: () = redis::cmd("HSET")
        .arg(&status_key)
        .arg(&receipt)
        .arg(&pending_entry)
        .query_async(&mut env.redis())
        .await
        .expect("HSET");

    // Past its pay_by the entry is not trusted: MySQL answers, and its final row is kept.
    let db = &env.app.orders.sale.db;
    let before = db.statements_sent();
    let p = env.order("late-payer", &receipt).await;
    assert_eq!(p.json["status"], "cancelled", "{}", p.text);
    assert!(db.statements_sent() > before);
    let before = db.statements_sent();
    assert_eq!(env.order("late-payer", &receipt).await.json["status"], "cancelled");
    assert_eq!(db.statements_sent(), before, "the kept cancellation was not used");
    env.pay("late-payer", &receipt).await.assert_error(409, "order_cancelled");
}
