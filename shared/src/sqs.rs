//! SQS: the client built once per cold start, and the sends the functions make.

use std::time::Duration;

use aws_sdk_sqs::{Client, error::DisplayErrorContext, types::SendMessageBatchRequestEntry};

use crate::config::SqsConfig;

#[tracing::instrument(skip(cfg), fields(endpoint = ?cfg.endpoint_url))]
pub async fn client(cfg: &SqsConfig) -> Client {
    let sdk = crate::aws::sdk_config(cfg).await;
    Client::new(&sdk)
}

#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} to {queue} failed: {cause}")]
pub struct SendError {
    operation: &'static str,
    queue: String,
    cause: String,
}

/// SQS's limit on entries per SendMessageBatch.
pub const BATCH_MAX: usize = 10;

/// One queue, as a sender sees it.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    url: String,
    group: Option<tokio::sync::mpsc::UnboundedSender<Pending>>,
}

#[derive(Debug)]
struct Pending {
    body: String,
    done: tokio::sync::oneshot::Sender<bool>,
}

/// Batches in flight at once when sends are grouped.
const GROUP_IN_FLIGHT: usize = 16;

impl Queue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into(), group: None }
    }

    /// Group commit for [`Queue::send`]: sends that arrive while batches are in flight leave
    /// together, up to ten per SendMessageBatch, instead of one request each. Every caller
    /// still waits for its own message to be accepted, so nothing is sent after a response
    /// (safe in Lambda, where one instance has one request at a time and a batch is just that
    /// one message); where many requests share an instance (the local runner), SQS sees far
    /// fewer calls. Must be called inside a Tokio runtime.
    pub fn grouped(mut self) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        let sender = self.clone();
        tokio::spawn(async move {
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(GROUP_IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let sender = sender.clone();
                tokio::spawn(async move {
                    let entries: Vec<(String, String)> =
                        batch.iter().enumerate().map(|(i, p)| (i.to_string(), p.body.clone())).collect();
                    let failed = sender.send_batch(&entries, Duration::ZERO).await;
                    for (i, p) in batch.into_iter().enumerate() {
                        let _ = p.done.send(!failed.contains(&i.to_string()));
                    }
                    drop(slot);
                });
            }
        });
        self.group = Some(tx);
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    #[tracing::instrument(skip(self, body), fields(queue = %self.url), err)]
    pub async fn send(&self, body: &str) -> Result<(), SendError> {
        if let Some(group) = &self.group {
            let (done, accepted) = tokio::sync::oneshot::channel();
            let queued = group.send(Pending { body: body.to_owned(), done }).is_ok();
            return match queued {
                true if accepted.await.unwrap_or(false) => Ok(()),
                _ => Err(SendError {
                    operation: "SendMessageBatch",
                    queue: self.url.clone(),
                    cause: "the message was not accepted (see the batch's warning)".into(),
                }),
            };
        }
        self.client.send_message().queue_url(&self.url).message_body(body).send().await.map_err(|e| SendError {
            operation: "SendMessage",
            queue: self.url.clone(),
            cause: DisplayErrorContext(&e).to_string(),
        })?;
        Ok(())
    }

    /// Sends `(key, body)` pairs with one delay, ten per SendMessageBatch, the batches
    /// concurrently. Returns the keys that were not sent.
    #[tracing::instrument(skip(self, messages), fields(queue = %self.url, n = messages.len()))]
    pub async fn send_all(&self, messages: &[(String, String)], delay: Duration) -> Vec<String> {
        let batches = messages.chunks(BATCH_MAX).map(|chunk| self.send_batch(chunk, delay));
        futures::future::join_all(batches).await.into_iter().flatten().collect()
    }

    #[tracing::instrument(skip(self, chunk), fields(queue = %self.url, n = chunk.len()))]
    async fn send_batch(&self, chunk: &[(String, String)], delay: Duration) -> Vec<String> {
        let all_keys = || chunk.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let mut request = self.client.send_message_batch().queue_url(&self.url);
        for (i, (_, body)) in chunk.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .delay_seconds(delay.as_secs().min(900) as i32)
                .build();
            match entry {
                Ok(entry) => request = request.entries(entry),
                Err(e) => {
                    tracing::error!(error = %e, "could not build a batch entry");
                    return all_keys();
                }
            }
        }
        match request.send().await {
            Ok(out) => out
                .failed()
                .iter()
                .filter_map(|f| f.id().parse::<usize>().ok())
                .filter_map(|i| chunk.get(i).map(|(k, _)| k.clone()))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), queue = %self.url, "SendMessageBatch failed");
                all_keys()
            }
        }
    }
}
