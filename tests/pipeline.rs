//! The order pipeline against the real Redis, MariaDB and LocalStack (issue 3): exactly-once
//! effects over at-least-once delivery.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use flash_tests::{Options, TestEnv, eventually, proxy::Proxy, sqs_event};
use futures::{StreamExt, future::join_all, stream};
use reqwest::StatusCode;
use shared::{
    config::SaleConfig,
    domain::{OrderMessage, TimeoutMessage},
};

fn localstack_addr() -> SocketAddr {
    let endpoint = flash_tests::sqs_endpoint();
    endpoint.trim_start_matches("http://").parse().expect("TEST_SQS_ENDPOINT as http://host:port")
}

async fn buy_many(env: &TestEnv, product_id: u64, users: &[String]) -> Vec<(String, String)> {
    let replies = join_all(users.iter().map(|u| env.buy(u, product_id))).await;
    users
        .iter()
        .zip(replies)
        .filter(|(_, r)| r.status == StatusCode::ACCEPTED)
        .map(|(u, r)| (u.clone(), r.json["receipt"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test]
async fn each_message_delivered_twice_and_a_replayed_batch_make_one_order_each() {
    let env = TestEnv::start().await;
    let a = env.open_sale(20).await;
    let users: Vec<String> = (0..20).map(|i| format!("dup-{i}")).collect();
    let bought = buy_many(&env, a.product_id, &users).await;
    assert_eq!(bought.len(), 20);
    let messages = env.take_all(&env.orders_queue_url).await;
    assert_eq!(messages.len(), 20);

    // Every message twice (as SQS may deliver it), in batches of ten, then the first batch replayed.
    let doubled: Vec<(String, String)> = messages.iter().chain(messages.iter()).cloned().collect();
    for batch in doubled.chunks(10) {
        let response = order_consumer::handler(&env.app.order_consumer, sqs_event(batch)).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let replay = order_consumer::handler(&env.app.order_consumer, sqs_event(&doubled[..10])).await.unwrap();
    assert!(replay.batch_item_failures.is_empty());

    assert_eq!(env.total_orders(a.id).await, 20);
    for (user, receipt) in &bought {
        let r = env.order(user, receipt).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["status"], "pending_payment");
        assert!(r.json["order_id"].as_u64().is_some());
    }
    assert_eq!(env.outbox_len(a.product_id).await, 0, "the consumer acknowledged the outbox");
    assert_eq!(env.redis_stock(a.product_id).await, Some(0));
}

#[tokio::test]
async fn a_failing_record_is_reported_alone_and_the_rest_of_its_batch_is_written() {
    let env = TestEnv::start().await;
    let a = env.open_sale(10).await;
    let users: Vec<String> = (0..8).map(|i| format!("ok-{i}")).collect();
    buy_many(&env, a.product_id, &users).await;
    let mut batch = env.take_all(&env.orders_queue_url).await;
    assert_eq!(batch.len(), 8);
    let now = chrono::Utc::now().timestamp_millis();
    // A body that is not a message, and one MySQL refuses (user id over the column's 128
    // characters): the batch's one multi-row insert fails, then row by row isolates it.
    let too_long = OrderMessage {
        receipt: format!("{}-{}-{}-99", a.id, a.product_id, "x".repeat(200)),
        activity_id: a.id,
        product_id: a.product_id,
        user_id: "x".repeat(200),
        created_at_ms: now,
    };
    batch.push(("bad-json".into(), "{not json".into()));
    batch.push(("too-long".into(), serde_json::to_string(&too_long).unwrap()));

    let response = order_consumer::handler(&env.app.order_consumer, sqs_event(&batch)).await.unwrap();
    let failed: HashSet<String> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, HashSet::from(["bad-json".to_owned(), "too-long".to_owned()]));
    assert_eq!(env.total_orders(a.id).await, 8);
}

#[tokio::test]
async fn consumers_killed_mid_batch_lose_nothing_and_duplicate_nothing() {
    let env = TestEnv::start().await;
    let a = env.open_sale(200).await;
    let users: Vec<String> = (0..200).map(|i| format!("kill-{i}")).collect();
    let bought = buy_many(&env, a.product_id, &users).await;
    assert_eq!(bought.len(), 200);

    // Start and kill the pollers at arbitrary moments: batches die between receive, insert,
    // timeout send, ack and delete. Unacknowledged messages reappear after the 2 s visibility.
    for round in 0..6u64 {
        let pollers = env.start_pollers().await;
        tokio::time::sleep(Duration::from_millis(40 + 37 * round)).await;
        for p in pollers {
            p.abort();
        }
    }
    let pollers = env.start_pollers().await;
    eventually(Duration::from_secs(60), "every purchase to become one order", || async {
        env.total_orders(a.id).await == 200 && env.outbox_len(a.product_id).await == 0
    })
    .await;
    for p in pollers {
        p.abort();
    }
    let receipts: HashSet<String> = bought.iter().map(|(_, r)| r.clone()).collect();
    use sqlx::Row;
    let rows = sqlx::query("SELECT receipt FROM orders WHERE activity_id = ?")
        .bind(a.id)
        .fetch_all(env.sale.db.pool())
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored.len(), 200);
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), receipts);
}

