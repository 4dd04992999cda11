//! The pipeline's queries on `orders` and `dead_letters`.

use chrono::Utc;
use sqlx::Row;

use super::{Db, is_duplicate};
use crate::domain::{NewOrder, OrderKey, OrderMessage, OrderRow, from_ms};

/// The columns `order_from_row` reads.
pub(super) const ORDER_COLUMNS: &str =
    "id, receipt, activity_id, product_id, user_id, status, price_cents, created_at, pay_by, paid_at, cancelled_at";

pub(super) fn order_from_row(r: &sqlx::mysql::MySqlRow) -> Result<OrderRow, sqlx::Error> {
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

impl Db {
    /// Every order of an activity (failed ones included), as the sale rebuild needs them.
    #[tracing::instrument(skip(self), err)]
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

    #[tracing::instrument(skip(self), err)]
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
}
