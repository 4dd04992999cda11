//! Stock buckets (issue 15): one sale split over several hash tags, on one node and on the
//! local TLS cluster (`scripts/test.sh` runs this file against both).

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chrono::Duration as Span;
use flash_tests::{Options, TestEnv, eventually};
use futures::{StreamExt, stream};
use reqwest::StatusCode;
use shared::{
    config::{CoreConfig, MetricsConfig, MysqlConfig, SaleConfig},
    domain::{Activity, NewActivity, Shard},
    redis::scripts::buy::BuyReply,
    sale::rebalance::Step,
};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Every unit Redis holds for the activity: each bucket's stock and the units on their way
/// between buckets.
async fn units_in_redis(env: &TestEnv, a: &Activity) -> i64 {
    env.sale.total_stock(a.product_id, a.id, a.buckets).await.expect("total stock")
}

/// Each bucket's stock (None: the bucket does not hold the activity).
async fn bucket_stocks(env: &TestEnv, a: &Activity) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for shard in Shard::all(a.product_id, a.buckets) {
        let b = env.sale.redis.bucket_stock(shard).await.expect("bucket stock");
        out.push(b.filter(|b| b.activity_id == a.id).map(|b| b.stock));
    }
    out
}

/// `n` users who meet `bucket` of a sale of `buckets` buckets.
fn users_of(product_id: u64, bucket: u16, buckets: u16, n: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|u| Shard::of_user(product_id, u, buckets).bucket == bucket)
        .take(n)
        .collect()
}

async fn split_sale(env: &TestEnv, stock: i64, buckets: u16) -> Activity {
    env.create_split_sale(stock, buckets, Span::seconds(-5), Span::hours(1), (1_000_000, 1_000_000, 5)).await
}

#[tokio::test]
async fn twenty_thousand_buyers_of_a_thousand_units_in_three_buckets_get_each_unit_once_and_sold_out_only_when_all_are_gone()
 {
    const UNITS: i64 = 1000;
    const BUYERS: usize = 20_000;
    let env = TestEnv::start().await;
    let a = split_sale(&env, UNITS, 3).await;
    assert_eq!(bucket_stocks(&env, &a).await, vec![Some(334), Some(333), Some(333)]);
    let pollers = env.start_pollers().await;

    // Each answer, and for a sold-out one when it arrived and what Redis held right after it.
    // Bucket 0's users come first: it runs dry while the others are full, so its buyers are
    // served by units moved to it (a sale whose buckets drain evenly would prove less).
    let mut users: Vec<String> = (0..BUYERS).map(|i| format!("crowd-{i}")).collect();
    users.sort_by_key(|u| Shard::of_user(a.product_id, u, 3).bucket);
    type Answer = (String, StatusCode, String, Option<(i64, i64)>);
    let answers: Vec<Answer> = stream::iter(users.iter().map(|u| {
        let env = &env;
        let a = &a;
        async move {
            let r = env.buy(u, a.product_id).await;
            let after = if r.status == StatusCode::CONFLICT && r.error_code() == "sold_out" {
                Some((now_ms(), units_in_redis(env, a).await))
            } else {
                None
            };
            let receipt = r.json["receipt"].as_str().unwrap_or_default().to_owned();
            (u.clone(), r.status, receipt, after)
        }
    }))
    .buffer_unordered(256)
    .collect()
    .await;

    let winners: BTreeMap<&str, &str> =
        answers.iter().filter(|x| x.1 == StatusCode::ACCEPTED).map(|x| (x.0.as_str(), x.2.as_str())).collect();
    let accepted = answers.iter().filter(|x| x.1 == StatusCode::ACCEPTED).count();
    assert_eq!(accepted as i64, UNITS, "exactly the units are sold");
    assert_eq!(winners.len(), accepted, "no user twice");
    let others: BTreeMap<String, usize> =
        answers.iter().filter(|x| x.1 != StatusCode::ACCEPTED).fold(BTreeMap::new(), |mut m, x| {
            *m.entry(format!("{} {}", x.1, if x.3.is_some() { "sold_out" } else { "other" })).or_default() += 1;
            m
        });
    assert_eq!(others.get("409 Conflict sold_out").copied(), Some(BUYERS - UNITS as usize), "{others:?}");
    // Units did move: bucket 0's buyers, who came first, bought more than its third (here
    // typically all of it, drawn from the other buckets by refills).
    let from_bucket_0 = winners.values().filter(|r| Shard::of_receipt(r).map(|s| s.bucket) == Some(0)).count();
    assert!(from_bucket_0 > 334, "bucket 0 sold only {from_bucket_0}");

    // No "sold out" while a unit was left: Redis held none right after each such answer, and
    // none arrived before the last unit was sold (Redis' clock stamps each sale; same host).
    let sold_out: Vec<(i64, i64)> = answers.iter().filter_map(|x| x.3).collect();
    assert!(sold_out.iter().all(|(_, units)| *units == 0), "a sold_out answer while units were left");
    eventually(Duration::from_secs(60), "every order written", || async { env.total_orders(a.id).await == UNITS })
        .await;
    let last_sale: i64 = sqlx::query_scalar(
        "SELECT CAST(ROUND(UNIX_TIMESTAMP(MAX(created_at)) * 1000) AS SIGNED) FROM orders WHERE activity_id = ?",
    )
    .bind(a.id)
    .fetch_one(env.sale.db.pool())
    .await
    .expect("last sale");
    let first_sold_out = sold_out.iter().map(|(at, _)| *at).min().expect("sold-out answers");
    assert!(first_sold_out + 1 >= last_sale, "sold_out at {first_sold_out} before the last sale at {last_sale}");

    // Every receipt is an order of its buyer; reconcile balances, bucket by bucket.
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT receipt, user_id FROM orders WHERE activity_id = ?")
        .bind(a.id)
        .fetch_all(env.sale.db.pool())
        .await
        .expect("orders");
    let rows: BTreeMap<String, String> = rows.into_iter().collect();
    for (user, receipt) in &winners {
        assert_eq!(rows.get(*receipt).map(String::as_str), Some(*user), "{receipt}");
    }
    let r = env.admin(reqwest::Method::GET, &format!("/admin/activities/{}/reconcile", a.id), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["balanced"], true, "{}", r.text);
    assert_eq!(r.json["redis_stock"], 0, "{}", r.text);
    assert_eq!(r.json["buckets"].as_array().map(Vec::len), Some(3), "{}", r.text);
    for p in pollers {
        p.abort();
    }
}

