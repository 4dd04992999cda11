//! `GET /products/{product_id}/stock`: answered from Redis; MySQL only to rebuild a missing
//! sale (one caller at a time), never on the hot path.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use chrono::SecondsFormat;
use lambda_http::{Body, Error, Request, Response, http::StatusCode};
use shared::{
    config::CoreConfig,
    domain::from_ms,
    http::{self, ApiError},
    sale::{self, StockQuery},
};

/// Redis, MySQL and the sale's knobs; nothing else.
pub type Config = CoreConfig;

pub async fn build(cfg: &Config) -> Result<StockQuery, Error> {
    Ok(StockQuery::new(sale::connect(cfg, "stock-query").await?))
}

pub async fn handler(sale: &StockQuery, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::respond(sale.sale.metrics.invocation(stock(sale, &req)).await))
}

fn rfc3339(ms: i64) -> Option<String> {
    from_ms(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[tracing::instrument(skip_all, fields(product_id))]
async fn stock(sale: &StockQuery, req: &Request) -> Result<Response<Body>, ApiError> {
    let product_id = http::path_id(req, "product_id")?;
    tracing::Span::current().record("product_id", product_id);
    let view = sale.view(product_id).await?;
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({
            "product_id": view.product_id,
            "activity_id": view.activity_id,
            "stock": view.stock,
            "unlimited": view.unlimited,
            "starts_at": rfc3339(view.starts_at_ms),
            "ends_at": rfc3339(view.ends_at_ms),
            "state": view.state,
        }),
    ))
}
