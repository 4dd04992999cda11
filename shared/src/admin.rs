//! Running a sale: validated admin writes, paginated lists, warm-up of upcoming activities, the
//! reconcile report and the static page renderer. Every admin action is logged with who did it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::{
    db::{NewActivity, NewProduct, OrderRow, Page},
    domain::{Activity, OrderStatus, Product, UNLIMITED, valid_id},
    sale::{Sale, SaleError},
    scripts::LoadReply,
};

/// Largest page an admin list returns; a larger `per` is refused (400), not clamped, so a
/// client never silently gets fewer rows than it asked for.
pub const MAX_PER: u32 = 100;
pub const DEFAULT_PER: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Sale(#[from] SaleError),
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sale(SaleError::Mysql(e))
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Sale(SaleError::Redis(e))
    }
}

fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

/// `page` (from 1) and `per` (1..=MAX_PER) from their raw query values.
pub fn paging(page: Option<&str>, per: Option<&str>) -> Result<(u32, u32), AdminError> {
    let page = match page {
        None => 1,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| invalid("page must be an integer from 1"))?,
    };
    let per = match per {
        None => DEFAULT_PER,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=MAX_PER).contains(p))
            .ok_or_else(|| invalid(format!("per must be an integer from 1 to {MAX_PER}")))?,
    };
    Ok((page, per))
}

pub fn validate_product(p: &NewProduct) -> Result<(), AdminError> {
    let name = p.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name must be 1 to 200 characters"));
    }
    if p.description.chars().count() > 10_000 {
        return Err(invalid("description must be at most 10000 characters"));
    }
    if p.price_cents < 0 || p.price_cents > 10_000_000_000 {
        return Err(invalid("price_cents must be between 0 and 10000000000"));
    }
    let url = &p.image_url;
    if url.len() > 1000
        || !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
    {
        return Err(invalid("image_url must be empty, an http(s) URL or a path, at most 1000 characters"));
    }
    Ok(())
}

pub fn validate_activity(a: &NewActivity) -> Result<(), AdminError> {
    if !valid_id(a.product_id) {
        return Err(invalid("product_id must be a positive id"));
    }
    if a.stock < UNLIMITED {
        return Err(invalid("stock must be -1 (unlimited) or more"));
    }
    if a.ends_at <= a.starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    if a.rate_limit_per_sec == 0 || a.burst == 0 || a.per_user_per_min == 0 {
        return Err(invalid("rate_limit_per_sec, burst and per_user_per_min must be greater than 0"));
    }
    Ok(())
}

/// The reconcile report of DESIGN.md: invariant 1 for one activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconcile {
    pub activity_id: u64,
    pub initial: i64,
    /// `None` when Redis does not hold this activity's sale (not warmed, or lost).
    pub redis_stock: Option<i64>,
    pub orders_pending_payment: i64,
    pub orders_paid: i64,
    pub orders_cancelled: i64,
    /// Purchases in the outbox with no order row yet.
    pub outbox_pending: i64,
    pub dead_lettered: i64,
    pub balanced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    pub activities: usize,
    pub written: usize,
    pub refreshed: usize,
    pub bloom_refilled: bool,
}

impl Sale {
    #[tracing::instrument(skip(self, p), err)]
    pub async fn admin_create_product(&self, admin: &str, p: &NewProduct) -> Result<Product, AdminError> {
        validate_product(p)?;
        let id = self.list_product(p).await?;
        tracing::info!(admin, action = "create_product", product_id = id, name = %p.name, "admin action");
        self.db.product(id).await?.ok_or(AdminError::NotFound)
    }

    #[tracing::instrument(skip(self, a), err)]
    pub async fn admin_create_activity(&self, admin: &str, a: &NewActivity) -> Result<Activity, AdminError> {
        validate_activity(a)?;
        if self.db.product(a.product_id).await?.is_none() {
            return Err(invalid(format!("product {} does not exist", a.product_id)));
        }
        let id = self.db.insert_activity(a).await?;
        tracing::info!(
            admin,
            action = "create_activity",
            activity_id = id,
            product_id = a.product_id,
            stock = a.stock,
            "admin action"
        );
        self.db.activity(id).await?.ok_or(AdminError::NotFound)
    }

