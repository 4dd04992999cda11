//! The local API Gateway: turns an HTTP request into the HTTP API (payload 2.0) event Lambda
//! delivers, runs the matching function's handler and writes its response back.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use lambda_http::{
    Body, Response,
    aws_lambda_events::apigw::{
        ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription, ApiGatewayV2httpRequest,
        ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
    },
    http::StatusCode,
    request::LambdaRequest,
};
use serde_json::json;
use shared::{
    http as api,
    orders::{OrderConsumer, Orders, OutboxRetry, PaymentTimeouts},
    sale::{BuyService, StockQuery},
};
use tokio::net::TcpListener;

use crate::{
    auth::JwtCheck,
    routes::{self, Auth, Function, Matched, Route},
};

/// API Gateway's own payload limit (10 MB); functions set tighter ones.
const GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// Every function's state, built once, as each Lambda function builds its own.
pub struct Functions {
    pub stock_query: StockQuery,
    pub buy: BuyService,
    pub orders: Orders,
    pub order_consumer: OrderConsumer,
    pub payment_timeout: PaymentTimeouts,
    pub outbox_retry: OutboxRetry,
    pub admin: admin::Admin,
    pub warmup: warmup::Warmup,
}

pub struct App {
    pub functions: Functions,
    pub jwt: JwtCheck,
    /// Static assets (`/static/...`) locally; a CDN in front of S3 in AWS.
    pub web_dir: std::path::PathBuf,
    pub routes: &'static [Route],
    requests: AtomicU64,
    /// The HttpApi's CORS configuration (`with_cors`; none by default).
    cors: crate::cors::Cors,
    /// The stage's throttling (template.yaml: ThrottlingRateLimit / ThrottlingBurstLimit), if
    /// set: a token bucket over every route, as API Gateway keeps one per stage.
    throttle: Option<std::sync::Mutex<Throttle>>,
}

