//! CORS as the HttpApi answers it once template.yaml gives it a `CorsConfiguration` (the sale
//! pages live on CloudFront, the API on execute-api: two origins). API Gateway answers every
//! preflight itself, before any route or authorizer, and adds the CORS headers to the
//! responses to an allowed origin; a function never sees or sets them.
//!
//! Locally the allowed origins are `CORS_ALLOWED_ORIGINS` (none by default: same origin only,
//! and then an `OPTIONS` request is an unknown route, 404, as on an HttpApi without CORS).
//! Only the API is covered: `/p/`, `/static/` and `/metrics` stand in for CloudFront and tools.

use bytes::Bytes;
use http_body_util::Full;
use lambda_http::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// template.yaml, `HttpApi.CorsConfiguration` (keep the two the same).
pub const ALLOW_HEADERS: &str = "authorization,cache-control,content-type,idempotency-key";
pub const ALLOW_METHODS: &str = "GET,OPTIONS,PATCH,POST";
pub const EXPOSE_HEADERS: &str = "retry-after";
pub const MAX_AGE_SECS: &str = "600";

/// The allowed origins (lowercase, as `config::origins` parses them).
#[derive(Debug, Clone, Default)]
pub struct Cors {
    allowed: Vec<String>,
}

impl Cors {
    pub fn new(allowed: Vec<String>) -> Self {
        Self { allowed }
    }

    /// Whether any origin is allowed (otherwise nothing here applies).
    pub fn enabled(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// The request's `Origin`, if CORS covers this path and allows that origin (what
    /// [`Cors::mark`] later puts on the response).
    pub fn allowed_origin(&self, path: &str, headers: &HeaderMap) -> Option<HeaderValue> {
        if self.allowed.is_empty() || ["/p/", "/static/", "/metrics"].iter().any(|p| path.starts_with(p)) {
            return None;
        }
        let origin = headers.get("origin")?;
        let text = origin.to_str().ok()?;
        self.allowed.iter().any(|a| a.eq_ignore_ascii_case(text)).then(|| origin.clone())
    }

    /// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`), answered
    /// without reaching a route: 204, with the CORS headers only when the origin is allowed
    /// (the browser then refuses the actual request). `None`: not a preflight, or CORS is off.
    pub fn preflight(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        if self.allowed.is_empty()
            || method != Method::OPTIONS
            || !headers.contains_key("origin")
            || !headers.contains_key("access-control-request-method")
        {
            return None;
        }
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        if let Some(origin) = self.allowed_origin(path, headers) {
            let h = response.headers_mut();
            h.insert("access-control-allow-origin", origin);
            h.insert("access-control-allow-methods", HeaderValue::from_static(ALLOW_METHODS));
            h.insert("access-control-allow-headers", HeaderValue::from_static(ALLOW_HEADERS));
            h.insert("access-control-max-age", HeaderValue::from_static(MAX_AGE_SECS));
        }
        Some(response)
    }

    /// Adds the CORS headers to the response of an allowed origin's request (the gateway's
    /// own errors included, so a page can read a 401 or 429 too).
    pub fn mark(origin: HeaderValue, response: &mut Response<Full<Bytes>>) {
        let h = response.headers_mut();
        h.insert("access-control-allow-origin", origin);
        h.insert("access-control-expose-headers", HeaderValue::from_static(EXPOSE_HEADERS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (lambda_http::http::HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn a_preflight_gets_the_headers_only_for_an_allowed_origin() {
        let cors = Cors::new(vec!["https://pages.example".into()]);
        let asks = |origin| headers(&[("origin", origin), ("access-control-request-method", "POST")]);
        let ok = cors.preflight(&Method::OPTIONS, "/buy", &asks("https://pages.example"));
        let ok = ok.map(|r| (r.status(), r.headers().clone()));
        assert_eq!(ok.as_ref().map(|(s, _)| *s), Some(StatusCode::NO_CONTENT));
        assert_eq!(
            ok.as_ref().and_then(|(_, h)| h.get("access-control-allow-origin").cloned()),
            Some(HeaderValue::from_static("https://pages.example"))
        );
        let other = cors.preflight(&Method::OPTIONS, "/buy", &asks("https://evil.example"));
        assert!(other.is_some_and(|r| r.headers().is_empty()));
        assert!(Cors::default().preflight(&Method::OPTIONS, "/buy", &asks("https://pages.example")).is_none());
        assert!(cors.preflight(&Method::GET, "/buy", &asks("https://pages.example")).is_none());
    }
}
