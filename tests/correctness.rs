//! The holes a review found (issue 10), each closed and proved against the real Redis, MariaDB
//! and LocalStack. Test names start with the defect's number.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use flash_tests::TestEnv;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{
    domain::{Activity, NewActivity},
    redis::scripts::load_sale::{LoadMode, LoadReply, SaleLoad},
};

/// A second activity for `a`'s product, in MySQL only (not warmed).
async fn later_activity(env: &TestEnv, a: &Activity, stock: i64, starts_at: chrono::DateTime<Utc>) -> Activity {
    let id = env
        .sale
        .db
        .insert_activity(&NewActivity {
            product_id: a.product_id,
            stock,
            starts_at,
            ends_at: starts_at + Span::hours(1),
            rate_limit_per_sec: 1_000_000,
            burst: 1_000_000,
            per_user_per_min: 5,
            buckets: 1,
        })
        .await
        .expect("insert activity");
    env.sale.db.activity(id).await.expect("read").expect("exists")
}

async fn redis_now_ms(env: &TestEnv) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut env.redis()).await.expect("TIME");
    secs * 1000 + micros / 1000
}

// ---------- 1. warming a later activity never replaces the live sale ----------

#[tokio::test]
async fn d01_warming_a_later_activity_through_the_admin_api_leaves_the_open_sale_alone() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    assert_eq!(env.buy("first", a.product_id).await.status, StatusCode::ACCEPTED);

    let b = env.admin_activity(a.product_id, 500, Span::days(2), Span::hours(1)).await;
    let w = env.admin(Method::POST, &format!("/admin/activities/{b}/warmup"), None).await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text);
    assert_eq!(w.json["result"], "deferred", "{}", w.text);
    assert_eq!(w.json["live_activity_id"].as_u64(), Some(a.id), "{}", w.text);

    let s = env.stock(a.product_id).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    assert_eq!((s.json["activity_id"].as_u64(), s.json["stock"].as_i64()), (Some(a.id), Some(4)), "{}", s.text);
    assert_eq!(s.json["state"], "open", "{}", s.text);
    let second = env.buy("second", a.product_id).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);
    assert_eq!(second.json["activity_id"].as_u64(), Some(a.id));

    // The scheduled warm-up (horizon covering B) refreshes A and defers B too.
    let report = env.sale.warm_upcoming(Duration::from_secs(3 * 24 * 3600)).await.expect("warm-up");
    assert_eq!((report.refreshed, report.written), (1, 0), "{report:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(3));
}

#[tokio::test]
async fn d01_the_next_activity_takes_over_only_once_the_live_one_has_ended() {
    let env = TestEnv::start().await;
    // A is open for about two more seconds; B opens a second after A ends.
    let a = env.create_sale(3, Span::seconds(-5), Span::milliseconds(7_000), (1_000_000, 1_000_000, 5)).await;
    let b = later_activity(&env, &a, 50, a.ends_at + Span::seconds(1)).await;

    assert_eq!(env.sale.warm(&b).await.expect("warm B"), LoadReply::Deferred);
    assert_eq!(env.buy("in-a", a.product_id).await.status, StatusCode::ACCEPTED);
    let report = env.sale.warm_upcoming(Duration::from_secs(3600)).await.expect("warm-up");
    assert_eq!((report.refreshed, report.written), (1, 0), "A is still the product's sale: {report:?}");

    // Across the boundary (Redis' clock decides): A has ended, the scheduled warm-up hands over.
    let wait = a.ends_at.timestamp_millis() - redis_now_ms(&env).await + 100;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    env.buy("late-for-a", a.product_id).await.assert_error(403, "sale_not_open");
    let report = env.sale.warm_upcoming(Duration::from_secs(3600)).await.expect("warm-up");
    assert_eq!(report.written, 1, "{report:?}");
    let s = env.stock(a.product_id).await;
    assert_eq!((s.json["activity_id"].as_u64(), s.json["stock"].as_i64()), (Some(b.id), Some(50)), "{}", s.text);
    assert_eq!(s.json["state"], "upcoming", "{}", s.text);

    let wait = b.starts_at.timestamp_millis() - redis_now_ms(&env).await + 100;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let r = env.buy("in-a", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "A's buyer may buy in B: {}", r.text);
    assert_eq!(r.json["activity_id"].as_u64(), Some(b.id));
    assert_eq!(env.redis_stock(a.product_id).await, Some(49));
}