    pub async fn admin_list_orders(
        &self,
        activity_id: Option<u64>,
        status: Option<OrderStatus>,
        page: u32,
        per: u32,
    ) -> Result<Page<OrderRow>, AdminError> {
        Ok(self.db.list_orders(activity_id, status, page, per).await?)
    }

    /// Warms one activity on an admin's request.
    #[tracing::instrument(skip(self), err)]
    pub async fn admin_warm(&self, admin: &str, activity_id: u64) -> Result<(Activity, LoadReply), AdminError> {
        let activity = self.db.activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let reply = self.warm(&activity).await?;
        tracing::info!(admin, action = "warmup", activity_id, ?reply, "admin action");
        Ok((activity, reply))
    }

    /// The scheduled warm-up: every activity that starts within the horizon and has not ended
    /// (for each product, the one `current_activity` names), and the bloom filter refilled if
    /// Redis lost it.
    #[tracing::instrument(skip(self), err)]
    pub async fn warm_upcoming(&self, horizon: std::time::Duration) -> Result<WarmReport, SaleError> {
        let now = Utc::now();
        let mut report = WarmReport { activities: 0, written: 0, refreshed: 0, bloom_refilled: false };
        if !self.redis.bloom_exists().await? {
            let ids = self.db.product_ids().await?;
            self.redis.bloom_add_many(&ids).await?;
            report.bloom_refilled = true;
        }
        let mut products: Vec<u64> =
            self.db.activities_to_warm(now, horizon).await?.iter().map(|a| a.product_id).collect();
        products.sort_unstable();
        products.dedup();
        for product_id in products {
            let Some(activity) = self.db.current_activity(product_id, now).await? else { continue };
            report.activities += 1;
            match self.warm(&activity).await? {
                LoadReply::Refreshed => report.refreshed += 1,
                _ => report.written += 1,
            }
        }
        tracing::info!(?report, "warm-up run");
        Ok(report)
    }

    /// Invariant 1 for one activity. Redis (stock and outbox, atomically) is read before MySQL,
    /// as the consumer writes a row before it removes the outbox entry.
    #[tracing::instrument(skip(self), err)]
    pub async fn reconcile(&self, activity_id: u64) -> Result<Reconcile, AdminError> {
        let a = self.db.activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let (live, outbox) = self.redis.sale_and_outbox(a.product_id).await?;
        let outbox: Vec<String> = outbox.into_iter().filter(|m| m.activity_id == a.id).map(|m| m.receipt).collect();
        let counts = self.db.status_counts(a.id).await?;
        let stored = self.db.existing_receipts(&outbox).await?;
        let outbox_pending = outbox.iter().filter(|r| !stored.contains(r)).count() as i64;
        let redis_stock = live.filter(|(id, _)| *id == a.id).map(|(_, stock)| stock);
        let balanced = match redis_stock {
            None => false,
            Some(_) if a.stock == UNLIMITED => redis_stock == Some(UNLIMITED),
            Some(stock) => stock + counts.pending_payment + counts.paid + outbox_pending == a.stock,
        };
        Ok(Reconcile {
            activity_id: a.id,
            initial: a.stock,
            redis_stock,
            orders_pending_payment: counts.pending_payment,
            orders_paid: counts.paid,
            orders_cancelled: counts.cancelled,
            outbox_pending,
            dead_lettered: counts.failed,
            balanced,
        })
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
    fn paging_defaults_and_refuses_out_of_range() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(paging(None, None)?, (1, DEFAULT_PER));
        assert_eq!(paging(Some("3"), Some("100"))?, (3, 100));
        for (page, per) in
            [(Some("0"), None), (Some("x"), None), (None, Some("101")), (None, Some("0")), (None, Some("-1"))]
        {
            assert!(paging(page, per).is_err(), "{page:?} {per:?}");
        }
        Ok(())
    }

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
