//! Lambda bootstrap for `order-consumer`.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = order_consumer::Config::from_env()?;
    let state = order_consumer::build(&config).await?;
    let state = &state;
    run(service_fn(move |event| async move { order_consumer::handler(state, event).await })).await
}
