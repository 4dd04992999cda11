//! `/admin/...` (scope `admin`): products, activities, paginated lists, warm-up, publish, and
//! the reconcile report. Every action is logged with the admin's id.

use chrono::{DateTime, FixedOffset, Utc};
use lambda_http::{Body, Error, Request, Response, http::Method, http::StatusCode};
use serde::Deserialize;
use shared::{
    admin::{self, AdminError},
    api::{self, ApiError},
    config::{ConfigError, CoreConfig},
    db::{NewActivity, NewProduct},
    domain::OrderStatus,
    sale::{self, Sale},
    scripts::LoadReply,
};

/// The page template, built into the binary so the function needs no file at run time.
pub const PAGE_TEMPLATE: &str = include_str!("../../../web/product.html.tmpl");

#[derive(Debug, Clone)]
pub struct Config {
    pub core: CoreConfig,
    /// Where published pages are written (served locally at `/p/`; in AWS an S3 sync target).
    pub publish_dir: std::path::PathBuf,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            core: CoreConfig::from_env()?,
            publish_dir: std::env::var("PUBLISH_DIR").unwrap_or_else(|_| "/tmp/flash-sale-pages".into()).into(),
        })
    }
}

pub struct Admin {
    pub sale: Sale,
    pub publish_dir: std::path::PathBuf,
}

pub fn build(cfg: &Config) -> Result<Admin, Error> {
    Ok(Admin { sale: sale::connect(&cfg.core)?, publish_dir: cfg.publish_dir.clone() })
}

pub async fn handler(admin: &Admin, req: Request) -> Result<Response<Body>, Error> {
    Ok(api::respond(route(admin, &req).await))
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
    #[serde(deserialize_with = "api::deserialize_id")]
    product_id: u64,
    stock: i64,
    starts_at: DateTime<FixedOffset>,
    ends_at: DateTime<FixedOffset>,
    rate_limit_per_sec: i64,
    burst: i64,
    #[serde(default = "default_per_user")]
    per_user_per_min: i64,
}

fn default_per_user() -> i64 {
    5
}

fn positive_u32(name: &str, v: i64) -> Result<u32, ApiError> {
    u32::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::InvalidRequest(format!("{name} must be an integer from 1 to 4294967295")))
}

fn ok(status: StatusCode, value: &impl serde::Serialize) -> Result<Response<Body>, ApiError> {
    Ok(api::json(status, value))
}

