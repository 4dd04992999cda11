//! The buy path end to end against the real Redis, MariaDB and LocalStack (issue 2).

use std::{collections::HashSet, time::Duration};

use chrono::Duration as Span;
use flash_tests::{Options, TestEnv, proxy::Proxy};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use shared::{
    domain::OrderMessage,
    redis::scripts::buy::{BuyReply, Limits},
};

const RETRY_AFTER: Duration = Duration::from_secs(30);

// ---------- the Lua script, every outcome, on real Redis ----------

#[tokio::test]
async fn buy_script_reports_not_loaded_for_a_product_without_keys() {
    let env = TestEnv::start().await;
    let reply = env.sale.redis.buy(4242, "alice", RETRY_AFTER).await.unwrap();
    assert_eq!(reply, BuyReply::NotLoaded);
}

#[tokio::test]
async fn buy_script_queues_decrements_and_writes_the_outbox_entry() {
    let env = TestEnv::start().await;
    let a = env.open_sale(3).await;
    let reply = env.sale.redis.buy(a.product_id, "alice", RETRY_AFTER).await.unwrap();
    let BuyReply::Queued { receipt, message, limits } = reply else { panic!("{reply:?}") };
    assert_eq!(receipt, format!("{}-{}-alice-3", a.id, a.product_id));
    assert_eq!(limits, Limits { rate_per_sec: 1_000_000, burst: 1_000_000, activity_id: a.id });
    let m: OrderMessage = serde_json::from_str(&message).unwrap();
    assert_eq!(
        (m.receipt.as_str(), m.activity_id, m.product_id, m.user_id.as_str()),
        (receipt.as_str(), a.id, a.product_id, "alice")
    );
    assert!((m.created_at_ms - chrono::Utc::now().timestamp_millis()).abs() < 5_000, "{}", m.created_at_ms);
    assert_eq!(env.redis_stock(a.product_id).await, Some(2));
    assert_eq!(env.outbox_len(a.product_id).await, 1);
    let mut c = env.redis();
    let due: Option<f64> = redis::cmd("ZSCORE")
        .arg(env.sale.redis.keys().outbox_due(a.product_id))
        .arg(&receipt)
        .query_async(&mut c)
        .await
        .unwrap();
    let due = due.expect("due entry") as i64;
    assert!((due - m.created_at_ms - 30_000).abs() < 5, "due {due} vs created {}", m.created_at_ms);
}

#[tokio::test]
async fn buy_script_refuses_a_second_purchase_with_the_first_receipt() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let BuyReply::Queued { receipt, .. } = env.sale.redis.buy(a.product_id, "bob", RETRY_AFTER).await.unwrap() else {
        panic!()
    };
    let again = env.sale.redis.buy(a.product_id, "bob", RETRY_AFTER).await.unwrap();
    assert!(matches!(again, BuyReply::AlreadyBought { receipt: ref r, .. } if *r == receipt), "{again:?}");
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));
    assert_eq!(env.outbox_len(a.product_id).await, 1);
}

#[tokio::test]
async fn buy_script_reports_sold_out_at_zero_and_never_goes_below() {
    let env = TestEnv::start().await;
    let a = env.open_sale(1).await;
    assert!(matches!(env.sale.redis.buy(a.product_id, "u1", RETRY_AFTER).await.unwrap(), BuyReply::Queued { .. }));
    for user in ["u2", "u3"] {
        let r = env.sale.redis.buy(a.product_id, user, RETRY_AFTER).await.unwrap();
        assert!(matches!(r, BuyReply::SoldOut { .. }), "{r:?}");
    }
    assert_eq!(env.redis_stock(a.product_id).await, Some(0));
    assert_eq!(env.outbox_len(a.product_id).await, 1);
}

