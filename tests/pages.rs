//! The sale page as AWS hosts it: publish puts it (and its assets) in an S3 bucket (LocalStack
//! here), the runner's `/p/` serves it from there as CloudFront does, the page names the API it
//! calls, and the API answers CORS for the pages' origin only.

use chrono::Duration as Span;
use flash_tests::{Options, TestEnv};
use reqwest::{Method, StatusCode};
use shared::config::ApiBase;

const API_URL: &str = "https://api.flash.example";
const PAGES_ORIGIN: &str = "http://pages.flash.example";

/// A product with an activity, published: the product id.
async fn published(env: &TestEnv) -> u64 {
    let product_id = env.admin_product().await;
    let activity_id = env.admin_activity(product_id, 5, Span::minutes(5), Span::hours(1)).await;
    let p = env.admin(Method::POST, &format!("/admin/activities/{activity_id}/publish"), None).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.json["url"], format!("/p/{product_id}.html"));
    product_id
}

async fn get(env: &TestEnv, path: &str) -> (StatusCode, String, String) {
    let resp = env.http.get(format!("{}{path}", env.base_url)).send().await.expect("runner answers");
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (resp.status(), content_type, resp.text().await.expect("body"))
}

#[tokio::test]
async fn publish_puts_the_page_in_the_bucket_and_the_runner_serves_it_from_there() {
    let env = TestEnv::start_with(Options {
        pages_bucket: true,
        public_api_url: ApiBase::Url(API_URL.into()),
        ..Options::default()
    })
    .await;
    let product_id = published(&env).await;

    // In the bucket, under p/, with its type and a short cache lifetime; the assets beside it.
    let bucket = env.pages_bucket.clone().expect("a pages bucket");
    let s3 = shared::s3::client(&flash_tests::s3_config()).await;
    let page = shared::s3::get(&s3, &bucket, &format!("p/{product_id}.html")).await.expect("get").expect("page in S3");
    assert_eq!(page.content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(page.cache_control.as_deref(), Some("public, max-age=60"));
    let html = String::from_utf8(page.body).expect("utf-8");
    assert!(html.contains(&format!(r#"data-api-url="{API_URL}""#)), "the page names the API: {html}");
    assert!(html.contains(r#"src="sale.js""#) && html.contains(r#"href="sale.css""#), "{html}");
    for (asset, kind) in [("sale.js", "text/javascript; charset=utf-8"), ("sale.css", "text/css; charset=utf-8")] {
        let object = shared::s3::get(&s3, &bucket, &format!("p/{asset}")).await.expect("get").expect("asset in S3");
        assert_eq!(object.content_type.as_deref(), Some(kind), "{asset}");
    }

    // Through the runner's /p/: the same bytes, with the object's Content-Type.
    let (status, content_type, body) = get(&env, &format!("/p/{product_id}.html")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_eq!(body, html);
    let (status, content_type, _) = get(&env, "/p/sale.js").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/javascript; charset=utf-8"));

    // A page that was never published: API Gateway's own 404 body.
    let (status, _, body) = get(&env, "/p/999999999.html").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).ok(),
        Some(serde_json::json!({"message": "Not Found"}))
    );
    let (status, _, _) = get(&env, "/p/..%2Fsecret").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_public_api_url_request_the_page_names_the_api_it_was_published_through() {
    let env =
        TestEnv::start_with(Options { pages_bucket: true, public_api_url: ApiBase::Request, ..Options::default() })
            .await;
    let product_id = published(&env).await;
    let (status, _, html) = get(&env, &format!("/p/{product_id}.html")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!(r#"data-api-url="{}""#, env.base_url)), "{html}");
}

#[tokio::test]
async fn the_api_answers_cors_for_an_allowed_origin_and_stays_silent_for_another() {
    let env =
        TestEnv::start_with(Options { cors_allowed_origins: vec![PAGES_ORIGIN.into()], ..Options::default() }).await;
    let preflight = |origin: &'static str| {
        env.http
            .request(Method::OPTIONS, format!("{}/buy", env.base_url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type,cache-control")
            .send()
    };
    let header =
        |r: &reqwest::Response, name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);

    let allowed = preflight(PAGES_ORIGIN).await.expect("preflight");
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some(PAGES_ORIGIN));
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(["GET", "POST", "PATCH", "OPTIONS"].iter().all(|m| methods.contains(m)), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    assert!(
        ["authorization", "content-type", "idempotency-key", "cache-control"].iter().all(|h| headers.contains(h)),
        "{headers}"
    );

    let other = preflight("https://elsewhere.example").await.expect("preflight");
    assert_eq!(other.status(), StatusCode::NO_CONTENT);
    assert!(other.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", other.headers());

    // The actual request: marked for the allowed origin (retry-after readable), not for another.
    let stock = |origin: &'static str| {
        env.http.get(format!("{}/products/424242/stock", env.base_url)).header("origin", origin).send()
    };
    let marked = stock(PAGES_ORIGIN).await.expect("stock");
    assert_eq!(header(&marked, "access-control-allow-origin").as_deref(), Some(PAGES_ORIGIN));
    assert_eq!(header(&marked, "access-control-expose-headers").as_deref(), Some("retry-after"));
    let unmarked = stock("https://elsewhere.example").await.expect("stock");
    assert_eq!(header(&unmarked, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_allowed_origins_an_options_request_is_an_unknown_route() {
    let env = TestEnv::start().await;
    let r = env
        .http
        .request(Method::OPTIONS, format!("{}/buy", env.base_url))
        .header("origin", PAGES_ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
