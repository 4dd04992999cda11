//! What every AWS client of the functions shares, built once per cold start: the region, the
//! endpoint override (LocalStack locally, from `AWS_ENDPOINT_URL`; unset in AWS), fixed test
//! credentials, and short timeouts with one retry (a request must not hang on a dependency).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::config::Credentials;

use crate::config::AwsConfig;

/// The SDK configuration a client is built from ([`crate::sqs::client`], [`crate::s3::client`]).
pub async fn sdk_config(cfg: &AwsConfig) -> SdkConfig {
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
    loader.load().await
}
