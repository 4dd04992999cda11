//! MySQL access: one function per query, prepared statements only (sqlx), no ORM.
//!
//! `Db` counts the statements it sends, so a test can prove that a path never reached MySQL
//! (invariant 7: unknown product ids never do).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use chrono::{DateTime, Utc};
use sqlx::{
    MySqlPool, Row,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
};

use crate::{
    config::MysqlConfig,
    domain::{Activity, Product},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../sql");

#[derive(Clone, Debug)]
pub struct Db {
    pool: MySqlPool,
    statements: Arc<AtomicU64>,
}

/// An order as the rebuild of a sale needs it.
#[derive(Debug, Clone)]
pub struct OrderKey {
    pub receipt: String,
    pub user_id: String,
    /// Cancelled (or dead-lettered): its unit is back in stock.
    pub unit_returned: bool,
}

impl Db {
    /// A lazy pool: no connection is opened until a query needs one, so a cold start does not
    /// touch MySQL and the hot path (Redis only) never does.
    pub fn connect_lazy(cfg: &MysqlConfig) -> Result<Self, sqlx::Error> {
        let options: MySqlConnectOptions = cfg.url.parse()?;
        let pool = MySqlPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: MySqlPool) -> Self {
        Self { pool, statements: Arc::new(AtomicU64::new(0)) }
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Statements this handle has sent since it was made.
    pub fn statements_sent(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Creates the database named in the URL if needed, then applies `sql/` migrations.
    pub async fn create_and_migrate(url: &str) -> Result<(), sqlx::Error> {
        let options: MySqlConnectOptions = url.parse()?;
        let name = options.get_database().map(str::to_owned);
        if let Some(name) = name {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(sqlx::Error::Configuration(
                    format!("database name {name:?} is not a plain identifier").into(),
                ));
            }
            let server = MySqlPoolOptions::new().max_connections(1).connect_with(options.clone().database("")).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")))
                .execute(&server)
                .await?;
            server.close().await;
        }
        let pool = MySqlPoolOptions::new().max_connections(1).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(())
    }

    #[tracing::instrument(skip(self, product), fields(name = %product.name))]
    pub async fn insert_product(&self, product: &NewProduct) -> Result<u64, sqlx::Error> {
        self.count();
        let done =
            sqlx::query(r#"INSERT INTO products (name, description, price_cents, image_url) VALUES (?, ?, ?, ?)"#)
                .bind(&product.name)
                .bind(&product.description)
                .bind(product.price_cents)
                .bind(&product.image_url)
                .execute(&self.pool)
                .await?;
        Ok(done.last_insert_id())
    }

    #[tracing::instrument(skip(self))]
    pub async fn product(&self, id: u64) -> Result<Option<Product>, sqlx::Error> {
        self.count();
        let row = sqlx::query(r#"SELECT id, name, description, price_cents, image_url FROM products WHERE id = ?"#)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Product {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                price_cents: r.try_get("price_cents")?,
                image_url: r.try_get("image_url")?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip(self, a), fields(product_id = a.product_id))]
    pub async fn insert_activity(&self, a: &NewActivity) -> Result<u64, sqlx::Error> {
        self.count();
        let done = sqlx::query(
            r#"INSERT INTO activities
               (product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min)
               VALUES (?, ?, ?, ?, ?, ?, ?)"#,
        )
        .bind(a.product_id)
        .bind(a.stock)
        .bind(a.starts_at)
        .bind(a.ends_at)
        .bind(a.rate_limit_per_sec)
        .bind(a.burst)
        .bind(a.per_user_per_min)
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_id())
    }

    #[tracing::instrument(skip(self))]
    pub async fn activity(&self, id: u64) -> Result<Option<Activity>, sqlx::Error> {
        self.count();
        let row = sqlx::query(
            r#"SELECT id, product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min
               FROM activities WHERE id = ?"#,
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(activity_from_row).transpose()
    }

    /// The activity a product's keys should hold now: the earliest one not yet ended, else the
    /// one that ended last (so its final state still reads as `ended`).
    #[tracing::instrument(skip(self))]
    pub async fn current_activity(&self, product_id: u64, now: DateTime<Utc>) -> Result<Option<Activity>, sqlx::Error> {
        self.count();
        let row = sqlx::query(
            r#"SELECT id, product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min
               FROM activities WHERE product_id = ?
               ORDER BY (ends_at > ?) DESC,
                        CASE WHEN ends_at > ? THEN starts_at END ASC,
                        ends_at DESC
               LIMIT 1"#,
        )
        .bind(product_id)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(activity_from_row).transpose()
    }

    /// Every order of an activity and every dead letter, as the sale rebuild needs them.
    #[tracing::instrument(skip(self))]
    pub async fn order_keys(&self, activity_id: u64) -> Result<Vec<OrderKey>, sqlx::Error> {
        self.count();
        let rows = sqlx::query(
            r#"SELECT receipt, user_id, status = 'cancelled' AS returned FROM orders WHERE activity_id = ?
               UNION ALL
               SELECT receipt, user_id, TRUE AS returned FROM dead_letters WHERE activity_id = ?"#,
        )
        .bind(activity_id)
        .bind(activity_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderKey {
                    receipt: r.try_get("receipt")?,
                    user_id: r.try_get("user_id")?,
                    unit_returned: r.try_get::<i64, _>("returned")? != 0,
                })
            })
            .collect()
    }
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
    })
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub image_url: String,
}

#[derive(Debug, Clone)]
pub struct NewActivity {
    pub product_id: u64,
    pub stock: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub rate_limit_per_sec: u32,
    pub burst: u32,
    pub per_user_per_min: u32,
}
