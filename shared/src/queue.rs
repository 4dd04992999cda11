//! SQS: the client built once per cold start, and the sends the functions make.

use std::time::Duration;

use aws_sdk_sqs::{Client, config::Credentials, error::DisplayErrorContext, types::SendMessageBatchRequestEntry};

use crate::config::SqsConfig;

pub async fn client(cfg: &SqsConfig) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(cfg.operation_timeout)
        .connect_timeout(Duration::from_millis(500))
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(cfg.region.clone()))
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2));
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((key, secret)) = &cfg.static_credentials {
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "static"));
    }
    Client::new(&loader.load().await)
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
}

impl Queue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    #[tracing::instrument(skip(self, body), fields(queue = %self.url), err)]
    pub async fn send(&self, body: &str) -> Result<(), SendError> {
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
