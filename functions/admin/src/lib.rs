//! `/admin/...` (the `ADMIN_SCOPE` scope): products, activities, paginated lists, warm-up, publish, and
//! the reconcile report. The handler parses and maps; every action is `shared::admin`'s.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use chrono::{DateTime, FixedOffset, Utc};
use lambda_http::{Body, Error, Request, Response, http::Method, http::StatusCode};
use serde::Deserialize;
pub use shared::admin::Admin;
use shared::{
    admin,
    config::{self, ConfigError, CoreConfig},
    domain::{NewActivity, NewProduct, OrderStatus},
    http::{self, ApiError},
    sale,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub core: CoreConfig,
    /// Where published pages go (`PUBLISH_BUCKET`, else `PUBLISH_DIR`) and which API they
    /// call (`PUBLIC_API_URL`).
    pub publish: config::PublishConfig,
    /// `ADMIN_SCOPE`: the scope an admin token carries (the HttpApi's routes require it too).
    pub admin_scope: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            core: CoreConfig::from_env()?,
            publish: config::PublishConfig::from_env()?,
            admin_scope: config::admin_scope()?,
        })
    }
}

pub async fn build(cfg: &Config) -> Result<Admin, Error> {
    Ok(Admin {
        sale: sale::connect(&cfg.core, "admin").await?,
        pages: admin::Pages::connect(&cfg.publish).await,
        admin_scope: cfg.admin_scope.clone(),
    })
}

pub async fn handler(admin: &Admin, req: Request) -> Result<Response<Body>, Error> {
    // Boxed: the route reaches deep into the library; a boxed future keeps the runtime's
    // service type shallow (release builds otherwise overflow the compiler's layout limit).
    Ok(http::respond(admin.sale.metrics.invocation(Box::pin(route(admin, &req))).await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    name: String,
    #[serde(default)]
    description: String,
    price_cents: i64,
    #[serde(default)]
    image_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityBody {
    #[serde(deserialize_with = "http::deserialize_id")]
    product_id: u64,
    stock: i64,
    starts_at: DateTime<FixedOffset>,
    ends_at: DateTime<FixedOffset>,
    rate_limit_per_sec: i64,
    burst: i64,
    #[serde(default = "default_per_user")]
    per_user_per_min: i64,
    /// Stock buckets (1 to 16): the sale's stock split over that many Redis hash tags.
    #[serde(default = "default_buckets")]
    buckets: i64,
}

/// `PATCH /admin/activities/{id}`: any of the three limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    rate_limit_per_sec: Option<i64>,
    burst: Option<i64>,
    per_user_per_min: Option<i64>,
    buckets: Option<i64>,
}

fn default_per_user() -> i64 {
    5
}

fn default_buckets() -> i64 {
    1
}

fn buckets(v: i64) -> Result<u16, ApiError> {
    Ok(admin::count("buckets", v, shared::domain::MAX_BUCKETS.into())? as u16)
}

/// The request's `Idempotency-Key`, if it sent one.
fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => Ok(Some(admin::idempotency_key(v.to_str().unwrap_or_default())?)),
    }
}

fn ok(status: StatusCode, value: &impl serde::Serialize) -> Result<Response<Body>, ApiError> {
    Ok(http::json(status, value))
}

