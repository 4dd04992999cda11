//! The Lambda boundary of the queue- and schedule-triggered functions: SQS records in, the
//! partial batch response out, and errors turned into what the runtime reports.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use crate::{domain::Record, telemetry::error_chain};

/// The records of an SQS event as the pipeline reads them. A record without a body is kept
/// (with an empty one) so it fails to parse and is reported, never silently dropped.
pub fn records(event: &SqsEvent) -> Vec<Record> {
    event
        .records
        .iter()
        .map(|m| Record { id: m.message_id.clone().unwrap_or_default(), body: m.body.clone().unwrap_or_default() })
        .collect()
}

/// The partial batch response: only the failed records go back to the queue.
pub fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    response
}

/// A failed run of a scheduled function: logged once with its cause chain, then handed to the
/// runtime, which reports it as the invocation's error (and Lambda counts it in `Errors`).
pub fn failure<E: std::error::Error + Send + Sync + 'static>(e: E) -> lambda_http::Error {
    tracing::error!(error = %error_chain(&e), "invocation failed");
    Box::new(e)
}
