//! S3: the client built once per cold start, and the two object calls the sale pages need
//! (the admin's publish puts them; locally the runner gets them, as CloudFront does in AWS).

use aws_sdk_s3::{Client, error::DisplayErrorContext, primitives::ByteStream};

use crate::config::S3Config;

/// With an endpoint override (LocalStack) the bucket goes in the path, `{endpoint}/{bucket}/{key}`:
/// virtual-hosted names (`{bucket}.127.0.0.1`) do not resolve locally. AWS keeps virtual-hosted.
#[tracing::instrument(skip(cfg), fields(endpoint = ?cfg.endpoint_url))]
pub async fn client(cfg: &S3Config) -> Client {
    let sdk = crate::aws::sdk_config(cfg).await;
    let config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(cfg.endpoint_url.is_some()).build();
    Client::from_conf(config)
}

#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} of s3://{bucket}/{key} failed: {cause}")]
pub struct S3Error {
    operation: &'static str,
    bucket: String,
    key: String,
    /// The SDK error with its context (service code, request id), as one line.
    cause: String,
}

/// An object as stored: its bytes and the headers a static host serves it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
}

/// Puts one object (replacing any at `key`).
#[tracing::instrument(skip(client, body), fields(bytes = body.len()), err)]
pub async fn put(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    cache_control: &str,
) -> Result<(), S3Error> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .content_type(content_type)
        .cache_control(cache_control)
        .send()
        .await
        .map_err(|e| S3Error {
            operation: "PutObject",
            bucket: bucket.into(),
            key: key.into(),
            cause: DisplayErrorContext(e).to_string(),
        })?;
    Ok(())
}

/// Gets one object; `None` when the key does not exist.
#[tracing::instrument(skip(client), err)]
pub async fn get(client: &Client, bucket: &str, key: &str) -> Result<Option<Object>, S3Error> {
    let failed = |cause: String| S3Error { operation: "GetObject", bucket: bucket.into(), key: key.into(), cause };
    let output = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(output) => output,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(failed(DisplayErrorContext(e).to_string())),
    };
    let content_type = output.content_type().map(str::to_owned);
    let cache_control = output.cache_control().map(str::to_owned);
    let body = output.body.collect().await.map_err(|e| failed(e.to_string()))?.into_bytes().to_vec();
    Ok(Some(Object { body, content_type, cache_control }))
}
