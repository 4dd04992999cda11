//! SQS event source mappings and schedules, run locally the way Lambda runs them.

use std::{sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::{
    Client,
    error::DisplayErrorContext,
    types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName},
};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    OrderConsumer,
    PaymentTimeout,
}

/// One event source mapping (template.yaml: `Events: Type: SQS`).
#[derive(Debug, Clone)]
pub struct EventSource {
    pub consumer: Consumer,
    pub queue_url: String,
    /// Records per invocation (SQS hands out at most 10 per receive).
    pub batch_size: i32,
    /// Long-poll wait.
    pub wait: Duration,
    /// Concurrent pollers (the mapping's maximum concurrency).
    pub concurrency: usize,
    /// `MaximumBatchingWindowInSeconds`: how long a poller gathers records before it invokes
    /// with fewer than `batch_size`. (The queue's own VisibilityTimeout applies, as with
    /// Lambda's mapping, which never sets one per receive.)
    pub batching_window: Duration,
    /// The function's Timeout: the invocation's deadline in its `Context`.
    pub function_timeout: Duration,
}

/// Starts the mapping's pollers. Abort the handles to stop them (mid-batch, like a crash).
pub fn start(app: Arc<App>, sqs: Client, source: EventSource) -> Vec<JoinHandle<()>> {
    (0..source.concurrency.max(1))
        .map(|_| {
            let (app, sqs, source) = (app.clone(), sqs.clone(), source.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = poll_once(&app, &sqs, &source).await {
                        tracing::warn!(error = %e, queue = %source.queue_url, "poll failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            })
        })
        .collect()
}

async fn receive(sqs: &Client, source: &EventSource, max: i32, wait: Duration) -> Result<Vec<Message>, String> {
    let received = sqs
        .receive_message()
        .queue_url(&source.queue_url)
        .max_number_of_messages(max.clamp(1, 10))
        .wait_time_seconds(wait.as_secs().min(20) as i32)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| DisplayErrorContext(&e).to_string())?;
    Ok(received.messages.unwrap_or_default())
}

/// A Lambda context with the invocation's deadline (now + the function's Timeout).
pub fn invocation_context(timeout: Duration, request_id: String) -> Context {
    let mut context = Context::default();
    context.request_id = request_id;
    context.deadline = (chrono::Utc::now() + timeout).timestamp_millis().max(0) as u64;
    context
}

/// What Lambda deletes after a partial batch response: every record but the reported ones,
/// or none at all when the response names a record that was not in the batch (Lambda then
/// treats the whole batch as failed).
pub fn to_delete<'a>(batch: &[&'a str], failed: &[String]) -> Vec<&'a str> {
    if failed.iter().any(|f| !batch.contains(&f.as_str())) {
        tracing::error!(?failed, "the batch response names a record not in the batch; the whole batch fails");
        return Vec::new();
    }
    batch.iter().copied().filter(|id| !failed.iter().any(|f| f == id)).collect()
}

/// One batch (gathered for up to the batching window), one invocation, one delete of what
/// succeeded. Returns the records handled.
pub async fn poll_once(app: &App, sqs: &Client, source: &EventSource) -> Result<usize, String> {
    let batch_size = source.batch_size.clamp(1, 10);
    let mut messages = receive(sqs, source, batch_size, source.wait).await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let window_ends = tokio::time::Instant::now() + source.batching_window;
    while (messages.len() as i32) < batch_size {
        let left = window_ends.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        // SQS long-polls in whole seconds: a short poll, then a pause, within the window.
        let more = receive(sqs, source, batch_size - messages.len() as i32, Duration::ZERO).await?;
        if more.is_empty() {
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
        messages.extend(more);
    }
    let messages = messages.as_slice();
    // The event Lambda delivers: same field names, built through the same serde types.
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), json!(v))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{}", source.queue_url.rsplit('/').next().unwrap_or("")),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).map_err(|e| e.to_string())?;
    let request_id = format!("local-{}", messages[0].message_id().unwrap_or(""));
    let invocation = LambdaEvent::new(event, invocation_context(source.function_timeout, request_id));
    let result: Result<SqsBatchResponse, _> = match source.consumer {
        Consumer::OrderConsumer => order_consumer::handler(&app.order_consumer, invocation).await,
        Consumer::PaymentTimeout => payment_timeout::handler(&app.payment_timeout, invocation).await,
    };
    let failed: Vec<String> = match result {
        Ok(response) => response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
        // A function error fails the whole batch: nothing is deleted.
        Err(e) => {
            tracing::error!(error = %e, "function error; the batch will be redelivered");
            return Ok(messages.len());
        }
    };
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id().unwrap_or("")).collect();
    let delete = to_delete(&ids, &failed);
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| delete.contains(&m.message_id().unwrap_or("")))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(m.receipt_handle()?).build().ok()
        })
        .collect();
    if !done.is_empty() {
        sqs.delete_message_batch()
            .queue_url(&source.queue_url)
            .set_entries(Some(done))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
    }
    Ok(messages.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduled {
    OutboxRetry,
    Warmup,
}

/// A schedule (template.yaml: `Events: Type: Schedule`): invokes the function every `every`
/// with a scheduled event.
pub fn schedule(app: Arc<App>, target: Scheduled, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let event = json!({
                "version": "0",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "time": chrono::Utc::now().to_rfc3339(),
                "detail": {},
            });
            let timeout = match target {
                Scheduled::OutboxRetry => crate::wiring::OUTBOX_RETRY_TIMEOUT,
                Scheduled::Warmup => crate::wiring::WARMUP_TIMEOUT,
            };
            let invocation = LambdaEvent::new(event, invocation_context(timeout, format!("local-{target:?}")));
            let result = match target {
                Scheduled::OutboxRetry => outbox_retry::handler(&app.outbox_retry, invocation).await.map(|_| ()),
                Scheduled::Warmup => warmup::handler(&app.warmup, invocation).await.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, ?target, "scheduled run failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_batch_response_deletes_all_but_the_reported_records() {
        let batch = ["a", "b", "c"];
        assert_eq!(to_delete(&batch, &["b".to_owned()]), vec!["a", "c"]);
        assert_eq!(to_delete(&batch, &[]), vec!["a", "b", "c"]);
    }

    #[test]
    fn a_batch_response_naming_an_unknown_record_fails_the_whole_batch() {
        let batch = ["a", "b", "c"];
        assert!(to_delete(&batch, &["b".to_owned(), "zzz".to_owned()]).is_empty());
        assert!(to_delete(&batch, &[String::new()]).is_empty());
    }

    #[test]
    fn the_invocation_context_carries_the_functions_deadline() {
        let before = chrono::Utc::now().timestamp_millis() as u64;
        let context = invocation_context(Duration::from_secs(30), "r-1".into());
        let after = chrono::Utc::now().timestamp_millis() as u64;
        assert!(context.deadline >= before + 30_000 && context.deadline <= after + 30_000, "{}", context.deadline);
        assert_eq!(context.request_id, "r-1");
    }
}