#[tokio::test]
async fn purchases_made_while_sqs_is_down_are_delivered_by_two_concurrent_outbox_retry_runs() {
    let proxy = Proxy::start(localstack_addr()).await;
    let sale = SaleConfig { outbox_retry_after: Duration::ZERO, ..SaleConfig::default() };
    let env =
        TestEnv::start_with(Options { sqs_endpoint: format!("http://{}", proxy.addr), sale, ..Options::default() })
            .await;
    let a = env.open_sale(100).await;

    proxy.cut();
    let users: Vec<String> = (0..100).map(|i| format!("offline-{i}")).collect();
    let bought = buy_many(&env, a.product_id, &users).await;
    assert_eq!(bought.len(), 100, "purchases stand while SQS is down");
    assert_eq!(env.outbox_len(a.product_id).await, 100);
    assert_eq!(env.queue_depth().await, 0);

    proxy.restore();
    let (r1, r2) = tokio::join!(env.app.outbox_retry.run(), env.app.outbox_retry.run());
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.resent + r2.resent, 100, "{r1:?} {r2:?}");
    assert_eq!(r1.claimed + r2.claimed, 100, "each entry claimed by one run only: {r1:?} {r2:?}");
    assert_eq!(env.queue_depth().await, 100, "no entry sent twice");

    let pollers = env.start_pollers().await;
    eventually(Duration::from_secs(60), "100 orders", || async {
        env.total_orders(a.id).await == 100 && env.outbox_len(a.product_id).await == 0
    })
    .await;
    for p in pollers {
        p.abort();
    }
    assert_eq!(env.total_orders(a.id).await, 100);
}

#[tokio::test]
async fn a_message_never_acknowledged_is_dead_lettered_after_the_cap_and_its_unit_restored() {
    let proxy = Proxy::start(localstack_addr()).await;
    let sale = SaleConfig {
        outbox_retry_after: Duration::ZERO,
        outbox_backoff: Duration::ZERO,
        outbox_max_attempts: 3,
        ..SaleConfig::default()
    };
    let env =
        TestEnv::start_with(Options { sqs_endpoint: format!("http://{}", proxy.addr), sale, ..Options::default() })
            .await;
    let a = env.open_sale(5).await;
    proxy.cut();
    let r = env.buy("unlucky", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let receipt = r.json["receipt"].as_str().unwrap().to_owned();
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));
    assert_eq!(env.order("unlucky", &receipt).await.json["status"], "processing");

    // While SQS is unreachable, a failed send is not an attempt: nothing is given up.
    for attempt in 1..=5 {
        let report = env.app.outbox_retry.run().await.unwrap();
        assert_eq!((report.claimed, report.send_failed, report.dead_lettered), (1, 1, 0), "outage run {attempt}");
    }
    // SQS is back and accepts the resends, but no consumer ever takes the message: after the
    // queue accepted it three times, the purchase is dead-lettered.
    proxy.restore();
    for attempt in 1..=3 {
        let report = env.app.outbox_retry.run().await.unwrap();
        assert_eq!((report.claimed, report.resent, report.dead_lettered), (1, 1, 0), "accepted send {attempt}");
    }
    let report = env.app.outbox_retry.run().await.unwrap();
    assert_eq!(report.dead_lettered, 1, "{report:?}");

    assert_eq!(env.redis_stock(a.product_id).await, Some(5), "unit restored");
    assert_eq!(env.outbox_len(a.product_id).await, 0);
    let status = env.order("unlucky", &receipt).await;
    assert_eq!(status.json["status"], "failed", "{}", status.text);
    env.pay("unlucky", &receipt).await.assert_error(409, "order_cancelled");
    env.buy("unlucky", a.product_id).await.assert_error(409, "already_bought");
    use sqlx::Row;
    let dead: i64 = sqlx::query("SELECT COUNT(*) FROM dead_letters WHERE receipt = ?")
        .bind(&receipt)
        .fetch_one(env.sale.db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 1);
    // Nothing left to do; a later run restores nothing twice.
    assert_eq!(env.app.outbox_retry.run().await.unwrap().claimed, 0);
    assert_eq!(env.redis_stock(a.product_id).await, Some(5));
}