#[tracing::instrument(skip_all, fields(admin, method = %req.method(), path = %req.uri().path()))]
async fn route(a: &Admin, req: &Request) -> Result<Response<Body>, ApiError> {
    let who = api::require_admin(req)?;
    let who = who.as_str();
    tracing::Span::current().record("admin", who);
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let sale = &a.sale;
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["admin", "products"]) => {
            let b: ProductBody = api::json_body(req)?;
            let p = NewProduct {
                name: b.name,
                description: b.description,
                price_cents: b.price_cents,
                image_url: b.image_url,
            };
            ok(StatusCode::CREATED, &sale.admin_create_product(who, &p).await?)
        }
        (&Method::GET, ["admin", "products"]) => {
            let (page, per) = admin::paging(api::query(req, "page"), api::query(req, "per"))?;
            ok(StatusCode::OK, &sale.db.list_products(page, per).await.map_err(AdminError::from)?)
        }
        (&Method::POST, ["admin", "activities"]) => {
            let b: ActivityBody = api::json_body(req)?;
            if b.stock < -1 {
                return Err(ApiError::InvalidRequest("stock must be -1 (unlimited) or more".into()));
            }
            let new = NewActivity {
                product_id: b.product_id,
                stock: b.stock,
                starts_at: b.starts_at.with_timezone(&Utc),
                ends_at: b.ends_at.with_timezone(&Utc),
                rate_limit_per_sec: positive_u32("rate_limit_per_sec", b.rate_limit_per_sec)?,
                burst: positive_u32("burst", b.burst)?,
                per_user_per_min: positive_u32("per_user_per_min", b.per_user_per_min)?,
            };
            ok(StatusCode::CREATED, &sale.admin_create_activity(who, &new).await?)
        }
        (&Method::GET, ["admin", "activities"]) => {
            let (page, per) = admin::paging(api::query(req, "page"), api::query(req, "per"))?;
            ok(StatusCode::OK, &sale.db.list_activities(page, per).await.map_err(AdminError::from)?)
        }
        (&Method::GET, ["admin", "orders"]) => {
            let (page, per) = admin::paging(api::query(req, "page"), api::query(req, "per"))?;
            let activity_id = match api::query(req, "activity_id") {
                None => None,
                Some(raw) => Some(
                    raw.parse::<u64>()
                        .ok()
                        .filter(|id| shared::domain::valid_id(*id))
                        .ok_or_else(|| ApiError::InvalidRequest("activity_id must be a positive integer".into()))?,
                ),
            };
            let status = match api::query(req, "status") {
                None => None,
                Some(raw) => Some(raw.parse::<OrderStatus>().map_err(|()| {
                    ApiError::InvalidRequest("status must be pending_payment, paid, cancelled or failed".into())
                })?),
            };
            let orders = sale.admin_list_orders(activity_id, status, page, per).await?;
            let items: Vec<serde_json::Value> = orders
                .items
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "id": o.id, "receipt": o.receipt, "user_id": o.user_id, "status": o.status,
                        "activity_id": o.activity_id, "product_id": o.product_id, "price_cents": o.price_cents,
                        "created_at": o.created_at, "pay_by": o.pay_by, "paid_at": o.paid_at, "cancelled_at": o.cancelled_at,
                    })
                })
                .collect();
            ok(
                StatusCode::OK,
                &serde_json::json!({"items": items, "page": orders.page, "per": orders.per, "total": orders.total}),
            )
        }
        (&Method::POST, ["admin", "activities", id, "warmup"]) => {
            let id = activity_id(id)?;
            let (activity, reply) = sale.admin_warm(who, id).await?;
            let view = sale.stock(activity.product_id).await?;
            ok(
                StatusCode::OK,
                &serde_json::json!({
                    "activity_id": activity.id,
                    "product_id": activity.product_id,
                    "result": match reply { LoadReply::Refreshed => "refreshed", _ => "written" },
                    "stock": view.stock,
                    "state": view.state,
                }),
            )
        }
        (&Method::POST, ["admin", "activities", id, "publish"]) => {
            let id = activity_id(id)?;
            let activity = sale.db.activity(id).await.map_err(AdminError::from)?.ok_or(ApiError::ActivityNotFound)?;
            let product = sale
                .db
                .product(activity.product_id)
                .await
                .map_err(AdminError::from)?
                .ok_or(ApiError::ActivityNotFound)?;
            let html = admin::render_page(PAGE_TEMPLATE, &product, &activity);
            let path = a.publish_dir.join(format!("{}.html", product.id));
            let written = async {
                tokio::fs::create_dir_all(&a.publish_dir).await?;
                tokio::fs::write(&path, html).await
            };
            written.await.map_err(|e| ApiError::Unavailable(Box::new(e)))?;
            tracing::info!(admin = who, action = "publish", activity_id = id, path = %path.display(), "admin action");
            ok(StatusCode::OK, &serde_json::json!({"url": format!("/p/{}.html", product.id), "activity_id": id}))
        }
        (&Method::GET, ["admin", "activities", id, "reconcile"]) => {
            let id = activity_id(id)?;
            ok(StatusCode::OK, &sale.reconcile(id).await?)
        }
        _ => Err(ApiError::RouteNotFound),
    }
}

fn activity_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| shared::domain::valid_id(*id))
        .ok_or_else(|| ApiError::InvalidRequest("the activity id must be a positive integer".into()))
}