/// The child of the crash test: refills bucket 0 and dies (abort: no destructor, no clean-up)
/// right after the step it is told. Run only by that test, with its variables.
#[tokio::test]
#[ignore = "the crash test's child process"]
async fn refill_child_process() {
    let Ok(stop) = std::env::var("FLASH_CHILD_STOP") else { return };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name}"));
    let core = CoreConfig {
        redis: flash_tests::redis_config(&flash_tests::redis_url(), &var("FLASH_CHILD_PREFIX")),
        mysql: MysqlConfig::new(&var("FLASH_CHILD_DB")).expect("database url"),
        sale: SaleConfig::default(),
        metrics: MetricsConfig::default(),
    };
    let sale = shared::sale::connect(&core, "crash-child").await.expect("connect");
    let product_id: u64 = var("FLASH_CHILD_PRODUCT").parse().expect("product");
    let activity_id: u64 = var("FLASH_CHILD_ACTIVITY").parse().expect("activity");
    let to = Shard { product_id, bucket: 0, buckets: 2 };
    let stop = match stop.as_str() {
        "taken" => Step::Taken,
        "given" => Step::Given,
        _ => Step::Settled,
    };
    let die = move |step: Step| {
        if step == stop {
            std::process::abort();
        }
    };
    let refill = sale.refill_observed(to, activity_id, &die).await;
    panic!("the refill finished without reaching its step: {refill:?}");
}

