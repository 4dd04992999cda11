//! `GET /orders/{receipt}` and `POST /orders/{receipt}/pay`, for the order's owner only
//! (another user's receipt is 404). Paying is the interface a payment provider would call;
//! there is no real provider.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use chrono::SecondsFormat;
use lambda_http::{Body, Error, Request, RequestExt, Response, http::Method, http::StatusCode};
use shared::{
    config::CoreConfig,
    domain::{OrderRow, from_ms},
    http::{self, ApiError},
    orders::{OrderView, Orders, PayOutcome},
    sale,
};

/// Redis, MySQL and the sale's knobs; nothing else.
pub type Config = CoreConfig;

pub async fn build(cfg: &Config) -> Result<Orders, Error> {
    Ok(Orders { sale: sale::connect(cfg, "orders").await? })
}

pub async fn handler(orders: &Orders, req: Request) -> Result<Response<Body>, Error> {
    // Boxed: the route reaches deep into the library; a boxed future keeps the runtime's
    // service type shallow (release builds otherwise overflow the compiler's layout limit).
    Ok(http::respond(orders.sale.metrics.invocation(Box::pin(route(orders, &req))).await))
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn stored_body(o: &OrderRow) -> serde_json::Value {
    serde_json::json!({
        "receipt": o.receipt,
        "status": o.status,
        "order_id": o.id,
        "product_id": o.product_id,
        "activity_id": o.activity_id,
        "price_cents": o.price_cents,
        "created_at": time(o.created_at),
        "pay_by": time(o.pay_by),
        "paid_at": o.paid_at.map(time),
        "cancelled_at": o.cancelled_at.map(time),
    })
}

#[tracing::instrument(skip_all, fields(receipt))]
async fn route(orders: &Orders, req: &Request) -> Result<Response<Body>, ApiError> {
    let user = http::user(req)?;
    let receipt = req
        .path_parameters_ref()
        .and_then(|p| p.first("receipt"))
        .ok_or_else(|| ApiError::InvalidRequest("missing path parameter receipt".into()))?
        .to_owned();
    tracing::Span::current().record("receipt", receipt.as_str());
    if req.method() == Method::POST {
        return match orders.pay(user.as_str(), &receipt).await? {
            PayOutcome::Paid(o) => Ok(http::json(StatusCode::OK, &stored_body(&o))),
            PayOutcome::NotFound => Err(ApiError::OrderNotFound),
            PayOutcome::NotReady => Err(ApiError::OrderNotReady),
            PayOutcome::Cancelled => Err(ApiError::OrderCancelled),
        };
    }
    match orders.lookup(user.as_str(), &receipt).await? {
        Some(OrderView::Stored(o)) => Ok(http::json(StatusCode::OK, &stored_body(&o))),
        Some(OrderView::Processing { receipt, created_at_ms }) => Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({
                "receipt": receipt,
                "status": "processing",
                "order_id": null,
                "created_at": from_ms(created_at_ms).map(time),
                "pay_by": null,
            }),
        )),
        Some(OrderView::Failed(d)) => Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({
                "receipt": d.receipt,
                "status": "failed",
                "order_id": null,
                "product_id": d.product_id,
                "activity_id": d.activity_id,
                "created_at": time(d.created_at),
                "pay_by": null,
            }),
        )),
        None => Err(ApiError::OrderNotFound),
    }
}