/// A token bucket: `rate` per second, `burst` at most.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl Throttle {
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: f64::from(rate), burst, tokens: burst, at: std::time::Instant::now() }
    }

    /// Takes a token if there is one.
    pub fn admit(&mut self, now: std::time::Instant) -> bool {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl std::ops::Deref for App {
    type Target = Functions;
    fn deref(&self) -> &Functions {
        &self.functions
    }
}

impl App {
    pub fn new(functions: Functions, jwt: JwtCheck, web_dir: std::path::PathBuf) -> Self {
        Self {
            functions,
            jwt,
            web_dir,
            routes: routes::ROUTES,
            requests: AtomicU64::new(0),
            throttle: None,
            cors: Default::default(),
        }
    }

    /// Throttles every route at `rate` requests per second with `burst` (0 = no throttling).
    pub fn with_throttle(mut self, rate: u32, burst: u32) -> Self {
        self.throttle = (rate > 0).then(|| std::sync::Mutex::new(Throttle::new(rate, burst)));
        self
    }

    /// Answers CORS as the HttpApi's CorsConfiguration would, for these origins.
    pub fn with_cors(mut self, cors: crate::cors::Cors) -> Self {
        self.cors = cors;
        self
    }

    /// Static files: `/static/<file>` from the web directory; `/p/<file>`, the published
    /// pages, from where the admin function publishes them: LocalStack's S3 bucket (a GET of
    /// `{endpoint}/{bucket}/p/<file>`, as CloudFront's origin request in AWS), served with the
    /// object's Content-Type and Cache-Control, or the publish directory. Only plain file
    /// names, so no path can leave those places.
    async fn static_file(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        use shared::admin::publish;
        let not_found = || Some(gateway_error(StatusCode::NOT_FOUND, "Not Found", None));
        let page = if let Some(name) = path.strip_prefix("/static/") {
            let body = if publish::plain_name(name) {
                tokio::fs::read(self.web_dir.join("static").join(name)).await.ok()
            } else {
                None
            };
            body.map(|body| publish::Page {
                body,
                content_type: Some(publish::content_type(name).to_owned()),
                cache_control: None,
            })
        } else if let Some(name) = path.strip_prefix("/p/") {
            match self.admin.pages.get(name).await {
                Ok(page) => page,
                Err(e) => {
                    // CloudFront answers 502 when its origin fails.
                    tracing::error!(error = %e, name, "published page could not be read");
                    return Some(gateway_error(StatusCode::BAD_GATEWAY, "Bad Gateway", None));
                }
            }
        } else {
            return None;
        };
        let Some(page) = page else { return not_found() };
        let header = |v: Option<String>| v.and_then(|v| lambda_http::http::HeaderValue::try_from(v).ok());
        let mut response = Response::new(Full::new(Bytes::from(page.body)));
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            header(page.content_type)
                .unwrap_or(lambda_http::http::HeaderValue::from_static("application/octet-stream")),
        );
        if let Some(cache_control) = header(page.cache_control) {
            headers.insert("cache-control", cache_control);
        }
        Some(response)
    }

    /// `GET /metrics` (local only; CloudWatch reads the functions' EMF lines in AWS): the
    /// registry every hosted function's metrics feed, in Prometheus text format.
    fn metrics(&self) -> Response<Full<Bytes>> {
        let text = self.buy.sale.metrics.registry().map(|r| r.render()).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(
            "content-type",
            lambda_http::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    /// One HTTP request: the HttpApi's CORS answers (`cors.rs`) around [`App::gateway`].
    pub async fn handle(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if !self.cors.enabled() {
            return self.gateway(req, peer).await;
        }
        if let Some(preflight) = self.cors.preflight(req.method(), req.uri().path(), req.headers()) {
            return preflight;
        }
        // Only the allowed Origin is kept across the call (the request is consumed by it).
        let origin = self.cors.allowed_origin(req.uri().path(), req.headers());
        let mut response = self.gateway(req, peer).await;
        if let Some(origin) = origin {
            crate::cors::Cors::mark(origin, &mut response);
        }
        response
    }

    /// One HTTP request through the gateway and the function.
    async fn gateway(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        if parts.method == hyper::Method::GET
            && let Some(response) = self.static_file(parts.uri.path()).await
        {
            return response;
        }
        if parts.method == hyper::Method::GET && parts.uri.path() == "/metrics" {
            return self.metrics();
        }
        if let Some(throttle) = &self.throttle {
            let admitted = throttle.lock().map(|mut t| t.admit(std::time::Instant::now())).unwrap_or(true);
            if !admitted {
                return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", None);
            }
        }
        let (route, params) = match routes::find(self.routes, &parts.method, parts.uri.path()) {
            Matched::Route(route, params) => (route, params),
            // An HTTP API has no 405: a method no route declares is an unknown route.
            Matched::WrongMethod | Matched::NoRoute => return gateway_error(StatusCode::NOT_FOUND, "Not Found", None),
        };
        let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
        let claims = match route.auth {
            Auth::None => None,
            Auth::User | Auth::Admin => match self.jwt.claims(authorization) {
                Some(claims) => Some(claims),
                None => {
                    // The JWT authorizer's challenge: bare for a missing token, naming the
                    // error for one that does not validate.
                    let challenge = if authorization.is_some() { r#"Bearer error="invalid_token""# } else { "Bearer" };
                    return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized", Some(challenge));
                }
            },
        };
        if route.auth == Auth::Admin && !claims.as_ref().is_some_and(|c| api::has_scope(c, &self.admin.admin_scope)) {
            return gateway_error(StatusCode::FORBIDDEN, "Forbidden", None);
        }
        let body = match Limited::new(body, GATEWAY_BODY_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", None),
        };
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let event = event(route, &parts, &body, params, claims, peer, n);
        // lambda_http's own event-to-request conversion, as in Lambda.
        let mut request = lambda_http::Request::from(LambdaRequest::ApiGatewayV2(event));
        // The invocation's context, with its deadline (the function's Timeout), as Lambda gives it.
        request
            .extensions_mut()
            .insert(crate::events::invocation_context(crate::wiring::HTTP_TIMEOUT, format!("local-{n}")));
        let result = match route.function {
            Function::StockQuery => stock_query::handler(&self.stock_query, request).await,
            Function::Buy => buy::handler(&self.buy, request).await,
            Function::Orders => orders::handler(&self.orders, request).await,
            Function::Admin => admin::handler(&self.admin, request).await,
        };
        match result {
            Ok(response) => to_hyper(response),
            Err(e) => {
                // Lambda reports a function error; API Gateway answers 500.
                tracing::error!(error = %e, route = route.path, "function returned an error");
                internal_error()
            }
        }
    }
}

/// API Gateway's own answer (HTTP APIs cannot customise these): `{"message": "..."}`. The
/// functions' errors have the contract's body; these never reach a function.
fn gateway_error(
    status: StatusCode,
    message: &'static str,
    www_authenticate: Option<&'static str>,
) -> Response<Full<Bytes>> {
    let mut response = to_hyper(api::json(status, &json!({ "message": message })));
    if let Some(challenge) = www_authenticate {
        response.headers_mut().insert("www-authenticate", lambda_http::http::HeaderValue::from_static(challenge));
    }
    response
}

/// A function that failed (returned an error, or crashed): Lambda reports a function error and
/// API Gateway answers 500 with its own body.
fn internal_error() -> Response<Full<Bytes>> {
    gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None)
}

/// The HTTP API payload 2.0 event, as API Gateway builds it (typed, so no JSON round trip on
/// the hot path; `events/` holds the same shape as JSON for `cargo lambda invoke`).
fn event(
    route: &Route,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    params: Vec<(String, String)>,
    claims: Option<std::collections::HashMap<String, String>>,
    peer: SocketAddr,
    n: u64,
) -> ApiGatewayV2httpRequest {
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = chrono::Utc::now();
    let route_key = format!("{} {}", route.method, route.path);

    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = parts.method.clone();
    http.path = Some(parts.uri.path().to_owned());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some(peer.ip().to_string());
    http.user_agent = parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let mut context = ApiGatewayV2httpRequestContext::default();
    context.route_key = Some(route_key.clone());
    context.account_id = Some("000000000000".into());
    context.stage = Some("$default".into());
    context.request_id = Some(format!("local-{n}"));
    context.apiid = Some("local".into());
    context.domain_name = Some("localhost".into());
    context.domain_prefix = Some("localhost".into());
    context.time = Some(now.format("%d/%b/%Y:%H:%M:%S %z").to_string());
    context.time_epoch = now.timestamp_millis();
    context.http = http;
    context.authorizer = claims.map(|claims| {
        let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
        jwt.claims = claims;
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.jwt = Some(jwt);
        authorizer
    });

    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(route_key);
    event.raw_path = Some(parts.uri.path().to_owned());
    event.raw_query_string = Some(parts.uri.query().unwrap_or("").to_owned());
    let (headers, cookies) = gateway_headers(&parts.headers);
    event.headers = headers;
    event.cookies = (!cookies.is_empty()).then_some(cookies);
    event.path_parameters = params.into_iter().map(|(k, v)| (k, percent_decode(&v))).collect();
    event.request_context = context;
    event.body = Some(body);
    event.is_base64_encoded = is_base64;
    event
}

/// Headers as an HTTP API (payload 2.0) hands them over: one entry per name, repeated
/// headers joined with commas, and `Cookie` moved out into `cookies` (one entry per cookie).
fn gateway_headers(headers: &hyper::HeaderMap) -> (hyper::HeaderMap, Vec<String>) {
    let mut out = hyper::HeaderMap::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if name == hyper::header::COOKIE {
            cookies.extend(
                values.iter().flat_map(|v| v.split(';')).map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned),
            );
            continue;
        }
        if let Ok(joined) = hyper::header::HeaderValue::from_str(&values.join(",")) {
            out.insert(name.clone(), joined);
        }
    }
    (out, cookies)
}

