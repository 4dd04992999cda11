//! MySQL access: one function per query, prepared statements only (sqlx), no ORM.
//!
//! `Db` counts the statements it sends, so a test can prove that a path never reached MySQL
//! (invariant 7: unknown product ids never do).

use std::collections::HashMap;
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
    domain::{Activity, OrderMessage, OrderStatus, Product, from_ms},
};

/// MySQL's error number for a unique-key violation.
const ER_DUP_ENTRY: &str = "1062";

fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(ER_DUP_ENTRY) || db.code().as_deref() == Some("23000"))
}

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
        row.as_ref().map(product_from_row).transpose()
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

    /// Every order of an activity (failed ones included), as the sale rebuild needs them.
    #[tracing::instrument(skip(self))]
    pub async fn order_keys(&self, activity_id: u64) -> Result<Vec<OrderKey>, sqlx::Error> {
        self.count();
        let rows = sqlx::query(
            r#"SELECT receipt, user_id, status IN ('cancelled', 'failed') AS returned FROM orders WHERE activity_id = ?"#,
        )
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

/// An order row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: u64,
    pub receipt: String,
    pub activity_id: u64,
    pub product_id: u64,
    pub user_id: String,
    pub status: OrderStatus,
    pub price_cents: i64,
    pub created_at: DateTime<Utc>,
    pub pay_by: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str =
    "id, receipt, activity_id, product_id, user_id, status, price_cents, created_at, pay_by, paid_at, cancelled_at";

fn order_from_row(r: &sqlx::mysql::MySqlRow) -> Result<OrderRow, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(OrderRow {
        id: r.try_get("id")?,
        receipt: r.try_get("receipt")?,
        activity_id: r.try_get("activity_id")?,
        product_id: r.try_get("product_id")?,
        user_id: r.try_get("user_id")?,
        status: status.parse().map_err(|_| sqlx::Error::Decode(format!("order status {status:?}").into()))?,
        price_cents: r.try_get("price_cents")?,
        created_at: r.try_get("created_at")?,
        pay_by: r.try_get("pay_by")?,
        paid_at: r.try_get("paid_at")?,
        cancelled_at: r.try_get("cancelled_at")?,
    })
}

/// A row the consumer inserts.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub message: OrderMessage,
    pub price_cents: i64,
    pub pay_by: DateTime<Utc>,
}

impl Db {
    /// Each activity's unit price (its product's), for the ids given.
    #[tracing::instrument(skip(self, activity_ids), fields(n = activity_ids.len()))]
    pub async fn activity_prices(&self, activity_ids: &[u64]) -> Result<HashMap<u64, i64>, sqlx::Error> {
        if activity_ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.count();
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

    /// Inserts a batch of orders in one statement and one transaction. Idempotent: a receipt
    /// already there (a redelivered message) is left as it is, whatever its status now.
    #[tracing::instrument(skip(self, orders), fields(n = orders.len()), err)]
    pub async fn insert_orders(&self, orders: &[NewOrder]) -> Result<(), sqlx::Error> {
        if orders.is_empty() {
            return Ok(());
        }
        self.count();
        let mut tx = self.pool.begin().await?;
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO orders (receipt, activity_id, product_id, user_id, price_cents, created_at, pay_by) ",
        );
        q.push_values(orders, |mut row, o| {
            row.push_bind(&o.message.receipt)
                .push_bind(o.message.activity_id)
                .push_bind(o.message.product_id)
                .push_bind(&o.message.user_id)
                .push_bind(o.price_cents)
                .push_bind(from_ms(o.message.created_at_ms).unwrap_or_else(Utc::now))
                .push_bind(o.pay_by);
        });
        q.push(" ON DUPLICATE KEY UPDATE receipt = receipt");
        q.build().execute(&mut *tx).await?;
        tx.commit().await
    }

