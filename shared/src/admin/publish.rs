//! Publishing a sale's static page: rendered from `web/product.html.tmpl` (built into the
//! binary) into the publish directory, served by any static host (locally the runner's `/p/`);
//! only stock and the purchase call the backend.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{Admin, AdminError};
use crate::domain::{Activity, Product};

/// The page template, built into the binary so the function needs no file at run time.
pub const PAGE_TEMPLATE: &str = include_str!("../../../web/product.html.tmpl");

/// Where a published page can be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub url: String,
    pub activity_id: u64,
}

impl Admin {
    /// Renders the activity's page and writes it as `<product_id>.html`.
    #[tracing::instrument(skip(self), err)]
    pub async fn publish(&self, admin: &str, activity_id: u64) -> Result<Published, AdminError> {
        let activity = self.sale.db.activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let product = self.sale.db.product(activity.product_id).await?.ok_or(AdminError::NotFound)?;
        let html = render_page(PAGE_TEMPLATE, &product, &activity);
        let path = self.publish_dir.join(format!("{}.html", product.id));
        let written = async {
            tokio::fs::create_dir_all(&self.publish_dir).await?;
            tokio::fs::write(&path, html).await
        };
        written.await.map_err(AdminError::Publish)?;
        tracing::info!(admin, action = "publish", activity_id, path = %path.display(), "admin action");
        Ok(Published { url: format!("/p/{}.html", product.id), activity_id })
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
/// activity and served by any static host; only stock and the purchase call the backend.
/// One pass over the template, so a value that contains `{{...}}` is never expanded again.
pub fn render_page(template: &str, p: &Product, a: &Activity) -> String {
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
        };
        let html = render_page(
            "<h1>{{name}}</h1><p>{{description}}</p><i>{{price}}</i><main data-id=\"{{product_id}}\" data-s=\"{{starts_at}}\">",
            &p,
            &a,
        );
        assert_eq!(
            html,
            "<h1>&lt;b&gt;Phone&lt;/b&gt; {{price}}</h1><p>&quot;best&quot; &amp; cheap</p><i>19.99</i><main data-id=\"7\" data-s=\"2027-01-15T08:00:00Z\">"
        );
        Ok(())
    }
}