#[tokio::test]
async fn d01_a_load_derived_from_a_stale_reading_loses() {
    let env = TestEnv::start().await;
    let ended = env.create_sale(5, Span::hours(-3), Span::hours(1), (100, 100, 5)).await;
    let p = ended.product_id;
    let load = |activity_id: u64, stock: i64, read_version: Option<String>| SaleLoad {
        activity_id,
        stock,
        starts_at_ms: (Utc::now() + Span::hours(1)).timestamp_millis(),
        ends_at_ms: (Utc::now() + Span::hours(2)).timestamp_millis(),
        read_version,
        ..SaleLoad::absent()
    };
    let (ttl, keep) = (Duration::from_secs(30), Duration::from_secs(3600));
    let read = env.sale.redis.sale_and_outbox(p).await.expect("read").version;
    assert!(read.is_some());
    // Two writers read the same version; the first one's write wins, the second is stale.
    let first = env.sale.redis.load_sale(p, LoadMode::Refresh, &load(9001, 7, read.clone()), ttl, keep).await;
    assert_eq!(first.expect("first"), LoadReply::Written);
    let second = env.sale.redis.load_sale(p, LoadMode::Refresh, &load(9002, 9, read), ttl, keep).await;
    assert_eq!(second.expect("second"), LoadReply::Stale);
    assert_eq!(env.redis_stock(p).await, Some(7));
    // A writer that read nothing (no sale) loses to one that wrote meanwhile, too.
    let blind = env.sale.redis.load_sale(p, LoadMode::Refresh, &load(9003, 1, None), ttl, keep).await;
    assert_eq!(blind.expect("blind"), LoadReply::Stale);
}

// ---------- 2. a repeated buy gets its receipt back ----------

#[tokio::test]
async fn d02_a_repeated_buy_answers_409_with_the_existing_receipt() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let first = env.buy("retrier", a.product_id).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let receipt = first.json["receipt"].as_str().expect("receipt").to_owned();
    for _ in 0..3 {
        let again = env.buy("retrier", a.product_id).await;
        again.assert_error(409, "already_bought");
        assert_eq!(again.json["error"]["receipt"].as_str(), Some(receipt.as_str()), "{}", again.text);
    }
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));
    // The receipt leads to the order, as the lost 202 would have.
    let order = env.order("retrier", &receipt).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text);
}

// ---------- 8. a lost bloom filter is "unknown", not "absent" ----------

