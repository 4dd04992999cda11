//! Products and activities.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Db;
use crate::domain::{Activity, NewActivity, NewProduct, Page, Product};

/// The columns `activity_from_row` reads, in every activity query.
const ACTIVITY_COLUMNS: &str =
    "id, product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min, buckets";
const PRODUCT_COLUMNS: &str = "id, name, description, price_cents, image_url";

fn product_from_row(r: &sqlx::mysql::MySqlRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        price_cents: r.try_get("price_cents")?,
        image_url: r.try_get("image_url")?,
    })
}

fn activity_from_row(r: &sqlx::mysql::MySqlRow) -> Result<Activity, sqlx::Error> {
    Ok(Activity {
        id: r.try_get("id")?,
        product_id: r.try_get("product_id")?,
        stock: r.try_get("stock")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        rate_limit_per_sec: r.try_get::<i32, _>("rate_limit_per_sec")?.max(0) as u32,
        burst: r.try_get::<i32, _>("burst")?.max(0) as u32,
        per_user_per_min: r.try_get::<i32, _>("per_user_per_min")?.max(0) as u32,
        buckets: r.try_get::<u16, _>("buckets")?.max(1),
    })
}

impl Db {
    /// Inserts a product; with an idempotency key already used, returns that product's id.
    #[tracing::instrument(skip(self, product), fields(name = %product.name), err)]
    pub async fn insert_product(&self, product: &NewProduct, key: Option<&str>) -> Result<u64, sqlx::Error> {
        let _statement = self.count();
        let done = sqlx::query(
            r#"INSERT INTO products (name, description, price_cents, image_url, idempotency_key) VALUES (?, ?, ?, ?, ?)"#,
        )
        .bind(&product.name)
        .bind(&product.description)
        .bind(product.price_cents)
        .bind(&product.image_url)
        .bind(key)
        .execute(&self.pool)
        .await;
        self.created_or_replayed("products", done, key).await
    }