#[tokio::test]
async fn a_refill_killed_after_each_of_its_steps_loses_and_duplicates_no_unit() {
    let env = TestEnv::start().await;
    for (stop, finished_by_recovery) in [("taken", 1), ("given", 1), ("settled", 0)] {
        let a = split_sale(&env, 10, 2).await;
        assert_eq!(bucket_stocks(&env, &a).await, vec![Some(5), Some(5)]);
        for u in users_of(a.product_id, 0, 2, 5, &format!("{stop}-first")) {
            assert_eq!(env.buy(&u, a.product_id).await.status, StatusCode::ACCEPTED);
        }
        assert_eq!(bucket_stocks(&env, &a).await, vec![Some(0), Some(5)]);

        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "refill_child_process", "--ignored", "--nocapture"])
            .env("FLASH_CHILD_STOP", stop)
            .env("FLASH_CHILD_PREFIX", &env.prefix)
            .env("FLASH_CHILD_DB", &env.database_url)
            .env("FLASH_CHILD_PRODUCT", a.product_id.to_string())
            .env("FLASH_CHILD_ACTIVITY", a.id.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the child");
        assert!(!status.success(), "the child died at its step ({stop}): {status:?}");

        // What the dead refill left: half of bucket 1 taken, then given, then settled.
        let left = bucket_stocks(&env, &a).await;
        let expected = if stop == "taken" { vec![Some(0), Some(2)] } else { vec![Some(3), Some(2)] };
        assert_eq!(left, expected, "after {stop}");
        assert_eq!(units_in_redis(&env, &a).await, 5, "every unit is counted once after the kill ({stop})");

        // outbox-retry's recovery finishes the move; then exactly the 5 units sell, once each.
        // The product also has a later split activity: its recovery must not touch this one's moves.
        let later = NewActivity {
            product_id: a.product_id,
            stock: 7,
            starts_at: a.ends_at + Span::hours(1),
            ends_at: a.ends_at + Span::hours(2),
            rate_limit_per_sec: 1000,
            burst: 1000,
            per_user_per_min: 5,
            buckets: 2,
        };
        let later_id = env.sale.db.insert_activity(&later).await.expect("a later activity");
        assert_eq!(env.sale.recover_moves(a.product_id, 2, later_id).await.expect("recover"), 0, "not its moves");
        assert_eq!(units_in_redis(&env, &a).await, 5, "another activity's recovery leaves the move alone ({stop})");
        let report = env.app.outbox_retry.run().await.expect("outbox-retry");
        assert_eq!(report.moves_finished, finished_by_recovery, "{report:?}");
        assert_eq!(env.sale.recover_moves(a.product_id, 2, a.id).await.expect("recover"), 0, "nothing left");
        assert_eq!(bucket_stocks(&env, &a).await, vec![Some(3), Some(2)], "after recovering from {stop}");
        let later: Vec<String> = (0..20).map(|i| format!("{stop}-later-{i}")).collect();
        let mut accepted = 0;
        for u in &later {
            let r = env.buy(u, a.product_id).await;
            match r.status {
                StatusCode::ACCEPTED => accepted += 1,
                _ => r.assert_error(409, "sold_out"),
            }
        }
        assert_eq!(accepted, 5, "the units left sell exactly once ({stop})");
        assert_eq!(units_in_redis(&env, &a).await, 0);
    }
}

