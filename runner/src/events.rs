//! SQS event source mappings and schedules, run locally the way Lambda runs them.

use std::{sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::{
    Client,
    error::DisplayErrorContext,
    types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName},
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
    /// How long a received batch stays invisible; reported failures reappear after it.
    pub visibility_timeout: Duration,
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

/// One receive, one invocation, one delete of what succeeded. Returns the records handled.
pub async fn poll_once(app: &App, sqs: &Client, source: &EventSource) -> Result<usize, String> {
    let received = sqs
        .receive_message()
        .queue_url(&source.queue_url)
        .max_number_of_messages(source.batch_size.clamp(1, 10))
        .wait_time_seconds(source.wait.as_secs().min(20) as i32)
        .visibility_timeout(source.visibility_timeout.as_secs() as i32)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| DisplayErrorContext(&e).to_string())?;
    let messages = received.messages();
    if messages.is_empty() {
        return Ok(0);
    }
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
    let invocation = LambdaEvent::new(event, Context::default());
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
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
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
            let invocation = LambdaEvent::new(event, Context::default());
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