#[tokio::test]
async fn timeout_and_payment_raced_200_times_end_paid_or_cancelled_never_both() {
    let sale = SaleConfig { payment_window: Duration::from_secs(120), ..SaleConfig::default() };
    let env = TestEnv::start_with(Options { sale, ..Options::default() }).await;
    let a = env.open_sale(200).await;
    let users: Vec<String> = (0..200).map(|i| format!("race-{i}")).collect();
    let bought = buy_many(&env, a.product_id, &users).await;
    assert_eq!(bought.len(), 200);
    let messages = env.take_all(&env.orders_queue_url).await;
    for batch in messages.chunks(10) {
        order_consumer::handler(&env.app.order_consumer, sqs_event(batch)).await.unwrap();
    }
    assert_eq!(env.redis_stock(a.product_id).await, Some(0));

    // Every deadline falls within the next second (MySQL's clock, which decides both the
    // payment and the cancel); each payment races two timeout deliveries that keep arriving
    // until the order is due.
    sqlx::query(
        "UPDATE orders SET pay_by = NOW(3) + INTERVAL ((id % 20) * 50000 + 100000) MICROSECOND WHERE activity_id = ?",
    )
    .bind(a.id)
    .execute(env.sale.db.pool())
    .await
    .unwrap();
    let expire_when_due = |msg: TimeoutMessage| {
        let env = &env;
        async move {
            loop {
                match env.app.payment_timeout.expire(&msg).await.unwrap() {
                    shared::orders::Expired::NotDue => tokio::time::sleep(Duration::from_millis(20)).await,
                    done => return done,
                }
            }
        }
    };
    let races = bought.iter().enumerate().map(|(i, (user, receipt))| {
        let env = &env;
        async move {
            let msg = TimeoutMessage { receipt: receipt.clone(), activity_id: a.id, product_id: a.product_id };
            let pay = async {
                tokio::time::sleep(Duration::from_millis((i as u64 % 25) * 45)).await;
                env.pay(user, receipt).await
            };
            // The second timeout is a duplicated message.
            let (paid, _, _) = tokio::join!(pay, expire_when_due(msg.clone()), expire_when_due(msg.clone()));
            (receipt.clone(), paid)
        }
    });
    let outcomes = join_all(races).await;

    use sqlx::Row;
    let mut cancelled = 0;
    for (receipt, pay) in &outcomes {
        let row = sqlx::query(
            "SELECT CAST(status AS CHAR), paid_at IS NOT NULL, cancelled_at IS NOT NULL FROM orders WHERE receipt = ?",
        )
        .bind(receipt)
        .fetch_one(env.sale.db.pool())
        .await
        .unwrap();
        let (status, has_paid, has_cancelled): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        assert!(!(has_paid && has_cancelled), "{receipt} both paid and cancelled");
        match status.as_str() {
            "paid" => assert_eq!(pay.status, StatusCode::OK, "{}", pay.text),
            "cancelled" => {
                pay.assert_error(409, "order_cancelled");
                cancelled += 1;
            }
            other => panic!("{receipt} ended {other}"),
        }
    }
    assert!(0 < cancelled && cancelled < 200, "both outcomes occur: {cancelled} cancelled of 200");
    let mut c = env.redis();
    let restored: i64 =
        redis::cmd("SCARD").arg(env.sale.redis.keys().restored(a.product_id)).query_async(&mut c).await.unwrap();
    assert_eq!(restored, cancelled, "units restored == cancellations");
    assert_eq!(env.redis_stock(a.product_id).await, Some(cancelled));
    // Paying twice is 200 for a paid order; a timeout replayed now changes nothing.
    for (receipt, pay) in outcomes.iter().take(20) {
        let user = bought.iter().find(|(_, r)| r == receipt).map(|(u, _)| u.clone()).unwrap();
        let msg = TimeoutMessage { receipt: receipt.clone(), activity_id: a.id, product_id: a.product_id };
        env.app.payment_timeout.expire(&msg).await.unwrap();
        if pay.status == StatusCode::OK {
            assert_eq!(env.pay(&user, receipt).await.status, StatusCode::OK);
        }
    }
    assert_eq!(env.redis_stock(a.product_id).await, Some(cancelled));
}