#[tokio::test]
async fn every_part_of_a_split_sale_finds_the_bucket_of_a_purchase() {
    let sale = SaleConfig {
        outbox_retry_after: Duration::ZERO,
        payment_window: Duration::from_secs(1),
        ..Options::default().sale
    };
    let env = TestEnv::start_with(Options { sale, ..Options::default() }).await;
    let a = split_sale(&env, 30, 3).await;

    // Two buyers per bucket; each receipt names the buyer's bucket.
    let mut bought = Vec::new();
    for bucket in 0..3 {
        for u in users_of(a.product_id, bucket, 3, 2, "part") {
            let r = env.buy(&u, a.product_id).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
            let receipt = r.json["receipt"].as_str().expect("receipt").to_owned();
            assert_eq!(Shard::of_receipt(&receipt).map(|s| s.bucket), Some(bucket), "{receipt}");
            bought.push((u, receipt));
        }
    }
    // The stock a page reads is the sum; a repeat answers from the buyer's bucket.
    let s = env.stock(a.product_id).await;
    assert_eq!(s.json["stock"], 24, "{}", s.text);
    let (u2, r2) = bought[4].clone();
    let again = env.buy(&u2, a.product_id).await;
    again.assert_error(409, "already_bought");
    assert_eq!(again.json["error"]["receipt"], r2.as_str());
    // The order status of a bucket-2 purchase, before and after the consumer.
    assert_eq!(env.order(&u2, &r2).await.json["status"], "processing");
    // outbox-retry visits every bucket's outbox (the first sends went too: 6 duplicates).
    let report = env.app.outbox_retry.run().await.expect("outbox-retry");
    assert_eq!(report.resent, 6, "{report:?}");
    env.consume_orders().await;
    assert_eq!(env.total_orders(a.id).await, 6);
    assert_eq!(env.order(&u2, &r2).await.json["status"], "pending_payment");
    for shard in Shard::all(a.product_id, 3) {
        let n: u64 = redis::cmd("HLEN")
            .arg(env.sale.redis.keys().outbox(shard))
            .query_async(&mut env.redis())
            .await
            .expect("HLEN");
        assert_eq!(n, 0, "bucket {} acknowledged", shard.bucket);
    }

    // An unpaid order times out: its unit comes back to the bucket that sold it, once.
    let msg = shared::domain::TimeoutMessage { receipt: r2.clone(), activity_id: a.id, product_id: a.product_id };
    while let shared::orders::Expired::NotDue = env.app.payment_timeout.expire(&msg).await.expect("expire") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    use shared::redis::scripts::restore::RestoreReply;
    assert_eq!(env.sale.give_back(a.product_id, a.id, &r2).await.expect("restore"), RestoreReply::AlreadyRestored);
    assert_eq!(bucket_stocks(&env, &a).await, vec![Some(8), Some(8), Some(9)]);

    // One primary loses bucket 1's keys: the next buy there rebuilds it from MySQL, the
    // outboxes and the surviving buckets; its buyers are still known, no unit is made up.
    let mut c = env.redis();
    let k = env.sale.redis.keys();
    let lost = Shard { product_id: a.product_id, bucket: 1, buckets: 3 };
    let _: () = redis::cmd("DEL").arg(k.sale(lost)).arg(k.buyers(lost)).query_async(&mut c).await.expect("DEL");
    let (u1, r1) = bought[2].clone();
    let r = env.buy(&u1, a.product_id).await;
    r.assert_error(409, "already_bought");
    assert_eq!(r.json["error"]["receipt"], r1.as_str());
    assert_eq!(bucket_stocks(&env, &a).await, vec![Some(8), Some(8), Some(9)], "bucket 1 rebuilt to its part");
    let rec = env.admin(reqwest::Method::GET, &format!("/admin/activities/{}/reconcile", a.id), None).await;
    assert_eq!(rec.json["balanced"], true, "{}", rec.text);
    assert_eq!(rec.json["redis_stock"], 25, "{}", rec.text);
    let per_bucket: Vec<i64> =
        rec.json["buckets"].as_array().expect("buckets").iter().filter_map(|b| b["stock"].as_i64()).collect();
    assert_eq!(per_bucket, vec![8, 8, 9], "{}", rec.text);

    // Redis loses everything: the stock query rebuilds every bucket, the units left shared out.
    env.flush_redis().await;
    let s = env.stock(a.product_id).await;
    assert_eq!(s.json["stock"], 25, "{}", s.text);
    assert_eq!(bucket_stocks(&env, &a).await, vec![Some(9), Some(8), Some(8)]);
    env.buy(&bought[0].0, a.product_id).await.assert_error(409, "already_bought");
}

#[tokio::test]
async fn the_activity_rate_holds_for_the_whole_split_sale() {
    let env = TestEnv::start().await;
    // 30 per second, burst 30, over 3 buckets: each bucket 10/s with a burst of 10.
    let a = env.create_split_sale(1000, 3, Span::seconds(-5), Span::hours(1), (30, 30, 5)).await;
    // Straight to Redis (the instance's own pre-filter would hide the activity's bucket).
    let started = Instant::now();
    let users: Vec<String> = (0..300).map(|i| format!("rate-{i}")).collect();
    let replies: Vec<BuyReply> = stream::iter(users.iter().map(|u| {
        let env = &env;
        async move {
            let shard = Shard::of_user(a.product_id, u, 3);
            env.sale.redis.buy(shard, u, Duration::from_secs(30)).await.expect("buy")
        }
    }))
    .buffer_unordered(64)
    .collect()
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = replies.iter().filter(|r| matches!(r, BuyReply::Queued { .. })).count() as f64;
    let limited = replies.iter().filter(|r| matches!(r, BuyReply::ActivityLimited { .. })).count();
    assert_eq!(accepted as usize + limited, 300, "only these two answers");
    // The bursts (3 × 10) plus what the rate refilled while the test ran; not 3 × 30.
    assert!(accepted <= 30.0 + 30.0 * elapsed + 1.0, "{accepted} accepted in {elapsed:.2} s");
    assert!(accepted >= 20.0, "{accepted} accepted");
    assert!(limited > 0);
}