    #[tracing::instrument(skip(self))]
    pub async fn order(&self, receipt: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        self.count();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE receipt = ?")))
            .bind(receipt)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// The payment timeout's conditional update: true if this call cancelled the order.
    #[tracing::instrument(skip(self), err)]
    pub async fn cancel_if_pending(&self, receipt: &str) -> Result<bool, sqlx::Error> {
        self.count();
        let done = sqlx::query(
            r#"UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3)
               WHERE receipt = ? AND status = 'pending_payment'"#,
        )
        .bind(receipt)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The payment's conditional update: true if this call paid the order. A payment after
    /// `pay_by` loses, even if the timeout has not run yet.
    #[tracing::instrument(skip(self), err)]
    pub async fn pay_if_pending(&self, receipt: &str, user_id: &str) -> Result<bool, sqlx::Error> {
        self.count();
        let done = sqlx::query(
            r#"UPDATE orders SET status = 'paid', paid_at = NOW(3)
               WHERE receipt = ? AND user_id = ? AND status = 'pending_payment' AND pay_by > NOW(3)"#,
        )
        .bind(receipt)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a purchase whose message exhausted its resends: a `failed` order row and the
    /// dead letter, in one transaction. Returns false if an order with this receipt exists
    /// (the message was delivered after all): the unique receipt decides, once.
    #[tracing::instrument(skip(self, message, payload), fields(receipt = %message.receipt), err)]
    pub async fn insert_failed(
        &self,
        message: &OrderMessage,
        payload: &str,
        reason: &str,
        attempts: u32,
    ) -> Result<bool, sqlx::Error> {
        self.count();
        let mut tx = self.pool.begin().await?;
        let created_at = from_ms(message.created_at_ms).unwrap_or_else(Utc::now);
        let inserted = sqlx::query(
            r#"INSERT INTO orders (receipt, activity_id, product_id, user_id, status, price_cents, created_at, pay_by, cancelled_at)
               SELECT ?, a.id, ?, ?, 'failed', p.price_cents, ?, ?, NOW(3)
               FROM activities a JOIN products p ON p.id = a.product_id WHERE a.id = ?"#,
        )
        .bind(&message.receipt)
        .bind(message.product_id)
        .bind(&message.user_id)
        .bind(created_at)
        .bind(created_at)
        .bind(message.activity_id)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_duplicate(&e) => return Ok(false),
            Err(e) => return Err(e),
            Ok(done) if done.rows_affected() == 0 => {
                return Err(sqlx::Error::RowNotFound);
            }
            Ok(_) => {}
        }
        sqlx::query(
            r#"INSERT INTO dead_letters (receipt, activity_id, product_id, user_id, payload, reason, attempts)
               VALUES (?, ?, ?, ?, ?, ?, ?)"#,
        )
        .bind(&message.receipt)
        .bind(message.activity_id)
        .bind(message.product_id)
        .bind(&message.user_id)
        .bind(payload)
        .bind(reason)
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Products whose activities have not ended, or ended within `horizon`.
    #[tracing::instrument(skip(self))]
    pub async fn recent_products(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<Vec<u64>, sqlx::Error> {
        self.count();
        let since = now - chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::days(1));
        let rows = sqlx::query(r#"SELECT DISTINCT product_id FROM activities WHERE ends_at > ?"#)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get::<u64, _>(0)).collect()
    }
}

/// One page of a list, in stable id order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per: u32,
    pub total: u64,
}

/// Order counts of one activity by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatusCounts {
    pub pending_payment: i64,
    pub paid: i64,
    pub cancelled: i64,
    pub failed: i64,
}

impl Db {
    #[tracing::instrument(skip(self))]
    pub async fn list_products(&self, page: u32, per: u32) -> Result<Page<Product>, sqlx::Error> {
        self.count();
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(&self.pool).await?;
        let rows = sqlx::query(
            r#"SELECT id, name, description, price_cents, image_url FROM products ORDER BY id LIMIT ? OFFSET ?"#,
        )
        .bind(per)
        .bind(u64::from(page - 1) * u64::from(per))
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(product_from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, page, per, total: total.max(0) as u64 })
    }

    #[tracing::instrument(skip(self))]
    pub async fn list_activities(&self, page: u32, per: u32) -> Result<Page<Activity>, sqlx::Error> {
        self.count();
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activities").fetch_one(&self.pool).await?;
        let rows = sqlx::query(
            r#"SELECT id, product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min
               FROM activities ORDER BY id LIMIT ? OFFSET ?"#,
        )
        .bind(per)
        .bind(u64::from(page - 1) * u64::from(per))
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(activity_from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, page, per, total: total.max(0) as u64 })
    }

