//! Lambda bootstrap for `outbox-retry`.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = outbox_retry::Config::from_env()?;
    let state = outbox_retry::build(&config).await?;
    let state = &state;
    run(service_fn(move |event| async move { outbox_retry::handler(state, event).await })).await
}
