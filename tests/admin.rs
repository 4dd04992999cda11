//! Running a sale through the admin API (issue 4), against the real servers.

use std::collections::HashSet;

use chrono::{Duration as Span, Utc};
use flash_tests::{TestEnv, eventually};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn admin_sale(env: &TestEnv, stock: i64, starts_in: Span) -> (u64, u64) {
    let product_id = env.admin_product().await;
    (product_id, env.admin_activity(product_id, stock, starts_in, Span::hours(1)).await)
}

#[tokio::test]
async fn a_sale_set_up_only_through_the_admin_api_sells_through_the_buy_path() {
    let env = TestEnv::start().await;
    let (product_id, activity_id) = admin_sale(&env, 3, Span::seconds(-1)).await;
    let w = env.admin(Method::POST, &format!("/admin/activities/{activity_id}/warmup"), None).await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text);
    assert_eq!(w.json["stock"], 3);
    assert_eq!(w.json["state"], "open");

    let shoppers: Vec<String> = (0..5).map(|i| format!("shopper-{i}")).collect();
    let replies = join_all(shoppers.iter().map(|u| env.buy(u, product_id))).await;
    assert_eq!(replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).count(), 3);
    assert_eq!(replies.iter().filter(|r| r.error_code() == "sold_out").count(), 2);
    assert_eq!(env.stock(product_id).await.json["stock"], 0);

    env.consume_orders().await;
    let r = env.admin(Method::GET, &format!("/admin/activities/{activity_id}/reconcile"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["initial"], 3);
    assert_eq!(r.json["redis_stock"], 0);
    assert_eq!(r.json["orders_pending_payment"], 3);
    assert_eq!(r.json["outbox_pending"], 0);
    assert_eq!(r.json["balanced"], true);
}

#[tokio::test]
async fn warm_up_mid_sale_and_after_a_flush_hands_out_no_unit_twice_and_reconciles() {
    let env = TestEnv::start().await;
    let (product_id, activity_id) = admin_sale(&env, 50, Span::seconds(-1)).await;
    env.admin(Method::POST, &format!("/admin/activities/{activity_id}/warmup"), None).await;
    let early: Vec<String> = (0..20).map(|i| format!("early-{i}")).collect();
    let replies = join_all(early.iter().map(|u| env.buy(u, product_id))).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::ACCEPTED));

    // Mid-sale, with purchases still in the outbox: warm-up keeps the live stock.
    let w = env.admin(Method::POST, &format!("/admin/activities/{activity_id}/warmup"), None).await;
    assert_eq!(w.json["result"], "refreshed");
    assert_eq!(w.json["stock"], 30);
    let report = warmup::handler(&env.app.warmup, lambda_runtime::LambdaEvent::new(json!({}), Default::default()))
        .await
        .unwrap();
    assert_eq!((report.activities, report.refreshed), (1, 1));
    assert_eq!(env.redis_stock(product_id).await, Some(30));
    let r = env.admin(Method::GET, &format!("/admin/activities/{activity_id}/reconcile"), None).await;
    assert_eq!(r.json["outbox_pending"], 20, "{}", r.text);
    assert_eq!(r.json["balanced"], true, "{}", r.text);

    // Half the orders reach MySQL, then Redis loses everything.
    let messages = env.take_all(&env.orders_queue_url).await;
    order_consumer::handler(&env.app.order_consumer, flash_tests::sqs_event(&messages[..10])).await.unwrap();
    env.flush_redis().await;
    // The bloom filter went too: "unknown", not "absent", so the stock query refills it and
    // rebuilds the sale; the scheduled warm-up then finds both in place.
    let s = env.stock(product_id).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    let report = warmup::handler(&env.app.warmup, lambda_runtime::LambdaEvent::new(json!({}), Default::default()))
        .await
        .unwrap();
    assert!(!report.bloom_refilled);
    assert_eq!((report.written, report.refreshed), (0, 1));
    // The rebuild sees the ten orders in MySQL; the other ten purchases were only in the lost
    // outbox and are still in flight in SQS, so it cannot count them yet.
    assert_eq!(env.redis_stock(product_id).await, Some(40));
    // When the consumer writes them, the ack adopts them: buyer recorded, unit taken.
    order_consumer::handler(&env.app.order_consumer, flash_tests::sqs_event(&messages[10..])).await.unwrap();
    assert_eq!(env.redis_stock(product_id).await, Some(30));
    env.buy("early-15", product_id).await.assert_error(409, "already_bought");
    let r = env.admin(Method::GET, &format!("/admin/activities/{activity_id}/reconcile"), None).await;
    assert_eq!(r.json["balanced"], true, "{}", r.text);
    assert_eq!(r.json["orders_pending_payment"], 20);

    // Earlier buyers are still known; the rest of the stock sells exactly once.
    env.buy("early-7", product_id).await.assert_error(409, "already_bought");
    let late: Vec<String> = (0..40).map(|i| format!("late-{i}")).collect();
    let replies = join_all(late.iter().map(|u| env.buy(u, product_id))).await;
    assert_eq!(replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).count(), 30);
    assert_eq!(replies.iter().filter(|r| r.error_code() == "sold_out").count(), 10);
    env.consume_orders().await;
    eventually(std::time::Duration::from_secs(10), "reconcile balanced", || async {
        let r = env.admin(Method::GET, &format!("/admin/activities/{activity_id}/reconcile"), None).await;
        r.json["balanced"] == true && r.json["orders_pending_payment"] == 50 && r.json["redis_stock"] == 0
    })
    .await;
}

