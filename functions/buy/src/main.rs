//! Lambda bootstrap for `buy`: tracing, configuration, state once per cold start, then serve.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = buy::Config::from_env()?;
    let state = buy::build(&config).await?;
    let state = &state;
    run(service_fn(move |req| async move { buy::handler(state, req).await })).await
}
