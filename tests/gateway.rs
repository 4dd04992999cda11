//! The local runner behaves like API Gateway (HTTP API) and Lambda's SQS event source mapping
//! (issue 12), against the real Redis, MariaDB and LocalStack. Pure parts (header joining,
//! cookies, percent-decoding, the batch response rule, the deadline) have unit tests next to
//! their code in `runner/src`; these go through the running runner.

use std::time::{Duration, Instant};

use flash_tests::{SECRET, TestEnv};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn a_bare_token_is_accepted_and_a_foreign_issuer_gets_the_gateways_401() {
    let env = TestEnv::start().await;
    let a = env.open_sale(3).await;
    let token = env.token("bare");
    let body = format!(r#"{{"product_id":{}}}"#, a.product_id);
    // No "Bearer " prefix: the HttpApi JWT authorizer takes the token as it is.
    let r = env
        .http
        .post(format!("{}/buy", env.base_url))
        .header("authorization", &token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let exp = chrono::Utc::now().timestamp() + 600;
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "mallory", "exp": exp, "iss": "https://elsewhere", "aud": runner::auth::LOCAL_AUDIENCE}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = env.request(Method::POST, "/buy", Some(&foreign), Some(body)).await;
    r.assert_gateway_error(401, "Unauthorized");
    assert_eq!(r.www_authenticate.as_deref(), Some(r#"Bearer error="invalid_token""#));
    assert_eq!(env.redis_stock(a.product_id).await, Some(2), "the refused buy changed nothing");
}

#[tokio::test]
async fn a_percent_encoded_receipt_in_the_path_reaches_the_function_decoded() {
    let env = TestEnv::start().await;
    let a = env.open_sale(3).await;
    let r = env.buy("pct", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let receipt = r.json["receipt"].as_str().unwrap().to_owned();
    let encoded = receipt.replace('-', "%2D");
    let token = env.token("pct");
    let r = env.request(Method::GET, &format!("/orders/{encoded}"), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["receipt"], receipt.as_str());
}

#[tokio::test]
async fn a_body_over_api_gateways_10_mb_gets_its_413() {
    let env = TestEnv::start().await;
    let token = env.token("big");
    let r = env.request(Method::POST, "/buy", Some(&token), Some("x".repeat(10 * 1024 * 1024 + 1))).await;
    r.assert_gateway_error(413, "Request Entity Too Large");
}

#[tokio::test]
async fn records_that_arrive_within_the_batching_window_make_one_invocation() {
    let env = TestEnv::start().await;
    let source = env.settings.event_sources().into_iter().next().expect("the orders mapping");
    assert_eq!(source.batching_window, Duration::from_secs(1), "template.yaml: MaximumBatchingWindowInSeconds");
    let sqs = env.settings.poller_client().await;
    let send = |body: &'static str| {
        let (sqs, url) = (env.sqs.clone(), env.orders_queue_url.clone());
        async move { sqs.send_message().queue_url(url).message_body(body).send().await.expect("send") }
    };
    send("first").await;
    // Two more arrive while the poller is gathering.
    let later = tokio::spawn({
        let (sqs, url) = (env.sqs.clone(), env.orders_queue_url.clone());
        async move {
            for body in ["second", "third"] {
                tokio::time::sleep(Duration::from_millis(250)).await;
                sqs.send_message().queue_url(&url).message_body(body).send().await.expect("send");
            }
        }
    });
    let started = Instant::now();
    let handled = runner::events::poll_once(&env.app, &sqs, &source).await.expect("poll");
    later.await.unwrap();
    assert_eq!(handled, 3, "one invocation for the three records");
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited for the others");
}

#[tokio::test]
async fn past_the_stage_throttle_the_gateway_answers_its_own_429() {
    let env = TestEnv::start().await;
    let a = env.open_sale(3).await;
    // A runner of its own with the stage throttled to 1 request/s, burst 2.
    let app = runner::App::new(
        env.settings.build().await.expect("functions"),
        runner::auth::JwtCheck::hs256(SECRET.as_bytes()),
        env.settings.local.web_dir.clone(),
    )
    .with_throttle(1, 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(runner::serve(listener, std::sync::Arc::new(app)));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = env.http.get(format!("{base}/products/{}/stock", a.product_id)).send().await.unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if status == 429 {
            assert_eq!(body, serde_json::json!({"message": "Too Many Requests"}));
        }
        statuses.push(status);
    }
    server.abort();
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

#[tokio::test]
async fn a_failed_record_reappears_after_its_queues_own_visibility_timeout() {
    let env = TestEnv::start().await;
    let sqs = env.settings.poller_client().await;
    let template = env.settings.event_sources().into_iter().next().expect("the orders mapping");
    let id = flash_tests::unique_id();
    // Two queues that differ only in their VisibilityTimeout; the mapping sets none of its own.
    let mut visible_after = Vec::new();
    for secs in [1u64, 30] {
        let url = flash_tests::create_queue(&env.sqs, &format!("t-{id}-vis{secs}"), Duration::from_secs(secs)).await;
        env.sqs.send_message().queue_url(&url).message_body("not an order").send().await.expect("send");
        let source =
            runner::events::EventSource { queue_url: url.clone(), batching_window: Duration::ZERO, ..template.clone() };
        assert_eq!(runner::events::poll_once(&env.app, &sqs, &source).await.expect("poll"), 1);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        visible_after.push(env.depth(&url).await);
    }
    assert_eq!(
        visible_after,
        vec![1, 0],
        "visible again after 2.5 s: under the 1 s queue yes, under the 30 s queue no"
    );
}
