//! SQS: the client built once per cold start, and the sends the functions make.

use aws_sdk_sqs::{Client, config::Credentials, error::DisplayErrorContext};

use crate::config::SqsConfig;

pub async fn client(cfg: &SqsConfig) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(cfg.operation_timeout)
        .connect_timeout(std::time::Duration::from_millis(500))
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
#[error("SQS send to {queue} failed: {cause}")]
pub struct SendError {
    queue: String,
    cause: String,
}

/// The `orders` queue as `buy` and `outbox-retry` see it.
#[derive(Debug, Clone)]
pub struct OrderQueue {
    client: Client,
    url: String,
}

impl OrderQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    #[tracing::instrument(skip(self, body), err)]
    pub async fn send(&self, receipt: &str, body: &str) -> Result<(), SendError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| SendError { queue: self.url.clone(), cause: DisplayErrorContext(&e).to_string() })?;
        Ok(())
    }
}
