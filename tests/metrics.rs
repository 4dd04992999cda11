//! Metrics (issue 13): the CloudWatch EMF documents a buy, an order write, a payment, a
//! reconcile and a dead letter emit — names, values, dimensions — and the runner's `/metrics`
//! showing the same counts, fed by the same documents. Real Redis, MariaDB and LocalStack.

use std::{collections::BTreeMap, time::Duration};

use flash_tests::{Options, TestEnv};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::{config::SaleConfig, telemetry::metrics::Metric};

/// The documents of one function that carry `metric`.
fn docs<'a>(emitted: &'a [Value], function: &str, metric: &str) -> Vec<&'a Value> {
    emitted.iter().filter(|d| d["Function"] == function && d.get(metric).is_some()).collect()
}

/// A document's declared metric names and dimension sets, by directive.
fn directives(doc: &Value) -> Vec<(Vec<String>, Value)> {
    doc["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            assert_eq!(d["Namespace"], "FlashSaleTest", "{doc}");
            let names =
                d["Metrics"].as_array().into_iter().flatten().map(|m| m["Name"].as_str().unwrap_or("").to_owned());
            (names.collect(), d["Dimensions"].clone())
        })
        .collect()
}

fn dimensions_of(doc: &Value, metric: &str) -> Value {
    directives(doc)
        .into_iter()
        .find(|(names, _)| names.iter().any(|n| n == metric))
        .map(|(_, d)| d)
        .unwrap_or(Value::Null)
}