#[tokio::test]
async fn ninety_five_orders_page_by_twenty_into_five_pages_without_gaps_or_repeats() {
    let env = TestEnv::start().await;
    let (product_id, activity_id) = admin_sale(&env, 200, Span::seconds(-1)).await;
    env.admin(Method::POST, &format!("/admin/activities/{activity_id}/warmup"), None).await;
    let users: Vec<String> = (0..95).map(|i| format!("pager-{i}")).collect();
    join_all(users.iter().map(|u| env.buy(u, product_id))).await;
    env.consume_orders().await;

    let mut seen = Vec::new();
    for page in 1..=6 {
        let r =
            env.admin(Method::GET, &format!("/admin/orders?activity_id={activity_id}&page={page}&per=20"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["total"], 95);
        assert_eq!(r.json["per"], 20);
        let items = r.json["items"].as_array().unwrap();
        let expected = match page {
            1..=4 => 20,
            5 => 15,
            _ => 0,
        };
        assert_eq!(items.len(), expected, "page {page}");
        for item in items {
            assert_eq!(item["status"], "pending_payment");
            assert!(item["user_id"].as_str().unwrap().starts_with("pager-"));
            seen.push(item["receipt"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen.len(), 95);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 95, "a row repeated");

    let paid = env.admin(Method::GET, &format!("/admin/orders?activity_id={activity_id}&status=paid"), None).await;
    assert_eq!(paid.json["total"], 0);
    for bad in ["per=101", "per=0", "page=0", "page=abc", "status=shipped", "activity_id=-3"] {
        env.admin(Method::GET, &format!("/admin/orders?{bad}"), None).await.assert_error(400, "invalid_request");
    }
    let products = env.admin(Method::GET, "/admin/products?per=1&page=1", None).await;
    assert_eq!((products.json["total"].as_u64(), products.json["items"].as_array().map(Vec::len)), (Some(1), Some(1)));
}

#[tokio::test]
async fn every_admin_route_refuses_a_user_token_and_no_token() {
    let env = TestEnv::start().await;
    let user = env.token("not-an-admin");
    let routes = [
        (Method::POST, "/admin/products"),
        (Method::GET, "/admin/products"),
        (Method::POST, "/admin/activities"),
        (Method::GET, "/admin/activities"),
        (Method::POST, "/admin/activities/1/warmup"),
        (Method::POST, "/admin/activities/1/publish"),
        (Method::GET, "/admin/activities/1/reconcile"),
        (Method::GET, "/admin/orders"),
    ];
    let before = env.mysql_snapshot().await;
    for (method, path) in routes {
        let body = Some(json!({"name": "x", "price_cents": 1}).to_string());
        env.request(method.clone(), path, Some(&user), body.clone()).await.assert_gateway_error(403, "Forbidden");
        env.request(method, path, None, body).await.assert_gateway_error(401, "Unauthorized");
    }
    assert_eq!(env.mysql_snapshot().await, before);
}

#[tokio::test]
async fn invalid_admin_writes_get_400_and_write_nothing() {
    let env = TestEnv::start().await;
    let (product_id, _) = admin_sale(&env, 1, Span::seconds(10)).await;
    let before = env.mysql_snapshot().await;
    let now = Utc::now();
    let activity = |patch: Value| {
        let mut body = json!({
            "product_id": product_id, "stock": 10, "starts_at": now.to_rfc3339(),
            "ends_at": (now + Span::hours(1)).to_rfc3339(), "rate_limit_per_sec": 10, "burst": 10, "per_user_per_min": 5,
        });
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        ("/admin/activities", activity(json!({"ends_at": (now - Span::hours(1)).to_rfc3339()}))),
        ("/admin/activities", activity(json!({"stock": -2}))),
        ("/admin/activities", activity(json!({"product_id": 987_654}))),
        ("/admin/activities", activity(json!({"rate_limit_per_sec": 0}))),
        ("/admin/activities", activity(json!({"burst": -1}))),
        ("/admin/activities", activity(json!({"per_user_per_min": 0}))),
        ("/admin/activities", activity(json!({"starts_at": "tomorrow"}))),
        ("/admin/activities", activity(json!({"surprise": true}))),
        ("/admin/products", json!({"name": "", "price_cents": 1})),
        ("/admin/products", json!({"name": "ok", "price_cents": -1})),
        ("/admin/products", json!({"name": "ok", "price_cents": 1, "image_url": "javascript:alert(1)"})),
        ("/admin/products", json!({"price_cents": 1})),
    ];
    for (path, body) in cases {
        let r = env.admin(Method::POST, path, Some(body.clone())).await;
        r.assert_error(400, "invalid_request");
        assert!(!r.text.contains("sqlx"), "internal detail leaked: {}", r.text);
    }
    assert_eq!(env.mysql_snapshot().await, before);
    env.admin(Method::POST, "/admin/activities/999999/warmup", None).await.assert_error(404, "activity_not_found");
    env.admin(Method::GET, "/admin/activities/999999/reconcile", None).await.assert_error(404, "activity_not_found");
}

#[tokio::test]
async fn a_lost_purchase_that_finds_no_unit_left_is_reported_as_a_unit_sold_twice() {
    let env = TestEnv::start().await;
    let a = env.open_sale(2).await;
    assert_eq!(env.buy("first", a.product_id).await.status, StatusCode::ACCEPTED);
    let first = env.take_all(&env.orders_queue_url).await;
    // Redis loses everything while "first"'s message is still in flight; the rebuild sees 2 units.
    env.flush_redis().await;
    env.sale.warm(&a).await.unwrap();
    assert_eq!(env.redis_stock(a.product_id).await, Some(2));
    // Both units are sold again before the message arrives.
    assert_eq!(env.buy("second", a.product_id).await.status, StatusCode::ACCEPTED);
    assert_eq!(env.buy("third", a.product_id).await.status, StatusCode::ACCEPTED);
    let m: shared::domain::OrderMessage = serde_json::from_str(&first[0].1).unwrap();
    let shared::redis::scripts::ack::AckReply { adopted, oversold } =
        env.sale.redis.ack_outbox(a.product_id, &[&m]).await.unwrap();
    assert_eq!((adopted, oversold), (0, 1), "the double sale is detected, not hidden");
    // A second ack of the same purchase changes nothing (its buyer is now recorded).
    assert_eq!(env.sale.redis.ack_outbox(a.product_id, &[&m]).await.unwrap(), Default::default());
    env.buy("first", a.product_id).await.assert_error(409, "already_bought");
}

#[tokio::test]
async fn a_product_description_of_the_full_10000_characters_fits_the_admin_body_limit() {
    let env = TestEnv::start().await;
    let long = "é".repeat(10_000); // 20,000 bytes: over the public routes' 4 KB, within the admin's
    let r = env
        .admin(Method::POST, "/admin/products", Some(json!({"name": "Long", "description": long, "price_cents": 100})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let too_long = "é".repeat(10_001);
    let r = env
        .admin(
            Method::POST,
            "/admin/products",
            Some(json!({"name": "Longer", "description": too_long, "price_cents": 100})),
        )
        .await;
    r.assert_error(400, "invalid_request");
}
