//! The HTTP boundary shared by every HTTP function: the error type (status, code, JSON body),
//! reading the caller's identity from the authorizer claims ([`identity`]), and parsing
//! bodies, paths and queries ([`parse`]).
//!
//! 4xx answers are values, not `Err`: a handler returns `Ok(response)` for them. Internal
//! causes are logged here, once, with their chain, and never sent to the client.

pub mod identity;
pub mod parse;

use std::time::Duration;

use lambda_http::{
    Body, Response,
    http::{HeaderValue, StatusCode, header},
};
use serde::Serialize;

pub use identity::{has_scope, require_admin, user};
pub use parse::{MAX_ADMIN_BODY_BYTES, MAX_BODY_BYTES, deserialize_id, json_body, json_body_up_to, path_id, query};

use crate::{admin::AdminError, sale::SaleError, telemetry::error_chain};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("a valid bearer token is required")]
    Unauthenticated,
    #[error("this route requires the admin scope")]
    Forbidden,
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("no such product")]
    ProductNotFound,
    #[error("the sale has not started yet")]
    SaleNotStarted,
    #[error("the sale has ended")]
    SaleEnded,
    #[error("sold out")]
    SoldOut,
    /// A repeated buy: the answer carries the existing receipt, so a lost 202 is recoverable.
    #[error("you already bought this product in this sale; your receipt is in this answer")]
    AlreadyBought { receipt: String },
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
    #[error("the activity has started: its number of buckets can no longer change")]
    ActivityStarted,
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::SaleNotStarted | Self::SaleEnded => StatusCode::FORBIDDEN,
            Self::RouteNotFound | Self::ProductNotFound | Self::OrderNotFound | Self::ActivityNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::SoldOut
            | Self::AlreadyBought { .. }
            | Self::OrderNotReady
            | Self::OrderCancelled
            | Self::ActivityStarted => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RouteNotFound => "not_found",
            Self::ProductNotFound => "product_not_found",
            Self::SaleNotStarted | Self::SaleEnded => "sale_not_open",
            Self::SoldOut => "sold_out",
            Self::AlreadyBought { .. } => "already_bought",
            Self::OrderNotFound => "order_not_found",
            Self::ActivityNotFound => "activity_not_found",
            Self::OrderNotReady => "order_not_ready",
            Self::OrderCancelled => "order_cancelled",
            Self::ActivityStarted => "activity_started",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        if let Self::Unavailable(cause) = &self {
            tracing::error!(error = %error_chain(cause.as_ref()), "answering 503");
        }
        let mut error = serde_json::json!({"code": self.code(), "message": self.to_string()});
        if let Self::AlreadyBought { receipt } = &self {
            error["receipt"] = serde_json::Value::from(receipt.as_str());
        }
        let body = serde_json::json!({ "error": error });
        let mut response = json(self.status_code(), &body);
        if let Self::Unauthenticated = self {
            // RFC 7235: a 401 names its challenge (the token was valid for the gateway, but
            // its subject is not a usable user id).
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
        }
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

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(msg) => Self::InvalidRequest(msg),
            AdminError::NotFound => Self::ActivityNotFound,
            AdminError::Started => Self::ActivityStarted,
            AdminError::Sale(e) => e.into(),
            other @ AdminError::Publish(_) => Self::Unavailable(Box::new(other)),
        }
    }
}

/// A JSON response.
/// The request says `Cache-Control: no-cache`: answer from the origin, not from a cache.
pub fn asks_no_cache(req: &lambda_http::Request) -> bool {
    req.headers()
        .get_all(lambda_http::http::header::CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-cache"))))
}

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