    /// Orders, optionally of one activity and one status, in id order.
    #[tracing::instrument(skip(self))]
    pub async fn list_orders(
        &self,
        activity_id: Option<u64>,
        status: Option<OrderStatus>,
        page: u32,
        per: u32,
    ) -> Result<Page<OrderRow>, sqlx::Error> {
        self.count();
        let status = status.map(|s| s.as_str());
        let total: i64 = sqlx::query_scalar(
            r#"SELECT COUNT(*) FROM orders WHERE (? IS NULL OR activity_id = ?) AND (? IS NULL OR status = ?)"#,
        )
        .bind(activity_id)
        .bind(activity_id)
        .bind(status)
        .bind(status)
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE (? IS NULL OR activity_id = ?) AND (? IS NULL OR status = ?) \
             ORDER BY id LIMIT ? OFFSET ?"
        )))
        .bind(activity_id)
        .bind(activity_id)
        .bind(status)
        .bind(status)
        .bind(per)
        .bind(u64::from(page - 1) * u64::from(per))
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(order_from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, page, per, total: total.max(0) as u64 })
    }

    #[tracing::instrument(skip(self))]
    pub async fn status_counts(&self, activity_id: u64) -> Result<StatusCounts, sqlx::Error> {
        self.count();
        let rows =
            sqlx::query(r#"SELECT CAST(status AS CHAR), COUNT(*) FROM orders WHERE activity_id = ? GROUP BY status"#)
                .bind(activity_id)
                .fetch_all(&self.pool)
                .await?;
        let mut counts = StatusCounts::default();
        for r in &rows {
            let n: i64 = r.try_get(1)?;
            match r.try_get::<String, _>(0)?.parse() {
                Ok(OrderStatus::PendingPayment) => counts.pending_payment = n,
                Ok(OrderStatus::Paid) => counts.paid = n,
                Ok(OrderStatus::Cancelled) => counts.cancelled = n,
                Ok(OrderStatus::Failed) => counts.failed = n,
                Err(()) => {}
            }
        }
        Ok(counts)
    }

    /// Which of these receipts have an order row.
    #[tracing::instrument(skip(self, receipts), fields(n = receipts.len()))]
    pub async fn existing_receipts(&self, receipts: &[String]) -> Result<Vec<String>, sqlx::Error> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        self.count();
        let mut q = sqlx::QueryBuilder::new("SELECT receipt FROM orders WHERE receipt IN (");
        let mut list = q.separated(", ");
        for r in receipts {
            list.push_bind(r);
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
    }

    /// Activities to warm: starting within `horizon` and not ended.
    #[tracing::instrument(skip(self))]
    pub async fn activities_to_warm(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<Vec<Activity>, sqlx::Error> {
        self.count();
        let until = now + chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::hours(1));
        let rows = sqlx::query(
            r#"SELECT id, product_id, stock, starts_at, ends_at, rate_limit_per_sec, burst, per_user_per_min
               FROM activities WHERE starts_at <= ? AND ends_at > ? ORDER BY starts_at"#,
        )
        .bind(until)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(activity_from_row).collect()
    }

    /// Every product id, for refilling a lost bloom filter.
    #[tracing::instrument(skip(self))]
    pub async fn product_ids(&self) -> Result<Vec<u64>, sqlx::Error> {
        self.count();
        sqlx::query_scalar("SELECT id FROM products ORDER BY id").fetch_all(&self.pool).await
    }
}

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