/// A path parameter as API Gateway passes it: percent-decoded (left as sent if the decoded
/// bytes are not UTF-8).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

fn to_hyper(response: Response<Body>) -> Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    Response::from_parts(parts, Full::new(bytes))
}

/// Serves HTTP/1.1 on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors under load, for instance: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req, peer).await) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined_with_commas_and_cookies_move_to_their_own_list() {
        let mut h = hyper::HeaderMap::new();
        h.append("x-tag", "a".parse().unwrap());
        h.append("x-tag", "b".parse().unwrap());
        h.append("cookie", "s=1; theme=dark".parse().unwrap());
        h.append("cookie", "lang=en".parse().unwrap());
        let (headers, cookies) = gateway_headers(&h);
        assert_eq!(headers.get_all("x-tag").iter().collect::<Vec<_>>(), vec!["a,b"]);
        assert!(headers.get("cookie").is_none());
        assert_eq!(cookies, vec!["s=1", "theme=dark", "lang=en"]);
    }

    #[test]
    fn the_stage_throttle_admits_the_burst_then_the_rate() {
        let mut t = Throttle::new(10, 3);
        let t0 = std::time::Instant::now();
        assert!((0..3).all(|_| t.admit(t0)));
        assert!(!t.admit(t0));
        assert!(t.admit(t0 + std::time::Duration::from_millis(100)));
        assert!(!t.admit(t0 + std::time::Duration::from_millis(100)));
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        assert_eq!(percent_decode("1-1-al%40ce-3"), "1-1-al@ce-3");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%FF"), "%FF", "not UTF-8: left as sent");
    }
}