/// A sample line of the Prometheus text, e.g. `flash_buys_total{...} 2`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_buy_an_order_write_and_a_dead_letter_emit_emf_and_metrics_shows_the_same_counts() {
    let sale = SaleConfig {
        outbox_retry_after: Duration::ZERO,
        outbox_backoff: Duration::ZERO,
        outbox_max_attempts: 1,
        ..SaleConfig::default()
    };
    let env = TestEnv::start_with(Options { sale, ..Options::default() }).await;
    let a = env.open_sale(2).await;
    let b = env.open_sale(5).await;

    // Act: every buy outcome that needs no outage.
    let alice = env.buy("alice", a.product_id).await;
    assert_eq!(alice.status, StatusCode::ACCEPTED, "{}", alice.text);
    env.buy("alice", a.product_id).await.assert_error(409, "already_bought");
    assert_eq!(env.buy("bob", a.product_id).await.status, StatusCode::ACCEPTED);
    env.buy("carol", a.product_id).await.assert_error(409, "sold_out");
    let token = env.token("dave");
    let bad = env.request(reqwest::Method::POST, "/buy", Some(&token), Some("{\"product_id\": \"x\"}".into())).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Orders for sale a; pay alice's.
    env.consume_orders().await;
    let receipt = alice.json["receipt"].as_str().unwrap_or_default().to_owned();
    assert_eq!(env.pay("alice", &receipt).await.status, StatusCode::OK);
    assert_eq!(env.pay("alice", &receipt).await.status, StatusCode::OK, "paying twice is 200 and counts once");
    let report = env.admin(reqwest::Method::GET, &format!("/admin/activities/{}/reconcile", a.id), None).await;
    assert_eq!(report.json["balanced"], true, "{}", report.text);
    // Sale b: a purchase nobody consumes is resent once (cap 1), then dead-lettered.
    assert_eq!(env.buy("erin", b.product_id).await.status, StatusCode::ACCEPTED);
    assert_eq!(env.app.outbox_retry.run().await.expect("run").resent, 1);
    assert_eq!(outbox_retry::handler(&env.app.outbox_retry, lambda_event()).await.expect("run").dead_lettered, 1);

    let emitted = env.emitted.lock().map(|e| e.clone()).unwrap_or_default();

    // Buys: one document per press, with its outcome and activity; the coarse set for alarms.
    let buys = docs(&emitted, "buy", "Buys");
    let mut by_outcome: BTreeMap<(String, String), f64> = BTreeMap::new();
    for d in &buys {
        let key = (d["Activity"].as_str().unwrap_or("-").to_owned(), d["Outcome"].as_str().unwrap_or("").to_owned());
        *by_outcome.entry(key).or_default() += d["Buys"].as_f64().unwrap_or(f64::NAN);
    }
    let (sa, sb) = (a.id.to_string(), b.id.to_string());
    let expected: BTreeMap<(String, String), f64> = [
        ((sa.clone(), "queued".to_owned()), 2.0),
        ((sa.clone(), "already_bought".to_owned()), 1.0),
        ((sa.clone(), "sold_out".to_owned()), 1.0),
        (("-".to_owned(), "rejected".to_owned()), 1.0),
        ((sb.clone(), "queued".to_owned()), 1.0),
    ]
    .into();
    assert_eq!(by_outcome, expected);
    let queued = buys.iter().find(|d| d["Outcome"] == "queued").expect("a queued buy");
    assert_eq!(dimensions_of(queued, "Buys"), json!([["Function", "Activity", "Outcome"], ["Function", "Outcome"]]));
    assert_eq!(dimensions_of(queued, "RedisLatency"), json!([["Function", "Activity"], ["Function"]]));
    let redis_ms = queued["RedisLatency"].as_f64().or_else(|| queued["RedisLatency"][0].as_f64()).expect("latency");
    assert!(redis_ms > 0.0 && redis_ms < 5_000.0, "{queued}");
    let rejected = buys.iter().find(|d| d["Outcome"] == "rejected").expect("a rejected buy");
    assert!(rejected.get("Activity").is_none(), "{rejected}");
    assert_eq!(dimensions_of(rejected, "Buys"), json!([["Function", "Outcome"]]));

    // The order write: two rows for sale a, each with its lag.
    let written = docs(&emitted, "order-consumer", "OrdersWritten");
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!((written[0]["Activity"].as_str(), written[0]["OrdersWritten"].as_f64()), (Some(sa.as_str()), Some(2.0)));
    let lags: Vec<f64> = written[0]["PipelineLag"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
    assert_eq!(lags.len(), 2, "{}", written[0]);
    assert!(lags.iter().all(|l| (0.0..60_000.0).contains(l)), "{lags:?}");
    assert!(!docs(&emitted, "order-consumer", "MysqlLatency").is_empty(), "the consumer's MySQL calls are timed");

    // One payment (the second pay changed nothing), a balanced reconcile.
    let paid: f64 = docs(&emitted, "orders", "Payments").iter().filter_map(|d| d["Payments"].as_f64()).sum();
    assert_eq!(paid, 1.0);
    let rec = docs(&emitted, "admin", "ReconcileUnbalanced");
    assert_eq!(rec.len(), 1);
    assert_eq!((rec[0]["Activity"].as_str(), rec[0]["ReconcileUnbalanced"].as_f64()), (Some(sa.as_str()), Some(0.0)));

    // The dead letter and its restored unit, under sale b; the outbox gauges of the runs.
    let dead = docs(&emitted, "outbox-retry", "DeadLetters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0]["Activity"].as_str(), dead[0]["DeadLetters"].as_f64()), (Some(sb.as_str()), Some(1.0)));
    assert_eq!(dimensions_of(dead[0], "DeadLetters"), json!([["Function", "Activity"], ["Function"]]));
    let restored = docs(&emitted, "outbox-retry", "UnitsRestored");
    assert_eq!(restored.iter().filter_map(|d| d["UnitsRestored"].as_f64()).sum::<f64>(), 1.0);
    let gauges = docs(&emitted, "outbox-retry", "OutboxPending");
    assert_eq!(gauges.len(), 2, "one reading per run");
    assert_eq!(
        gauges.last().and_then(|d| d["OutboxPending"].as_f64()),
        Some(0.0),
        "nothing left after the dead letter"
    );

    // `/metrics`: the same counts, from the same documents.
    let text = env.http.get(format!("{}/metrics", env.base_url)).send().await.expect("GET /metrics");
    assert_eq!(text.status(), StatusCode::OK);
    let text = text.text().await.expect("body");
    for ((activity, outcome), n) in &expected {
        let series = if activity == "-" {
            format!("flash_buys_total{{function=\"buy\",outcome=\"{outcome}\"}}")
        } else {
            format!("flash_buys_total{{function=\"buy\",activity=\"{activity}\",outcome=\"{outcome}\"}}")
        };
        assert_eq!(sample(&text, &series), Some(*n), "{series} in\n{text}");
    }
    let orders = format!("flash_orders_written_total{{function=\"order-consumer\",activity=\"{sa}\"}}");
    assert_eq!(sample(&text, &orders), Some(2.0), "{text}");
    let lag = format!("flash_pipeline_lag_milliseconds_count{{function=\"order-consumer\",activity=\"{sa}\"}}");
    assert_eq!(sample(&text, &lag), Some(2.0), "{text}");
    let dead = format!("flash_dead_letters_total{{function=\"outbox-retry\",activity=\"{sb}\"}}");
    assert_eq!(sample(&text, &dead), Some(1.0), "{text}");
    assert_eq!(sample(&text, &format!("flash_payments_total{{function=\"orders\",activity=\"{sa}\"}}")), Some(1.0));
    assert!(text.contains("# TYPE flash_redis_latency_milliseconds histogram"), "{text}");
    assert_eq!(env.registry.value(Metric::Buys, &[("function", "buy")]), Some(6.0));
}

fn lambda_event() -> lambda_runtime::LambdaEvent<Value> {
    lambda_runtime::LambdaEvent::new(json!({}), lambda_runtime::Context::default())
}
