//! Publishing a sale's static page: rendered from `web/product.html.tmpl` and put, with the
//! script and stylesheet it loads (all three built into the binary, so the function needs no
//! file at run time), where a static host serves them: S3 (`PUBLISH_BUCKET`, objects under
//! `p/`; CloudFront in AWS, the runner's `/p/` proxy locally), or a directory when no bucket is
//! set. Only stock and the purchase call the backend, at `PUBLIC_API_URL`.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{Admin, AdminError};
use crate::{
    config::{ApiBase, PublishConfig, PublishTarget},
    domain::{Activity, Product},
    s3,
};

/// The page template.
pub const PAGE_TEMPLATE: &str = include_str!("../../../web/product.html.tmpl");

/// What the page loads, by the relative names the template uses (beside the page, so a
/// published page and its assets are one prefix of the bucket, `p/`).
pub const ASSETS: &[(&str, &str)] = &[
    ("sale.js", include_str!("../../../web/static/sale.js")),
    ("sale.css", include_str!("../../../web/static/sale.css")),
];

/// How long browsers and CloudFront may keep a published file: a republished page (or a new
/// build's assets) shows within a minute; live state (stock, orders) is fetched anyway.
pub const CACHE_CONTROL: &str = "public, max-age=60";

/// Where a published page can be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub url: String,
    pub activity_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("writing {} failed", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    S3(#[from] s3::S3Error),
}

/// A published file as a static host serves it.
pub type Page = s3::Object;

/// Where pages go (the S3 client built once per cold start) and which API they call.
#[derive(Debug, Clone)]
pub struct Pages {
    store: Store,
    api: ApiBase,
}

#[derive(Debug, Clone)]
enum Store {
    Bucket { client: aws_sdk_s3::Client, bucket: String },
    Dir(PathBuf),
}

/// The bucket's prefix of every published file (CloudFront serves the bucket at `/`, so a
/// page's URL path is its key).
const KEY_PREFIX: &str = "p/";

impl Pages {
    pub async fn connect(cfg: &PublishConfig) -> Self {
        let store = match &cfg.target {
            PublishTarget::Bucket(bucket) => {
                Store::Bucket { client: s3::client(&cfg.s3).await, bucket: bucket.clone() }
            }
            PublishTarget::Dir(dir) => Store::Dir(dir.clone()),
        };
        Self { store, api: cfg.api.clone() }
    }

    /// The API base a page published now names: `PUBLIC_API_URL`, or for `request` the origin
    /// the publish request came to (`request_origin`), or empty (same origin).
    pub fn api_url(&self, request_origin: Option<&str>) -> String {
        match &self.api {
            ApiBase::SameOrigin => String::new(),
            ApiBase::Url(url) => url.clone(),
            ApiBase::Request => request_origin.unwrap_or_default().trim_end_matches('/').to_owned(),
        }
    }

    /// Puts one file: `p/<name>` in the bucket, or `<dir>/<name>`.
    async fn put(&self, name: &str, body: Vec<u8>) -> Result<(), PublishError> {
        match &self.store {
            Store::Bucket { client, bucket } => {
                let key = format!("{KEY_PREFIX}{name}");
                Ok(s3::put(client, bucket, &key, body, content_type(name), CACHE_CONTROL).await?)
            }
            Store::Dir(dir) => {
                let path = dir.join(name);
                let written = async {
                    tokio::fs::create_dir_all(dir).await?;
                    tokio::fs::write(&path, body).await
                };
                written.await.map_err(|source| PublishError::Write { path, source })
            }
        }
    }

    /// A published file by its plain name (what `/p/<name>` serves; `None` when there is none,
    /// or when the name is not a plain file name, so no path can leave the prefix).
    pub async fn get(&self, name: &str) -> Result<Option<Page>, PublishError> {
        if !plain_name(name) {
            return Ok(None);
        }
        match &self.store {
            Store::Bucket { client, bucket } => Ok(s3::get(client, bucket, &format!("{KEY_PREFIX}{name}")).await?),
            Store::Dir(dir) => Ok(tokio::fs::read(dir.join(name)).await.ok().map(|body| Page {
                body,
                content_type: Some(content_type(name).to_owned()),
                cache_control: Some(CACHE_CONTROL.to_owned()),
            })),
        }
    }
}

/// A file name without a directory, not hidden.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The Content-Type a static file is served with, by its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

impl Admin {
    /// Renders the activity's page and puts it as `<product_id>.html`, with its assets (put
    /// first, so a page is never served without them). `request_origin` is the origin the
    /// publish request came to (used when `PUBLIC_API_URL=request`).
    #[tracing::instrument(skip(self), err)]
    pub async fn publish(
        &self,
        admin: &str,
        activity_id: u64,
        request_origin: Option<&str>,
    ) -> Result<Published, AdminError> {
        let activity = self.sale.db.activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let product = self.sale.db.product(activity.product_id).await?.ok_or(AdminError::NotFound)?;
        let api_url = self.pages.api_url(request_origin);
        let html = render_page(PAGE_TEMPLATE, &product, &activity, &api_url);
        let assets = ASSETS.iter().map(|(name, text)| self.pages.put(name, text.as_bytes().to_vec()));
        futures::future::try_join_all(assets).await.map_err(AdminError::Publish)?;
        let name = format!("{}.html", product.id);
        self.pages.put(&name, html.into_bytes()).await.map_err(AdminError::Publish)?;
        tracing::info!(admin, action = "publish", activity_id, page = %name, api_url, "admin action");
        Ok(Published { url: format!("/p/{name}"), activity_id })
    }
}

/// HTML-escapes text for the page template.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Renders the static product page from its template: the page is published once per
/// activity and served by any static host; only stock and the purchase call the backend, at
/// `api_url` (empty: the page's own origin).
/// One pass over the template, so a value that contains `{{...}}` is never expanded again.
pub fn render_page(template: &str, p: &Product, a: &Activity, api_url: &str) -> String {
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "product_id" => p.id.to_string(),
            "activity_id" => a.id.to_string(),
            "name" => p.name.clone(),
            "description" => p.description.clone(),
            "price" => format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100),
            "price_cents" => p.price_cents.to_string(),
            "image_url" => p.image_url.clone(),
            "starts_at" => rfc3339(a.starts_at),
            "ends_at" => rfc3339(a.ends_at),
            "api_url" => api_url.to_owned(),
            _ => return None,
        })
    };
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}").and_then(|close| value(&after[..close]).map(|v| (close, v))) {
            Some((close, v)) => {
                out.push_str(&escape_html(&v));
                rest = &after[close + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_an_admin_typed() -> Result<(), Box<dyn std::error::Error>> {
        let p = Product {
            id: 7,
            name: "<b>Phone</b> {{price}}".into(),
            description: "\"best\" & cheap".into(),
            price_cents: 1999,
            image_url: String::new(),
        };
        let a = Activity {
            id: 3,
            product_id: 7,
            stock: 10,
            starts_at: DateTime::from_timestamp(1_800_000_000, 0).ok_or("time")?,
            ends_at: DateTime::from_timestamp(1_800_003_600, 0).ok_or("time")?,
            rate_limit_per_sec: 1,
            burst: 1,
            per_user_per_min: 1,
            buckets: 1,
        };
        let html = render_page(
            "<h1>{{name}}</h1><p>{{description}}</p><i>{{price}}</i><main data-id=\"{{product_id}}\" data-s=\"{{starts_at}}\" data-api=\"{{api_url}}\">",
            &p,
            &a,
            "https://api.example.com",
        );
        assert_eq!(
            html,
            "<h1>&lt;b&gt;Phone&lt;/b&gt; {{price}}</h1><p>&quot;best&quot; &amp; cheap</p><i>19.99</i><main data-id=\"7\" data-s=\"2027-01-15T08:00:00Z\" data-api=\"https://api.example.com\">"
        );
        Ok(())
    }
}
