//! Lambda bootstrap for `warmup`.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = warmup::Config::from_env()?;
    let state = warmup::build(&config).await?;
    let state = &state;
    run(service_fn(move |event| async move { warmup::handler(state, event).await })).await
}
