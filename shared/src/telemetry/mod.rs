//! Tracing set-up: JSON lines in Lambda (CloudWatch), readable lines locally; error chains;
//! [`metrics`]: CloudWatch Embedded Metric Format lines (and their local Prometheus view).

pub mod metrics;

use tracing_subscriber::{EnvFilter, fmt};

/// Starts tracing once per process. `RUST_LOG` filters (default `info`); `LOG_FORMAT=text`
/// gives human-readable lines instead of JSON.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = crate::config::log_format_is_text();
    let builder = fmt().with_env_filter(filter).with_target(false);
    let result = if text {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).with_current_span(false).without_time().try_init()
    };
    // A second init (tests, the local runner hosting every function) keeps the first one.
    drop(result);
}

/// "outer: inner: innermost", for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