    /// The id a create made, or (its idempotency key already used) the id the first one made.
    async fn created_or_replayed(
        &self,
        table: &str,
        done: Result<sqlx::mysql::MySqlQueryResult, sqlx::Error>,
        key: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        match (done, key) {
            (Ok(done), _) => Ok(done.last_insert_id()),
            (Err(e), Some(key)) if super::is_duplicate(&e) => {
                let _statement = self.count();
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {table} WHERE idempotency_key = ?")))
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await
            }
            (Err(e), _) => Err(e),
        }
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn product(&self, id: u64) -> Result<Option<Product>, sqlx::Error> {
        let _statement = self.count();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(product_from_row).transpose()
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn list_products(&self, page: u32, per: u32) -> Result<Page<Product>, sqlx::Error> {
        let _statement = self.count();
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(&self.pool).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT ? OFFSET ?"
        )))
        .bind(per)
        .bind(u64::from(page - 1) * u64::from(per))
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(product_from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, page, per, total: total.max(0) as u64 })
    }

    /// Every product id, for refilling a lost bloom filter.
    #[tracing::instrument(skip(self), err)]
    pub async fn product_ids(&self) -> Result<Vec<u64>, sqlx::Error> {
        let _statement = self.count();
        sqlx::query_scalar("SELECT id FROM products ORDER BY id").fetch_all(&self.pool).await
    }

    /// Product ids from `first` on.
    #[tracing::instrument(skip(self), err)]
    pub async fn product_ids_from(&self, first: u64) -> Result<Vec<u64>, sqlx::Error> {
        let _statement = self.count();
        sqlx::query_scalar("SELECT id FROM products WHERE id >= ? ORDER BY id").bind(first).fetch_all(&self.pool).await
    }

    #[tracing::instrument(skip(self, a), fields(product_id = a.product_id), err)]
    pub async fn insert_activity(&self, a: &NewActivity) -> Result<u64, sqlx::Error> {
        self.insert_activity_once(a, None).await
    }

    /// Inserts an activity; with an idempotency key already used, returns that activity's id.
    /// Times are bound as `DATETIME` values (naive UTC): sqlx binds a `DateTime<Utc>` as a
    /// `TIMESTAMP`, which the server turns into NULL past 2038.
    #[tracing::instrument(skip(self, a), fields(product_id = a.product_id), err)]
    pub async fn insert_activity_once(&self, a: &NewActivity, key: Option<&str>) -> Result<u64, sqlx::Error> {
        let _statement = self.count();
        let done = sqlx::query(
            r#"INSERT INTO activities
               (product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min, buckets, idempotency_key)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"#,
        )
        .bind(a.product_id)
        .bind(a.stock)
        .bind(a.starts_at.naive_utc())
        .bind(a.ends_at.naive_utc())
        .bind(a.rate_limit_per_sec)
        .bind(a.burst)
        .bind(a.per_user_per_min)
        .bind(a.buckets)
        .bind(key)
        .execute(&self.pool)
        .await;
        self.created_or_replayed("activities", done, key).await
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn activity(&self, id: u64) -> Result<Option<Activity>, sqlx::Error> {
        let _statement = self.count();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACTIVITY_COLUMNS} FROM activities WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(activity_from_row).transpose()
    }

    /// Sets an activity's limits (each `None` kept as it is); false when there is no such
    /// activity.
    #[tracing::instrument(skip(self), err)]
    pub async fn update_activity_limits(
        &self,
        id: u64,
        rate_limit_per_sec: Option<u32>,
        burst: Option<u32>,
        per_user_per_min: Option<u32>,
    ) -> Result<bool, sqlx::Error> {
        let _statement = self.count();
        // The row is matched by id alone, so a no-op change still reports the row (FOUND_ROWS).
        let done = sqlx::query(
            r#"UPDATE activities SET rate_limit_per_sec = COALESCE(?, rate_limit_per_sec),
                   burst = COALESCE(?, burst), per_user_per_min = COALESCE(?, per_user_per_min)
               WHERE id = ?"#,
        )
        .bind(rate_limit_per_sec)
        .bind(burst)
        .bind(per_user_per_min)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets an activity's number of stock buckets, only while it has not started at `now`:
    /// false when there is no such activity or it has started.
    #[tracing::instrument(skip(self), err)]
    pub async fn update_activity_buckets(
        &self,
        id: u64,
        buckets: u16,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let _statement = self.count();
        let done = sqlx::query(r#"UPDATE activities SET buckets = ? WHERE id = ? AND starts_at > ?"#)
            .bind(buckets)
            .bind(id)
            .bind(now.naive_utc())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn list_activities(&self, page: u32, per: u32) -> Result<Page<Activity>, sqlx::Error> {
        let _statement = self.count();
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activities").fetch_one(&self.pool).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activities ORDER BY id LIMIT ? OFFSET ?"
        )))
        .bind(per)
        .bind(u64::from(page - 1) * u64::from(per))
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(activity_from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, page, per, total: total.max(0) as u64 })
    }

    /// The activity a product's keys should hold now: the earliest one not yet ended, else the
    /// one that ended last (so its final state still reads as `ended`).
    #[tracing::instrument(skip(self), err)]
    pub async fn current_activity(&self, product_id: u64, now: DateTime<Utc>) -> Result<Option<Activity>, sqlx::Error> {
        let _statement = self.count();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activities WHERE product_id = ? \
             ORDER BY (ends_at > ?) DESC, CASE WHEN ends_at > ? THEN starts_at END ASC, ends_at DESC LIMIT 1"
        )))
        .bind(product_id)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(activity_from_row).transpose()
    }

    /// Activities to warm: starting within `horizon` and not ended.
    #[tracing::instrument(skip(self), err)]
    pub async fn activities_to_warm(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<Vec<Activity>, sqlx::Error> {
        let _statement = self.count();
        let until = now + chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::hours(1));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activities WHERE starts_at <= ? AND ends_at > ? ORDER BY starts_at"
        )))
        .bind(until)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(activity_from_row).collect()
    }

    /// Activities that have not ended, or ended within `horizon`: (product id, activity id,
    /// stock buckets) of each.
    #[tracing::instrument(skip(self), err)]
    pub async fn recent_activities(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<Vec<(u64, u64, u16)>, sqlx::Error> {
        let _statement = self.count();
        let since = now - chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::days(1));
        let rows = sqlx::query(r#"SELECT product_id, id, buckets FROM activities WHERE ends_at > ?"#)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get::<u64, _>(0)?, r.try_get::<u64, _>(1)?, r.try_get::<u16, _>(2)?))).collect()
    }

    /// Each activity's unit price (its product's), for the ids given.
    #[tracing::instrument(skip(self, activity_ids), fields(n = activity_ids.len()), err)]
    pub async fn activity_prices(
        &self,
        activity_ids: &[u64],
    ) -> Result<std::collections::HashMap<u64, i64>, sqlx::Error> {
        if activity_ids.is_empty() {
            return Ok(Default::default());
        }
        let _statement = self.count();
        let mut q = sqlx::QueryBuilder::new(
            "SELECT a.id, p.price_cents FROM activities a JOIN products p ON p.id = a.product_id WHERE a.id IN (",
        );
        let mut ids = q.separated(", ");
        for id in activity_ids {
            ids.push_bind(*id);
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get::<u64, _>(0)?, r.try_get::<i64, _>(1)?))).collect()
    }
}