#[tracing::instrument(skip_all, fields(admin, method = %req.method(), path = %req.uri().path()))]
async fn route(a: &Admin, req: &Request) -> Result<Response<Body>, ApiError> {
    let who = http::require_admin(req, &a.admin_scope)?;
    let who = who.as_str();
    tracing::Span::current().record("admin", who);
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let paging = || admin::paging(http::query(req, "page"), http::query(req, "per"));
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["admin", "products"]) => {
            let b: ProductBody = http::json_body_up_to(req, http::MAX_ADMIN_BODY_BYTES)?;
            let p = NewProduct {
                name: b.name,
                description: b.description,
                price_cents: b.price_cents,
                image_url: b.image_url,
            };
            ok(StatusCode::CREATED, &a.create_product(who, &p, idempotency_key(req)?.as_deref()).await?)
        }
        (&Method::GET, ["admin", "products"]) => {
            let (page, per) = paging()?;
            ok(StatusCode::OK, &a.list_products(page, per).await?)
        }
        (&Method::POST, ["admin", "activities"]) => {
            let b: ActivityBody = http::json_body(req)?;
            let new = NewActivity {
                product_id: b.product_id,
                stock: b.stock,
                starts_at: b.starts_at.with_timezone(&Utc),
                ends_at: b.ends_at.with_timezone(&Utc),
                rate_limit_per_sec: admin::count("rate_limit_per_sec", b.rate_limit_per_sec, admin::MAX_RATE_PER_SEC)?,
                burst: admin::count("burst", b.burst, admin::MAX_BURST)?,
                per_user_per_min: admin::count("per_user_per_min", b.per_user_per_min, admin::MAX_PER_USER_PER_MIN)?,
                buckets: buckets(b.buckets)?,
            };
            ok(StatusCode::CREATED, &a.create_activity(who, &new, idempotency_key(req)?.as_deref()).await?)
        }
        (&Method::GET, ["admin", "activities"]) => {
            let (page, per) = paging()?;
            ok(StatusCode::OK, &a.list_activities(page, per).await?)
        }
        (&Method::GET, ["admin", "orders"]) => {
            let (page, per) = paging()?;
            let activity_id = match http::query(req, "activity_id") {
                None => None,
                Some(raw) => Some(
                    raw.parse::<u64>()
                        .ok()
                        .filter(|id| shared::domain::valid_id(*id))
                        .ok_or_else(|| ApiError::InvalidRequest("activity_id must be a positive integer".into()))?,
                ),
            };
            let status = match http::query(req, "status") {
                None => None,
                Some(raw) => Some(raw.parse::<OrderStatus>().map_err(|()| {
                    ApiError::InvalidRequest("status must be pending_payment, paid, cancelled or failed".into())
                })?),
            };
            ok(StatusCode::OK, &a.list_orders(activity_id, status, page, per).await?)
        }
        (&Method::PATCH, ["admin", "activities", id]) => {
            let id = activity_id(id)?;
            let b: LimitsBody = http::json_body(req)?;
            let change = admin::LimitsChange {
                rate_limit_per_sec: b
                    .rate_limit_per_sec
                    .map(|v| admin::count("rate_limit_per_sec", v, admin::MAX_RATE_PER_SEC))
                    .transpose()?,
                burst: b.burst.map(|v| admin::count("burst", v, admin::MAX_BURST)).transpose()?,
                per_user_per_min: b
                    .per_user_per_min
                    .map(|v| admin::count("per_user_per_min", v, admin::MAX_PER_USER_PER_MIN))
                    .transpose()?,
                buckets: b.buckets.map(buckets).transpose()?,
            };
            ok(StatusCode::OK, &a.update_limits(who, id, &change).await?)
        }
        (&Method::POST, ["admin", "activities", id, "warmup"]) => {
            ok(StatusCode::OK, &a.warm(who, activity_id(id)?).await?)
        }
        (&Method::POST, ["admin", "activities", id, "publish"]) => {
            ok(StatusCode::OK, &a.publish(who, activity_id(id)?, request_origin(req).as_deref()).await?)
        }
        (&Method::GET, ["admin", "activities", id, "reconcile"]) => {
            ok(StatusCode::OK, &a.reconcile(activity_id(id)?).await?)
        }
        _ => Err(ApiError::RouteNotFound),
    }
}

/// The origin the request was addressed to (`PUBLIC_API_URL=request`): API Gateway passes the
/// API's own host and `x-forwarded-proto: https`; the local runner passes its host, over http.
fn request_origin(req: &Request) -> Option<String> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header("host").filter(|h| !h.is_empty())?;
    Some(format!("{}://{host}", header("x-forwarded-proto").unwrap_or("http")))
}

fn activity_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| shared::domain::valid_id(*id))
        .ok_or_else(|| ApiError::InvalidRequest("the activity id must be a positive integer".into()))
}