#[tokio::test]
async fn the_whole_flash_sale_through_the_runner_keeps_invariant_one_at_every_sample() {
    const UNITS: i64 = 300;
    let sale = SaleConfig { payment_window: Duration::from_secs(8), ..SaleConfig::default() };
    let env = TestEnv::start_with(Options { sale, ..Options::default() }).await;
    let a = env.open_sale(UNITS).await;
    let pollers = env.start_pollers().await;

    let sampling = std::sync::atomic::AtomicBool::new(true);
    let sampler = async {
        let mut samples = 0;
        while sampling.load(std::sync::atomic::Ordering::SeqCst) {
            let (stock, taken) = env.units_accounted(&a).await;
            assert!(stock >= 0, "negative stock {stock}");
            assert!(stock + taken as i64 <= UNITS, "oversold: stock {stock} + taken {taken} > {UNITS}");
            samples += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        samples
    };
    let sale_run = async {
        let users: Vec<String> = (0..5000).map(|i| format!("fan-{i}")).collect();
        let replies: Vec<_> =
            stream::iter(users.iter().map(|u| env.buy(u, a.product_id))).buffer_unordered(256).collect().await;
        let winners: Vec<(String, String)> = replies
            .iter()
            .filter(|r| r.status == StatusCode::ACCEPTED)
            .map(|r| {
                let receipt = r.json["receipt"].as_str().unwrap().to_owned();
                let user = receipt.splitn(3, '-').nth(2).unwrap().rsplit_once('-').unwrap().0.to_owned();
                (user, receipt)
            })
            .collect();
        assert_eq!(winners.len() as i64, UNITS);
        assert!(replies.iter().filter(|r| r.status != StatusCode::ACCEPTED).all(|r| r.error_code() == "sold_out"));

        eventually(Duration::from_secs(30), "all orders written", || async { env.total_orders(a.id).await == UNITS })
            .await;
        for (user, receipt) in winners.iter().take(50) {
            let r = env.pay(user, receipt).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.json["status"], "paid");
        }
        eventually(Duration::from_secs(60), "the unpaid orders to time out", || async {
            env.order_counts(a.id).await.get("cancelled").copied() == Some(UNITS - 50)
        })
        .await;
        eventually(Duration::from_secs(10), "the units to come back", || async {
            env.redis_stock(a.product_id).await == Some(UNITS - 50)
        })
        .await;
        sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    };
    let (samples, ()) = tokio::join!(sampler, sale_run);
    for p in pollers {
        p.abort();
    }
    assert!(samples > 10, "only {samples} samples");

    let counts = env.order_counts(a.id).await;
    assert_eq!(counts.get("paid").copied(), Some(50));
    assert_eq!(counts.get("cancelled").copied(), Some(UNITS - 50));
    assert_eq!(env.redis_stock(a.product_id).await, Some(UNITS - 50));
    assert_eq!(env.outbox_len(a.product_id).await, 0);
    let (stock, taken) = env.units_accounted(&a).await;
    assert_eq!(stock + taken as i64, UNITS, "balanced once quiet");
}