#[tokio::test]
async fn an_admin_chooses_the_buckets_before_the_sale_opens_and_cannot_after() {
    let env = TestEnv::start().await;
    let product = env.admin_product().await;
    let starts = chrono::Utc::now() + Span::seconds(3);
    let body = |buckets: serde_json::Value| {
        let mut b = serde_json::json!({
            "product_id": product, "stock": 90,
            "starts_at": starts.to_rfc3339(), "ends_at": (starts + Span::hours(1)).to_rfc3339(),
            "rate_limit_per_sec": 100_000, "burst": 100_000, "per_user_per_min": 5,
        });
        if !buckets.is_null() {
            b["buckets"] = buckets;
        }
        b
    };
    let plain = env.admin(reqwest::Method::POST, "/admin/activities", Some(body(serde_json::Value::Null))).await;
    assert_eq!(plain.json["buckets"], 1, "{}", plain.text);
    for bad in [serde_json::json!(0), serde_json::json!(17), serde_json::json!("3")] {
        let before = env.mysql_snapshot().await;
        let r = env.admin(reqwest::Method::POST, "/admin/activities", Some(body(bad.clone()))).await;
        r.assert_error(400, "invalid_request");
        assert_eq!(env.mysql_snapshot().await, before, "{bad} changed nothing");
    }
    let split = env.admin(reqwest::Method::POST, "/admin/activities", Some(body(serde_json::json!(3)))).await;
    assert_eq!(split.status, StatusCode::CREATED, "{}", split.text);
    assert_eq!(split.json["buckets"], 3);
    let id = split.json["id"].as_u64().expect("id");
    let warmed = env.admin(reqwest::Method::POST, &format!("/admin/activities/{id}/warmup"), None).await;
    assert_eq!(warmed.status, StatusCode::OK, "{}", warmed.text);
    let a = env.sale.db.activity(id).await.expect("read").expect("activity");
    assert_eq!(bucket_stocks(&env, &a).await, vec![Some(30), Some(30), Some(30)]);

    // Before it opens: 3 -> 2, the sale in Redis is split anew (nobody can have bought).
    let patched = env
        .admin(reqwest::Method::PATCH, &format!("/admin/activities/{id}"), Some(serde_json::json!({"buckets": 2})))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["buckets"], 2);
    let warmed = env.admin(reqwest::Method::POST, &format!("/admin/activities/{id}/warmup"), None).await;
    assert_eq!(warmed.status, StatusCode::OK, "{}", warmed.text);
    let a = env.sale.db.activity(id).await.expect("read").expect("activity");
    assert_eq!(bucket_stocks(&env, &a).await, vec![Some(45), Some(45)]);
    // The third bucket of the old split now tells anyone who still believes in it the new number.
    let old_third = Shard { product_id: product, bucket: 2, buckets: 3 };
    let stub = env.sale.redis.bucket_stock(old_third).await.expect("read").expect("stub");
    assert_eq!(stub.stock, 0);
    let snap = env.sale.redis.sale(old_third).await.expect("read").expect("stub");
    assert_eq!(snap.buckets, 2);

    // Once it opens: the buckets no longer change, nor does anything else of the request.
    eventually(Duration::from_secs(10), "the sale to open", || async {
        env.stock(product).await.json["state"] == "open"
    })
    .await;
    let before = env.mysql_snapshot().await;
    let late = env
        .admin(
            reqwest::Method::PATCH,
            &format!("/admin/activities/{id}"),
            Some(serde_json::json!({"buckets": 3, "burst": 7})),
        )
        .await;
    late.assert_error(409, "activity_started");
    assert_eq!(env.mysql_snapshot().await, before);
    // Buyers meet two buckets.
    let mut seen = HashSet::new();
    for i in 0..12 {
        let r = env.buy(&format!("opened-{i}"), product).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        seen.insert(Shard::of_receipt(r.json["receipt"].as_str().expect("receipt")).map(|s| s.bucket));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let rec = env.admin(reqwest::Method::GET, &format!("/admin/activities/{id}/reconcile"), None).await;
    assert_eq!(rec.json["buckets"].as_array().map(Vec::len), Some(2), "{}", rec.text);
}
