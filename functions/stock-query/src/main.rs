//! Lambda bootstrap for `stock-query`.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = stock_query::Config::from_env()?;
    let state = stock_query::build(&config).await?;
    let state = &state;
    run(service_fn(move |req| async move { stock_query::handler(state, req).await })).await
}
