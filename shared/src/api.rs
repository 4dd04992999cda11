//! The HTTP boundary shared by every HTTP function: the error type (status, code, JSON body),
//! reading the caller's identity from the authorizer claims, and parsing bodies and paths.
//!
//! 4xx answers are values, not `Err`: a handler returns `Ok(response)` for them. Internal
//! causes are logged here, once, with their chain, and never sent to the client.

use std::time::Duration;

use lambda_http::{
    Body, Request, RequestExt, Response,
    http::{HeaderValue, StatusCode, header},
    request::RequestContext,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{domain::UserId, sale::SaleError};

/// Largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("a valid bearer token is required")]
    Unauthenticated,
    #[error("this route requires the admin scope")]
    Forbidden,
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("this route does not accept this method")]
    MethodNotAllowed,
    #[error("no such product")]
    ProductNotFound,
    #[error("the sale has not started yet")]
    SaleNotStarted,
    #[error("the sale has ended")]
    SaleEnded,
    #[error("sold out")]
    SoldOut,
    #[error("you already bought this product in this sale")]
    AlreadyBought,
    #[error("too many requests; retry later")]
    RateLimited { retry_after: Duration },
    #[error("no such order")]
    OrderNotFound,
    #[error("no such activity")]
    ActivityNotFound,
    #[error("the order is not written yet; retry in a moment")]
    OrderNotReady,
    #[error("the order was cancelled (unpaid in time, or the purchase failed)")]
    OrderCancelled,
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::SaleNotStarted | Self::SaleEnded => StatusCode::FORBIDDEN,
            Self::RouteNotFound | Self::ProductNotFound | Self::OrderNotFound | Self::ActivityNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::SoldOut | Self::AlreadyBought | Self::OrderNotReady | Self::OrderCancelled => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RouteNotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::ProductNotFound => "product_not_found",
            Self::SaleNotStarted | Self::SaleEnded => "sale_not_open",
            Self::SoldOut => "sold_out",
            Self::AlreadyBought => "already_bought",
            Self::OrderNotFound => "order_not_found",
            Self::ActivityNotFound => "activity_not_found",
            Self::OrderNotReady => "order_not_ready",
            Self::OrderCancelled => "order_cancelled",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        if let Self::Unavailable(cause) = &self {
            tracing::error!(error = %error_chain(cause.as_ref()), "answering 503");
        }
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = json(self.status_code(), &body);
        if let Self::RateLimited { retry_after } = self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<SaleError> for ApiError {
    fn from(e: SaleError) -> Self {
        match e {
            SaleError::ProductNotFound => Self::ProductNotFound,
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(e: crate::admin::AdminError) -> Self {
        match e {
            crate::admin::AdminError::Invalid(msg) => Self::InvalidRequest(msg),
            crate::admin::AdminError::NotFound => Self::ActivityNotFound,
            crate::admin::AdminError::Sale(e) => e.into(),
        }
    }
}

/// A query-string parameter, if present.
pub fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
}

/// "outer: inner: innermost", for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Turns a handler's `Result` into the response; the one place where errors become bodies.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

/// The JWT claims the HttpApi authorizer (or the local runner, identically) put in the
/// request context.
fn claims(req: &Request) -> Option<&std::collections::HashMap<String, String>> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => Some(&ctx.authorizer.as_ref()?.jwt.as_ref()?.claims),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The calling user (`sub`), or 401.
pub fn user(req: &Request) -> Result<UserId, ApiError> {
    let sub = claims(req).and_then(|c| c.get("sub")).ok_or(ApiError::Unauthenticated)?;
    UserId::parse(sub).ok_or(ApiError::Unauthenticated)
}

/// Whether a `scope` claim (space-separated, or API Gateway's "[a b]" form) grants `admin`.
/// Cognito names custom scopes `<resource server>/<scope>`, so `…/admin` counts too.
pub fn has_admin_scope(scope: &str) -> bool {
    scope.trim_matches(|c| c == '[' || c == ']').split_whitespace().any(|s| s == "admin" || s.ends_with("/admin"))
}

/// 401 without a user, 403 without the `admin` scope.
pub fn require_admin(req: &Request) -> Result<UserId, ApiError> {
    let user = user(req)?;
    let scope = claims(req).and_then(|c| c.get("scope")).map(String::as_str).unwrap_or("");
    if has_admin_scope(scope) { Ok(user) } else { Err(ApiError::Forbidden) }
}

/// The body as `T` (which should deny unknown fields), or a 4xx that says what is wrong.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::InvalidRequest("a JSON body is required".into())),
        // serde would also read a struct from a JSON array; the contract says object.
        Some(b'{') => {}
        Some(_) => return Err(ApiError::InvalidRequest("the body must be a JSON object".into())),
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

/// A positive integer id from the path.
pub fn path_id(req: &Request, name: &str) -> Result<u64, ApiError> {
    let raw = req
        .path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or_else(|| ApiError::InvalidRequest(format!("missing path parameter {name}")))?;
    raw.parse::<u64>()
        .ok()
        .filter(|id| crate::domain::valid_id(*id))
        .ok_or_else(|| ApiError::InvalidRequest(format!("{name} must be an integer between 1 and 2^53-1")))
}

/// Deserializes an id field, refusing 0, negatives and anything above 2^53-1.
pub fn deserialize_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let id = <u64 as serde::Deserialize>::deserialize(d)?;
    if crate::domain::valid_id(id) {
        Ok(id)
    } else {
        Err(serde::de::Error::custom("an id must be between 1 and 2^53-1"))
    }
}