#[tokio::test]
async fn buy_script_with_unlimited_stock_keeps_minus_one_and_numbers_receipts() {
    let env = TestEnv::start().await;
    let a = env.open_sale(-1).await;
    let mut receipts = Vec::new();
    for user in ["u1", "u2", "u3"] {
        match env.sale.redis.buy(a.product_id, user, RETRY_AFTER).await.unwrap() {
            BuyReply::Queued { receipt, .. } => receipts.push(receipt),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(env.redis_stock(a.product_id).await, Some(-1));
    assert_eq!(receipts[0], format!("{}-{}-u1-u1", a.id, a.product_id));
    assert_eq!(receipts[2], format!("{}-{}-u3-u3", a.id, a.product_id));
    assert_eq!(env.outbox_len(a.product_id).await, 3);
}

#[tokio::test]
async fn buy_script_refuses_before_the_start_and_after_the_end() {
    let env = TestEnv::start().await;
    let upcoming = env.create_sale(10, Span::hours(1), Span::hours(1), (100, 100, 5)).await;
    let ended = env.create_sale(10, Span::hours(-2), Span::hours(1), (100, 100, 5)).await;
    let r = env.sale.redis.buy(upcoming.product_id, "u1", RETRY_AFTER).await.unwrap();
    assert!(
        matches!(r, BuyReply::NotStarted { starts_at_ms, .. } if starts_at_ms == upcoming.starts_at.timestamp_millis()),
        "{r:?}"
    );
    let r = env.sale.redis.buy(ended.product_id, "u1", RETRY_AFTER).await.unwrap();
    assert!(matches!(r, BuyReply::Ended { ends_at_ms, .. } if ends_at_ms == ended.ends_at.timestamp_millis()), "{r:?}");
    assert_eq!(env.redis_stock(upcoming.product_id).await, Some(10));
    assert_eq!(env.redis_stock(ended.product_id).await, Some(10));
}

#[tokio::test]
async fn buy_script_limits_attempts_per_user_per_minute() {
    let env = TestEnv::start().await;
    let a = env.create_sale(0, Span::seconds(-5), Span::hours(1), (100, 100, 2)).await;
    for _ in 0..2 {
        let r = env.sale.redis.buy(a.product_id, "eager", RETRY_AFTER).await.unwrap();
        assert!(matches!(r, BuyReply::SoldOut { .. }), "{r:?}");
    }
    let r = env.sale.redis.buy(a.product_id, "eager", RETRY_AFTER).await.unwrap();
    assert!(
        matches!(r, BuyReply::UserLimited { retry_after_ms, .. } if retry_after_ms > 0 && retry_after_ms <= 60_000),
        "{r:?}"
    );
    // Another user is not affected.
    let r = env.sale.redis.buy(a.product_id, "calm", RETRY_AFTER).await.unwrap();
    assert!(matches!(r, BuyReply::SoldOut { .. }), "{r:?}");
}

#[tokio::test]
async fn buy_script_reports_no_activity_for_a_negative_cache_entry() {
    let env = TestEnv::start().await;
    // A listed product with no activity: the rebuild caches "no activity" briefly.
    let product_id = env
        .sale
        .list_product(
            &shared::domain::NewProduct {
                name: "idle".into(),
                description: String::new(),
                price_cents: 1,
                image_url: String::new(),
            },
            None,
        )
        .await
        .unwrap();
    assert!(matches!(env.sale.ensure_loaded(product_id).await, Err(shared::sale::SaleError::ProductNotFound)));
    let r = env.sale.redis.buy(product_id, "u1", RETRY_AFTER).await.unwrap();
    assert_eq!(r, BuyReply::NoActivity);
    env.buy("u1", product_id).await.assert_error(404, "product_not_found");
}

// ---------- through the HTTP handler ----------

#[tokio::test]
async fn two_thousand_concurrent_buyers_race_for_one_hundred_units() {
    let env = TestEnv::start().await;
    let a = env.open_sale(100).await;
    let users: Vec<String> = (0..2000).map(|i| format!("racer-{i}")).collect();
    let replies = join_all(users.iter().map(|u| env.buy(u, a.product_id))).await;

    let mut receipts = HashSet::new();
    let mut winners = HashSet::new();
    let mut sold_out = 0;
    for (user, r) in users.iter().zip(&replies) {
        match r.status {
            StatusCode::ACCEPTED => {
                assert_eq!(r.json["status"], "queued");
                assert_eq!(r.json["activity_id"], a.id);
                assert_eq!(r.json["product_id"], a.product_id);
                assert!(receipts.insert(r.json["receipt"].as_str().unwrap().to_owned()), "receipt twice");
                assert!(winners.insert(user.clone()), "user twice");
            }
            _ => {
                r.assert_error(409, "sold_out");
                sold_out += 1;
            }
        }
    }
    assert_eq!(receipts.len(), 100);
    assert_eq!(sold_out, 1900);
    assert_eq!(env.redis_stock(a.product_id).await, Some(0));
    assert_eq!(env.outbox_len(a.product_id).await, 100);
    assert_eq!(env.queue_depth().await, 100);
    // Queue numbers are the stock values the decrements handed out: 100 down to 1, once each.
    let numbers: HashSet<u64> = receipts.iter().map(|r| r.rsplit('-').next().unwrap().parse().unwrap()).collect();
    assert_eq!(numbers, (1..=100).collect());
}

#[tokio::test]
async fn buy_returns_409_when_the_user_already_bought() {
    let env = TestEnv::start().await;
    let a = env.open_sale(10).await;
    let first = env.buy("carol", a.product_id).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    env.buy("carol", a.product_id).await.assert_error(409, "already_bought");
    assert_eq!(env.redis_stock(a.product_id).await, Some(9));
    assert_eq!(env.outbox_len(a.product_id).await, 1);
}

#[tokio::test]
async fn buy_returns_403_outside_the_window_and_stock_shows_the_state() {
    let env = TestEnv::start().await;
    let upcoming = env.create_sale(10, Span::hours(1), Span::hours(1), (100, 100, 5)).await;
    let ended = env.create_sale(10, Span::hours(-2), Span::hours(1), (100, 100, 5)).await;
    env.buy("dave", upcoming.product_id).await.assert_error(403, "sale_not_open");
    env.buy("dave", ended.product_id).await.assert_error(403, "sale_not_open");
    assert_eq!(env.stock(upcoming.product_id).await.json["state"], "upcoming");
    assert_eq!(env.stock(ended.product_id).await.json["state"], "ended");
}

#[tokio::test]
async fn stock_query_answers_from_redis_with_the_contract_fields() {
    let env = TestEnv::start().await;
    let a = env.open_sale(7).await;
    env.buy("erin", a.product_id).await;
    let r = env.stock(a.product_id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["product_id"], a.product_id);
    assert_eq!(r.json["activity_id"], a.id);
    assert_eq!(r.json["stock"], 6);
    assert_eq!(r.json["unlimited"], false);
    assert_eq!(r.json["state"], "open");
    let starts = chrono::DateTime::parse_from_rfc3339(r.json["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!(starts.timestamp_millis(), a.starts_at.timestamp_millis());
    assert_eq!(env.app.stock_query.sale.db.statements_sent(), 0, "the hot path touched MySQL");
}

#[tokio::test]
async fn buy_returns_429_with_retry_after_over_the_per_user_limit() {
    let env = TestEnv::start().await;
    // Sold out: every attempt counts (a buyer who got a unit gets her receipt back instead).
    let a = env.create_sale(0, Span::seconds(-5), Span::hours(1), (1000, 1000, 1)).await;
    env.buy("fay", a.product_id).await.assert_error(409, "sold_out");
    let r = env.buy("fay", a.product_id).await;
    r.assert_error(429, "rate_limited");
    let secs: u64 = r.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}

#[tokio::test]
async fn buy_returns_429_when_the_instance_token_bucket_is_empty() {
    let env = TestEnv::start().await;
    let a = env.create_sale(100, Span::seconds(-5), Span::hours(1), (1, 1, 5)).await;
    // The first reply teaches the instance the activity's limits (rate 1/s, burst 1).
    assert_eq!(env.buy("g1", a.product_id).await.status, StatusCode::ACCEPTED);
    let before = env.redis_stock(a.product_id).await;
    let mut limited = 0;
    for i in 0..5 {
        let r = env.buy(&format!("g{}", i + 2), a.product_id).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            r.assert_error(429, "rate_limited");
            assert!(r.retry_after.is_some());
            limited += 1;
        }
    }
    assert!(limited >= 4, "{limited} of 5 limited");
    assert!(env.redis_stock(a.product_id).await >= Some(before.unwrap() - 1));
}

#[tokio::test]
async fn unknown_products_get_404_without_touching_mysql() {
    let env = TestEnv::start().await;
    env.open_sale(5).await; // a listed product, so the bloom filter is not empty
    for id in [987_654_321u64, 1 << 40, (1 << 53) - 1] {
        env.buy("henry", id).await.assert_error(404, "product_not_found");
        env.stock(id).await.assert_error(404, "product_not_found");
    }
    assert_eq!(env.app.buy.sale.db.statements_sent(), 0);
    assert_eq!(env.app.stock_query.sale.db.statements_sent(), 0);
    // The lazy pools never even opened a connection.
    assert_eq!(env.app.buy.sale.db.pool().size(), 0);
    assert_eq!(env.app.stock_query.sale.db.pool().size(), 0);
}

#[tokio::test]
async fn a_deleted_sale_key_is_rebuilt_from_mysql_once_under_200_concurrent_requests() {
    let env = TestEnv::start().await;
    let a = env.open_sale(1000).await;
    for i in 0..10 {
        assert_eq!(env.buy(&format!("early-{i}"), a.product_id).await.status, StatusCode::ACCEPTED);
    }
    let mut c = env.redis();
    let _: () = redis::cmd("DEL").arg(env.sale.redis.keys().sale(a.product_id)).query_async(&mut c).await.unwrap();

    let users: Vec<String> = (0..200).map(|i| format!("late-{i}")).collect();
    let buys = join_all(users.iter().map(|u| env.buy(u, a.product_id)));
    let stocks = join_all((0..50).map(|_| env.stock(a.product_id)));
    let (buys, stocks) = tokio::join!(buys, stocks);

    assert!(
        buys.iter().all(|r| r.status == StatusCode::ACCEPTED),
        "{:?}",
        buys.iter().find(|r| r.status != StatusCode::ACCEPTED)
    );
    assert!(stocks.iter().all(|r| r.status == StatusCode::OK));
    // One rebuild: two statements (the current activity, its orders), from one of the functions.
    let sent = env.app.buy.sale.db.statements_sent() + env.app.stock_query.sale.db.statements_sent();
    assert_eq!(sent, 2, "rebuild statements");
    // The rebuild counted the ten purchases still in the outbox.
    assert_eq!(env.redis_stock(a.product_id).await, Some(1000 - 210));
    // And an early buyer is still known.
    env.buy("early-3", a.product_id).await.assert_error(409, "already_bought");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_body_and_changes_nothing() {
    let env = TestEnv::start().await;
    let a = env.open_sale(5).await;
    let good = env.token("ivy");
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "ivy", "exp": chrono::Utc::now().timestamp() - 3600, "iss": runner::auth::LOCAL_ISSUER, "aud": runner::auth::LOCAL_AUDIENCE}),
        &jsonwebtoken::EncodingKey::from_secret(flash_tests::SECRET.as_bytes()),
    )
    .unwrap();
    let forged = runner::auth::mint(b"not-the-secret", "ivy", None, Duration::from_secs(3600)).unwrap();
    let bad_sub = env.token("ivy/../admin");
    let pid = a.product_id;
    let big = format!(r#"{{"product_id":{pid},"pad":"{}"}}"#, "x".repeat(5000));

    type Case<'a> = (&'a str, Method, String, Option<&'a str>, Option<String>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            Method::POST,
            "/buy".into(),
            None,
            Some(format!(r#"{{"product_id":{pid}}}"#)),
            401,
            "gateway:Unauthorized",
        ),
        (
            "expired token",
            Method::POST,
            "/buy".into(),
            Some(&expired),
            Some(format!(r#"{{"product_id":{pid}}}"#)),
            401,
            "gateway:Unauthorized",
        ),
        (
            "forged token",
            Method::POST,
            "/buy".into(),
            Some(&forged),
            Some(format!(r#"{{"product_id":{pid}}}"#)),
            401,
            "gateway:Unauthorized",
        ),
        (
            "garbage token",
            Method::POST,
            "/buy".into(),
            Some("abc.def.ghi"),
            Some(format!(r#"{{"product_id":{pid}}}"#)),
            401,
            "gateway:Unauthorized",
        ),
        (
            "unsafe subject",
            Method::POST,
            "/buy".into(),
            Some(&bad_sub),
            Some(format!(r#"{{"product_id":{pid}}}"#)),
            401,
            "unauthenticated",
        ),
        ("no body", Method::POST, "/buy".into(), Some(&good), None, 400, "invalid_request"),
        ("not JSON", Method::POST, "/buy".into(), Some(&good), Some("product_id=1".into()), 400, "invalid_request"),
        ("missing field", Method::POST, "/buy".into(), Some(&good), Some("{}".into()), 400, "invalid_request"),
        (
            "extra field",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(format!(r#"{{"product_id":{pid},"qty":2}}"#)),
            400,
            "invalid_request",
        ),
        (
            "string id",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(format!(r#"{{"product_id":"{pid}"}}"#)),
            400,
            "invalid_request",
        ),
        (
            "float id",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(r#"{"product_id":1.5}"#.into()),
            400,
            "invalid_request",
        ),
        (
            "null id",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(r#"{"product_id":null}"#.into()),
            400,
            "invalid_request",
        ),
        (
            "negative id",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(r#"{"product_id":-1}"#.into()),
            400,
            "invalid_request",
        ),
        (
            "zero id",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(r#"{"product_id":0}"#.into()),
            400,
            "invalid_request",
        ),
        (
            "id above 2^53",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(r#"{"product_id":9007199254740992}"#.into()),
            400,
            "invalid_request",
        ),
        (
            "id above u64",
            Method::POST,
            "/buy".into(),
            Some(&good),
            Some(r#"{"product_id":184467440737095516160}"#.into()),
            400,
            "invalid_request",
        ),
        ("array body", Method::POST, "/buy".into(), Some(&good), Some(format!("[{pid}]")), 400, "invalid_request"),
        ("oversized body", Method::POST, "/buy".into(), Some(&good), Some(big), 413, "payload_too_large"),
        ("wrong method on /buy", Method::GET, "/buy".into(), Some(&good), None, 404, "gateway:Not Found"),
        (
            "wrong method on stock",
            Method::DELETE,
            format!("/products/{pid}/stock"),
            None,
            None,
            404,
            "gateway:Not Found",
        ),
        ("word as product id", Method::GET, "/products/abc/stock".into(), None, None, 400, "invalid_request"),
        ("negative product id", Method::GET, "/products/-5/stock".into(), None, None, 400, "invalid_request"),
        ("zero product id", Method::GET, "/products/0/stock".into(), None, None, 400, "invalid_request"),
        (
            "huge product id",
            Method::GET,
            "/products/99999999999999999999999/stock".into(),
            None,
            None,
            400,
            "invalid_request",
        ),
        ("unknown route", Method::GET, "/nothing/here".into(), None, None, 404, "gateway:Not Found"),
    ];

    let redis_before = env.redis_snapshot().await;
    let mysql_before = env.mysql_snapshot().await;
    for (name, method, path, token, body, status, code) in cases {
        let r = env.request(method, &path, token, body).await;
        // API Gateway's own refusals (never reaching a function) have AWS's body.
        if let Some(message) = code.strip_prefix("gateway:") {
            r.assert_gateway_error(status, message);
            continue;
        }
        assert_eq!(r.status.as_u16(), status, "{name}: {}", r.text);
        assert_eq!(r.error_code(), code, "{name}: {}", r.text);
        assert!(r.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {}", r.text);
    }
    assert_eq!(env.redis_snapshot().await, redis_before, "Redis changed");
    assert_eq!(env.mysql_snapshot().await, mysql_before, "MySQL changed");
    assert_eq!(env.queue_depth().await, 0);
}

#[tokio::test]
async fn buy_and_stock_return_503_when_redis_is_down() {
    let target = "127.0.0.1:6379".parse().unwrap();
    let proxy = Proxy::start(target).await;
    let env = TestEnv::start_with(Options { redis_url: format!("redis://{}", proxy.addr), ..Options::default() }).await;
    let a = env.open_sale(5).await;
    assert_eq!(env.buy("jack", a.product_id).await.status, StatusCode::ACCEPTED, "works while Redis is up");
    let mysql_before = env.mysql_snapshot().await;
    let redis_before = env.redis_snapshot().await;

    proxy.cut();
    env.buy("kate", a.product_id).await.assert_error(503, "unavailable");
    env.stock(a.product_id).await.assert_error(503, "unavailable");

    assert_eq!(env.mysql_snapshot().await, mysql_before);
    assert_eq!(env.redis_snapshot().await, redis_before);
    assert_eq!(env.queue_depth().await, 1);
}

#[tokio::test]
async fn buy_still_returns_202_when_sqs_is_down_and_the_outbox_keeps_the_entry() {
    // Nothing listens on port 9 (discard) here: every SQS call fails to connect.
    let env = TestEnv::start_with(Options { sqs_endpoint: "http://127.0.0.1:9".into(), ..Options::default() }).await;
    let a = env.open_sale(5).await;
    let r = env.buy("liam", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let receipt = r.json["receipt"].as_str().unwrap().to_owned();
    assert_eq!(env.outbox_len(a.product_id).await, 1);
    let mut c = env.redis();
    let entry: Option<String> = redis::cmd("HGET")
        .arg(env.sale.redis.keys().outbox(a.product_id))
        .arg(&receipt)
        .query_async(&mut c)
        .await
        .unwrap();
    let m: OrderMessage = serde_json::from_str(&entry.expect("outbox entry")).unwrap();
    assert_eq!(m.user_id, "liam");
    assert_eq!(env.queue_depth().await, 0);
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));
}