#[tokio::test]
async fn d08_after_redis_loses_everything_real_products_answer_and_unknown_ones_still_404() {
    let env = TestEnv::start().await;
    let a = env.open_sale(10).await;
    let b = env.open_sale(20).await;
    env.flush_redis().await;
    let checks = (0..30).map(|i| env.stock(if i % 2 == 0 { a.product_id } else { b.product_id }));
    for s in futures::future::join_all(checks).await {
        assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    }
    let r = env.buy("after-loss", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    env.stock(a.product_id + b.product_id + 1000).await.assert_error(404, "product_not_found");
    let exists: bool =
        redis::cmd("EXISTS").arg(env.sale.redis.keys().bloom()).query_async(&mut env.redis()).await.expect("EXISTS");
    assert!(exists);
}

// ---------- 10. one clock per decision ----------

#[tokio::test]
async fn d10_stock_state_and_buy_agree_at_the_opening_edge() {
    let env = TestEnv::start().await;
    let a = env.create_sale(-1, Span::milliseconds(1_500), Span::hours(1), (1_000_000, 1_000_000, 100)).await;
    // Sampled across the opening: whatever the function's clock says, the stock view's state
    // and buy.lua's decision come from the same (Redis) clock, so they never disagree on which
    // side of the edge a moment is: a buy right after an "upcoming" is refused unless Redis'
    // own clock crossed the edge in between.
    let mut saw = (false, false);
    for i in 0..40 {
        let before = redis_now_ms(&env).await;
        let s = env.stock(a.product_id).await;
        let state = s.json["state"].as_str().unwrap_or_default().to_owned();
        let after = redis_now_ms(&env).await;
        let starts = a.starts_at.timestamp_millis();
        match state.as_str() {
            "upcoming" => {
                assert!(before < starts, "upcoming although Redis' clock was past the start");
                saw.0 = true;
            }
            "open" => {
                assert!(after >= starts, "open although Redis' clock was before the start");
                saw.1 = true;
            }
            other => panic!("state {other}: {}", s.text),
        }
        let r = env.buy(&format!("edge-{i}"), a.product_id).await;
        if r.status == StatusCode::ACCEPTED {
            assert!(redis_now_ms(&env).await >= starts);
        } else {
            r.assert_error(403, "sale_not_open");
            assert!(before < starts || state == "upcoming");
        }
        tokio::time::sleep(Duration::from_millis(75)).await;
    }
    assert_eq!(saw, (true, true), "the samples straddle the opening");
}

// ---------- 11. clicks before the opening do not use up the allowance ----------

#[tokio::test]
async fn d11_early_clicks_do_not_count_against_the_per_user_limit() {
    let env = TestEnv::start().await;
    let a = env.create_sale(5, Span::milliseconds(1_500), Span::hours(1), (1_000_000, 1_000_000, 2)).await;
    for _ in 0..5 {
        env.buy("eager", a.product_id).await.assert_error(403, "sale_not_open");
    }
    let wait = a.starts_at.timestamp_millis() - redis_now_ms(&env).await + 100;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let r = env.buy("eager", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

// ---------- 12. bounded keys, chunked loads ----------

#[tokio::test]
async fn d12_a_sales_keys_expire_after_its_end_plus_the_retention() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    assert_eq!(env.buy("keeper", a.product_id).await.status, StatusCode::ACCEPTED);
    let keys = env.sale.redis.keys();
    let expected = a.ends_at.timestamp_millis() + env.sale.cfg.retention.as_millis() as i64;
    for key in [keys.sale(a.product_id), keys.buyers(a.product_id)] {
        let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query_async(&mut env.redis()).await.expect("PEXPIRETIME");
        assert!((at - expected).abs() < 5, "{key}: expires at {at}, expected {expected}");
    }
}

#[tokio::test]
async fn d12_a_rebuild_of_a_large_sale_is_chunked_and_keeps_every_buyer() {
    const BUYERS: usize = 5_000;
    let env = TestEnv::start().await;
    let a = env.open_sale(-1).await;
    // 5,000 orders already in MySQL (the consumer's rows), then Redis loses the sale.
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO orders (receipt, activity_id, product_id, user_id, price_cents, created_at, pay_by) ",
    );
    q.push_values(0..BUYERS, |mut row, i| {
        row.push_bind(format!("{}-{}-big{i}-u{i}", a.id, a.product_id))
            .push_bind(a.id)
            .push_bind(a.product_id)
            .push_bind(format!("big{i}"))
            .push_bind(1999)
            .push_bind(Utc::now())
            .push_bind(Utc::now() + Span::minutes(15));
    });
    q.build().execute(env.sale.db.pool()).await.expect("orders");
    let keys = env.sale.redis.keys();
    let _: () = redis::cmd("DEL")
        .arg(keys.sale(a.product_id))
        .arg(keys.buyers(a.product_id))
        .query_async(&mut env.redis())
        .await
        .expect("DEL");

    // Every command that touches this product's keys, as the server saw it.
    let client = redis::Client::open(flash_tests::redis_url()).expect("client");
    let monitor = client.get_async_monitor().await.expect("MONITOR");
    let tag = format!("{}:{{p{}}}", env.prefix, a.product_id);
    let watch = tokio::spawn(async move {
        let mut largest = 0usize;
        let mut stream = monitor.into_on_message::<String>();
        while let Some(line) = stream.next().await {
            if line.contains(&tag) {
                largest = largest.max(line.matches("\" \"").count() + 1);
            }
            if line.contains("\"STOP-WATCHING\"") {
                break;
            }
        }
        largest
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = env.stock(a.product_id).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    let _: Option<String> = redis::cmd("ECHO").arg("STOP-WATCHING").query_async(&mut env.redis()).await.ok();
    let largest = tokio::time::timeout(Duration::from_secs(10), watch).await.expect("monitor ends").expect("monitor");
    assert!(largest > 100, "the monitor saw the load ({largest} arguments at most)");
    assert!(largest <= 2_100, "one command carried {largest} arguments");

    let n: usize = redis::cmd("HLEN").arg(keys.buyers(a.product_id)).query_async(&mut env.redis()).await.expect("HLEN");
    assert_eq!(n, BUYERS);
    let again = env.buy("big4321", a.product_id).await;
    again.assert_error(409, "already_bought");
    assert_eq!(again.json["error"]["receipt"], Value::from(format!("{}-{}-big4321-u4321", a.id, a.product_id)));
}

// ---------- 3. every step after a commit is redone ----------

#[tokio::test]
async fn d03_a_dead_letter_committed_by_a_run_that_died_gets_its_unit_back_on_the_next_run() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let receipt = env.buy("victim", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    let m = env.sale.redis.outbox_entry(a.product_id, &receipt).await.expect("read").expect("entry");
    // What outbox-retry's dead letter commits first; then the run is killed before the restore.
    assert!(env.sale.db.insert_failed(&m, "{}", "test: run killed after the commit", 5).await.expect("commit"));
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));

    let report = env.app.outbox_retry.run().await.expect("run");
    assert_eq!(report.sweep.restored, 1, "{report:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(5), "the unit is back");
    assert_eq!(env.outbox_len(a.product_id).await, 0, "and the entry is gone");
    let again = env.app.outbox_retry.run().await.expect("run");
    assert_eq!(again.sweep.restored, 0, "{again:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(5), "once");
    assert_eq!(env.order("victim", &receipt).await.json["status"], "failed");
}

// ---------- 4. a lost payment timeout is swept ----------

async fn set_pay_by(env: &TestEnv, receipt: &str, seconds_ago: u32) {
    sqlx::query("UPDATE orders SET pay_by = NOW(3) - INTERVAL ? SECOND WHERE receipt = ?")
        .bind(seconds_ago)
        .bind(receipt)
        .execute(env.sale.db.pool())
        .await
        .expect("pay_by");
}

#[tokio::test]
async fn d04_unpaid_orders_past_pay_by_and_the_grace_are_cancelled_without_their_timeout_message() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let late = env.buy("late", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    let recent = env.buy("recent", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    env.consume_orders().await;
    // Their timeout messages are never acted on (in the DLQ, say).
    let _ = env.take_all(&env.timeouts_queue_url).await;
    set_pay_by(&env, &late, 120).await;
    set_pay_by(&env, &recent, 10).await; // past pay_by, within the 60 s grace
    assert_eq!(env.redis_stock(a.product_id).await, Some(3));

    let report = env.app.outbox_retry.run().await.expect("run");
    assert_eq!((report.sweep.cancelled, report.sweep.restored), (1, 1), "{report:?}");
    assert_eq!(env.order("late", &late).await.json["status"], "cancelled");
    assert_eq!(env.order("recent", &recent).await.json["status"], "pending_payment");
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));
    env.pay("recent", &recent).await.assert_error(409, "order_cancelled");
    let again = env.app.outbox_retry.run().await.expect("run");
    assert_eq!((again.sweep.cancelled, again.sweep.restored), (0, 0), "{again:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(4), "restored once");
}

// ---------- 5. a second order for one buyer is failed, not swallowed ----------

#[tokio::test]
async fn d05_a_second_receipt_for_one_buyer_becomes_a_failed_purchase_with_its_unit_back() {
    let env = TestEnv::start().await;
    let a = env.open_sale(10).await;
    let first = env.buy("twice", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    // Redis loses the buyer record (not the stock): the same buyer is sold a second unit.
    let _: () = redis::cmd("HDEL")
        .arg(env.sale.redis.keys().buyers(a.product_id))
        .arg(format!("{}:twice", a.id))
        .query_async(&mut env.redis())
        .await
        .expect("HDEL");
    let second = env.buy("twice", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    assert_ne!(first, second);
    assert_eq!(env.redis_stock(a.product_id).await, Some(8));

    env.consume_orders().await;
    let statuses = [
        env.order("twice", &first).await.json["status"].as_str().unwrap_or_default().to_owned(),
        env.order("twice", &second).await.json["status"].as_str().unwrap_or_default().to_owned(),
    ];
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["failed", "pending_payment"], "{statuses:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(9), "the second unit came back");
    assert_eq!(env.outbox_len(a.product_id).await, 0);
    use sqlx::Row;
    let dead: i64 = sqlx::query("SELECT COUNT(*) FROM dead_letters WHERE activity_id = ? AND unit_restored = 1")
        .bind(a.id)
        .fetch_one(env.sale.db.pool())
        .await
        .expect("count")
        .get(0);
    assert_eq!(dead, 1);
}

// ---------- 6. admin numbers are bounded by what the schema holds ----------

#[tokio::test]
async fn d06_admin_numbers_beyond_the_columns_get_400_and_change_nothing() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let before = env.mysql_snapshot().await;
    let starts = Utc::now() + Span::hours(1);
    let base = json!({
        "product_id": a.product_id, "stock": 10,
        "starts_at": starts.to_rfc3339(), "ends_at": (starts + Span::hours(1)).to_rfc3339(),
        "rate_limit_per_sec": 100, "burst": 100, "per_user_per_min": 5,
    });
    let bad: [(&str, Value); 9] = [
        ("rate_limit_per_sec", json!(3_000_000_000u64)),
        ("burst", json!(3_000_000_000u64)),
        ("per_user_per_min", json!(3_000_000_000u64)),
        ("rate_limit_per_sec", json!(2_147_483_648u64)),
        ("stock", json!(1_000_000_000_000i64)),
        ("stock", json!(-2)),
        ("starts_at", json!("0999-01-01T00:00:00Z")),
        ("burst", json!(1_000_001)),
        ("per_user_per_min", json!(0)),
    ];
    for (field, value) in bad {
        let mut body = base.clone();
        body[field] = value.clone();
        if field == "starts_at" {
            body["ends_at"] = json!("0999-01-02T00:00:00Z");
        }
        let r = env.admin(Method::POST, "/admin/activities", Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}={value}: {}", r.text);
        r.assert_error(400, "invalid_request");
        assert!(r.json["error"]["message"].as_str().unwrap_or_default().contains(field), "{field}={value}: {}", r.text);
    }
    let r = env
        .admin(
            Method::POST,
            "/admin/products",
            Some(json!({"name": "x", "description": "", "price_cents": 1u64 << 62})),
        )
        .await;
    r.assert_error(400, "invalid_request");
    assert_eq!(env.mysql_snapshot().await, before);

    // Within the bounds, far-future windows are stored as given (sqlx binds a DateTime<Utc>
    // as a TIMESTAMP, which the server turned into NULL past 2038: a 503 before).
    let mut body = base.clone();
    body["ends_at"] = json!("2040-01-01T00:00:00Z");
    let r = env.admin(Method::POST, "/admin/activities", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["ends_at"], "2040-01-01T00:00:00Z");
}

// ---------- 7. outbox-retry: outages are not attempts; drain; isolate; visit until empty ----------

#[tokio::test]
async fn d07_one_run_drains_a_backlog_isolates_a_broken_product_and_visits_finished_sales() {
    let sale = shared::config::SaleConfig {
        outbox_retry_after: Duration::ZERO,
        outbox_claim_batch: 100,
        ..Default::default()
    };
    let env = TestEnv::start_with(flash_tests::Options { sale, ..Default::default() }).await;
    // 250 purchases nobody acknowledged.
    let a = env.open_sale(250).await;
    let buys = (0..250).map(|i| env.buy_as(format!("backlog-{i}"), a.product_id));
    assert!(futures::future::join_all(buys).await.iter().all(|s| *s == StatusCode::ACCEPTED));
    let _ = env.take_all(&env.orders_queue_url).await;
    // A product whose outbox key is corrupt (the claim fails with WRONGTYPE).
    let broken = env.open_sale(5).await;
    let _: () = redis::cmd("SET")
        .arg(env.sale.redis.keys().outbox_due(broken.product_id))
        .arg("not a sorted set")
        .query_async(&mut env.redis())
        .await
        .expect("SET");
    // A sale that ended three days ago, one purchase of which is still in the outbox.
    let old = env.create_sale(5, Span::days(-4), Span::days(1), (100, 100, 5)).await;
    let m = shared::domain::OrderMessage {
        receipt: format!("{}-{}-straggler-5", old.id, old.product_id),
        activity_id: old.id,
        product_id: old.product_id,
        user_id: "straggler".into(),
        created_at_ms: (old.ends_at - Span::minutes(1)).timestamp_millis(),
    };
    let keys = env.sale.redis.keys();
    let _: () = redis::pipe()
        .hset(keys.outbox(old.product_id), &m.receipt, serde_json::to_string(&m).expect("json"))
        .zadd(keys.outbox_due(old.product_id), &m.receipt, 0)
        .query_async(&mut env.redis())
        .await
        .expect("outbox entry");

    let report = env.app.outbox_retry.run().await.expect("one product's failure does not fail the run");
    assert_eq!(report.products_failed, 1, "{report:?}");
    assert_eq!(report.resent, 250, "the whole backlog in one run: {report:?}");
    // The straggler's sale ended beyond the query's horizon; the product is still visited (it
    // is on the list of products that can sell) and its entry, older than OUTBOX_MAX_AGE
    // (24 h), is dead-lettered with its unit given back.
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(env.outbox_len(old.product_id).await, 0);
    assert_eq!(env.order("straggler", &m.receipt).await.json["status"], "failed");
    let sent = env.take_all(&env.orders_queue_url).await;
    assert_eq!(sent.len(), 250);
}

// ---------- 9. a 503 means nothing changed; admin creates are idempotent ----------

#[tokio::test]
async fn d09_a_payment_that_answers_503_has_paid_nothing_and_a_retry_completes_it() {
    let proxy = flash_tests::proxy::Proxy::start("127.0.0.1:6379".parse().expect("addr")).await;
    let env = TestEnv::start_with(flash_tests::Options {
        redis_url: format!("redis://{}", proxy.addr),
        ..Default::default()
    })
    .await;
    let a = env.open_sale(5).await;
    let receipt = env.buy("payer", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    env.consume_orders().await;

    proxy.cut();
    env.pay("payer", &receipt).await.assert_error(503, "unavailable");
    let status: String = sqlx::query_scalar("SELECT CAST(status AS CHAR) FROM orders WHERE receipt = ?")
        .bind(&receipt)
        .fetch_one(env.sale.db.pool())
        .await
        .expect("status");
    assert_eq!(status, "pending_payment", "a 503 paid nothing");
    proxy.restore();
    let paid = env.pay("payer", &receipt).await;
    assert_eq!((paid.status, paid.json["status"].as_str()), (StatusCode::OK, Some("paid")), "{}", paid.text);
    let again = env.pay("payer", &receipt).await;
    assert_eq!(again.status, StatusCode::OK, "paying twice is the same answer: {}", again.text);
}

#[tokio::test]
async fn d09_admin_creates_with_an_idempotency_key_make_one_row_however_often_retried() {
    let env = TestEnv::start().await;
    let post = |path: &'static str, key: &'static str, body: Value| {
        let env = &env;
        async move {
            let resp = env
                .http
                .post(format!("{}{path}", env.base_url))
                .header("authorization", format!("Bearer {}", env.admin_token()))
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let product = json!({"name": "Kettle", "description": "", "price_cents": 2500});
    let (s1, p1) = post("/admin/products", "create-kettle-1", product.clone()).await;
    let (s2, p2) = post("/admin/products", "create-kettle-1", product.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(p1["id"], p2["id"]);
    let (s3, _) = post("/admin/products", "create-kettle-1", json!({"name": "Other", "price_cents": 1})).await;
    assert_eq!(s3, StatusCode::BAD_REQUEST);
    let products: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(env.sale.db.pool()).await.expect("count");
    assert_eq!(products, 1);

    let starts = Utc::now() + Span::hours(1);
    let activity = json!({
        "product_id": p1["id"], "stock": 3, "starts_at": starts.to_rfc3339(),
        "ends_at": (starts + Span::hours(1)).to_rfc3339(), "rate_limit_per_sec": 10, "burst": 10,
    });
    let replies =
        futures::future::join_all((0..5).map(|_| post("/admin/activities", "kettle-sale", activity.clone()))).await;
    assert!(replies.iter().all(|(s, _)| *s == StatusCode::CREATED), "{replies:?}");
    assert!(replies.iter().all(|(_, a)| a["id"] == replies[0].1["id"]), "{replies:?}");
    let activities: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM activities").fetch_one(env.sale.db.pool()).await.expect("count");
    assert_eq!(activities, 1);
    // Without the header, a create is a create (the documented default).
    let (s4, p4) = post_without_key(&env, product).await;
    assert_eq!(s4, StatusCode::CREATED);
    assert_ne!(p4["id"], p1["id"]);
}

async fn post_without_key(env: &TestEnv, body: Value) -> (StatusCode, Value) {
    let r = env.admin(Method::POST, "/admin/products", Some(body)).await;
    (r.status, r.json)
}

// ---------- 13. statements are bounded in time ----------

#[tokio::test]
async fn d13_a_statement_stuck_on_a_lock_answers_503_within_the_configured_limit() {
    let env = TestEnv::start_with(flash_tests::Options {
        mysql_statement_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let a = env.open_sale(5).await;
    let receipt = env.buy("locked", a.product_id).await.json["receipt"].as_str().expect("receipt").to_owned();
    env.consume_orders().await;
    // Another session holds the order's row lock and does not let go.
    let mut holder = env.sale.db.pool().begin().await.expect("begin");
    sqlx::query("SELECT id FROM orders WHERE receipt = ? FOR UPDATE")
        .bind(&receipt)
        .fetch_one(&mut *holder)
        .await
        .expect("lock");
    // InnoDB's default lock wait is 50 s; the limit is 1 s. Allow far more than the limit but
    // far less than the default, so what is checked is that the limit applies.
    let answer = tokio::time::timeout(Duration::from_secs(20), env.pay("locked", &receipt)).await;
    let answer = answer.expect("answered long before InnoDB's 50 s lock wait");
    answer.assert_error(503, "unavailable");
    holder.rollback().await.expect("rollback");
    let paid = env.pay("locked", &receipt).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
}

// ---------- 14. receipts naming unknown products never reach MySQL ----------

#[tokio::test]
async fn d14_an_order_lookup_for_a_product_the_bloom_filter_rules_out_never_reaches_mysql() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let before = env.app.orders.sale.db.statements_sent();
    for receipt in ["1-987654321-alice-1", "7-4398046511104-bob-3"] {
        env.order("alice", receipt).await.assert_error(404, "order_not_found");
        env.pay("alice", receipt).await.assert_error(404, "order_not_found");
    }
    assert_eq!(env.app.orders.sale.db.statements_sent(), before);
    // A receipt of a listed product does reach MySQL (and is not this user's: 404).
    env.order("alice", &format!("{}-{}-zed-1", a.id, a.product_id)).await.assert_error(404, "order_not_found");
    assert!(env.app.orders.sale.db.statements_sent() > before);
}
