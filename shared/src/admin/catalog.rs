//! The catalog an admin manages: products, activities, order lists, and warming one activity.

use serde::Serialize;

use super::{
    Admin, AdminError,
    validation::{invalid, validate_activity, validate_product},
};
use crate::{
    domain::{Activity, NewActivity, NewProduct, OrderRow, OrderStatus, Page, Product, SaleState},
    redis::scripts::load_sale::LoadReply,
};

/// A change of an activity's limits (`PATCH /admin/activities/{id}`); `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct LimitsChange {
    pub rate_limit_per_sec: Option<u32>,
    pub burst: Option<u32>,
    pub per_user_per_min: Option<u32>,
    /// Stock buckets: only before the activity starts.
    pub buckets: Option<u16>,
}

/// What warming one activity did, and the sale as it reads now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warmed {
    pub activity_id: u64,
    pub product_id: u64,
    /// "written", "refreshed", or "deferred" (another activity of the product is open or
    /// starts first: this one is loaded by the scheduled warm-up once that one has ended).
    pub result: &'static str,
    /// The product's sale as it reads now: its activity (another one when deferred), stock
    /// and state.
    pub live_activity_id: u64,
    pub stock: i64,
    pub state: SaleState,
}

impl Admin {
    /// Lists a product. With an `Idempotency-Key`, a retry returns the product the first
    /// request created (and completes its listing); the same key with another body is a 400.
    #[tracing::instrument(skip(self, p), err)]
    pub async fn create_product(&self, admin: &str, p: &NewProduct, key: Option<&str>) -> Result<Product, AdminError> {
        validate_product(p)?;
        let id = self.sale.list_product(p, key).await?;
        tracing::info!(admin, action = "create_product", product_id = id, name = %p.name, "admin action");
        let made = self.db().product(id).await?.ok_or(AdminError::NotFound)?;
        let same = (&made.name, &made.description, made.price_cents, &made.image_url)
            == (&p.name, &p.description, p.price_cents, &p.image_url);
        if key.is_some() && !same {
            return Err(invalid("this Idempotency-Key was used for another product"));
        }
        Ok(made)
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn list_products(&self, page: u32, per: u32) -> Result<Page<Product>, AdminError> {
        Ok(self.db().list_products(page, per).await?)
    }

    /// Creates an activity. With an `Idempotency-Key`, a retry returns the activity the first
    /// request created; the same key with another body is a 400.
    #[tracing::instrument(skip(self, a), err)]
    pub async fn create_activity(
        &self,
        admin: &str,
        a: &NewActivity,
        key: Option<&str>,
    ) -> Result<Activity, AdminError> {
        validate_activity(a)?;
        if self.db().product(a.product_id).await?.is_none() {
            return Err(invalid(format!("product {} does not exist", a.product_id)));
        }
        let id = self.db().insert_activity_once(a, key).await?;
        tracing::info!(
            admin,
            action = "create_activity",
            activity_id = id,
            product_id = a.product_id,
            stock = a.stock,
            "admin action"
        );
        let made = self.db().activity(id).await?.ok_or(AdminError::NotFound)?;
        let same = (
            made.product_id,
            made.stock,
            made.starts_at.timestamp_millis(),
            made.ends_at.timestamp_millis(),
            made.rate_limit_per_sec,
            made.burst,
            made.per_user_per_min,
            made.buckets,
        ) == (
            a.product_id,
            a.stock,
            a.starts_at.timestamp_millis(),
            a.ends_at.timestamp_millis(),
            a.rate_limit_per_sec,
            a.burst,
            a.per_user_per_min,
            a.buckets,
        );
        if key.is_some() && !same {
            return Err(invalid("this Idempotency-Key was used for another activity"));
        }
        Ok(made)
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn list_activities(&self, page: u32, per: u32) -> Result<Page<Activity>, AdminError> {
        Ok(self.db().list_activities(page, per).await?)
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn list_orders(
        &self,
        activity_id: Option<u64>,
        status: Option<OrderStatus>,
        page: u32,
        per: u32,
    ) -> Result<Page<OrderRow>, AdminError> {
        Ok(self.db().list_orders(activity_id, status, page, per).await?)
    }

    /// Changes an activity's limits (rate, burst, per-user allowance) without a deploy. If
    /// Redis holds this activity's sale, it is refreshed at once (stock kept): every buy
    /// follows the new limits from its next call, every instance from its next reply.
    #[tracing::instrument(skip(self), err)]
    pub async fn update_limits(
        &self,
        admin: &str,
        activity_id: u64,
        change: &LimitsChange,
    ) -> Result<Activity, AdminError> {
        if change.rate_limit_per_sec.is_none()
            && change.burst.is_none()
            && change.per_user_per_min.is_none()
            && change.buckets.is_none()
        {
            return Err(AdminError::Invalid(
                "give at least one of rate_limit_per_sec, burst, per_user_per_min, buckets".into(),
            ));
        }
        // The buckets first: refused once the activity started (a user's bucket depends on
        // them), and then nothing else of the request changes either.
        if let Some(buckets) = change.buckets {
            let now = chrono::Utc::now();
            if !self.db().update_activity_buckets(activity_id, buckets, now).await? {
                return Err(match self.db().activity(activity_id).await? {
                    None => AdminError::NotFound,
                    Some(_) => AdminError::Started,
                });
            }
        }
        let found = self
            .db()
            .update_activity_limits(activity_id, change.rate_limit_per_sec, change.burst, change.per_user_per_min)
            .await?;
        if !found {
            return Err(AdminError::NotFound);
        }
        let activity = self.db().activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        tracing::info!(admin, action = "limits", activity_id, ?change, "admin action");
        let live = self.sale.redis.sale(activity.product_id).await?;
        if live.is_some_and(|s| s.activity_id == activity.id) {
            self.sale.warm(&activity).await?;
        }
        Ok(activity)
    }

    /// Warms one activity on an admin's request; answers with the sale as it reads now.
    #[tracing::instrument(skip(self), err)]
    pub async fn warm(&self, admin: &str, activity_id: u64) -> Result<Warmed, AdminError> {
        let activity = self.db().activity(activity_id).await?.ok_or(AdminError::NotFound)?;
        let reply = self.sale.warm(&activity).await?;
        tracing::info!(admin, action = "warmup", activity_id, ?reply, "admin action");
        let view = self.sale.stock(activity.product_id).await?;
        Ok(Warmed {
            activity_id: activity.id,
            product_id: activity.product_id,
            result: match reply {
                LoadReply::Refreshed => "refreshed",
                LoadReply::Deferred => "deferred",
                _ => "written",
            },
            live_activity_id: view.activity_id,
            stock: view.stock,
            state: view.state,
        })
    }
}
