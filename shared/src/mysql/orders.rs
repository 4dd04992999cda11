//! The pipeline's queries on `orders` and `dead_letters`.

use chrono::Utc;
use sqlx::Row;

use super::{Db, is_duplicate};
use crate::domain::{DeadLetter, NewOrder, OrderKey, OrderMessage, OrderRow, Returned, from_ms};

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
    /// Every order of an activity (failed ones included), then the dead letters that have no
    /// order row (their unit is returned too), as the sale rebuild needs them.
    #[tracing::instrument(skip(self), err)]
    pub async fn order_keys(&self, activity_id: u64) -> Result<Vec<OrderKey>, sqlx::Error> {
        let _statement = self.count();
        let rows = sqlx::query(
            r#"SELECT receipt, user_id, status IN ('cancelled', 'failed') AS returned, 0 AS dead FROM orders WHERE activity_id = ?
               UNION ALL
               SELECT d.receipt, d.user_id, 1, 1 FROM dead_letters d
               WHERE d.activity_id = ? AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.receipt = d.receipt)
               ORDER BY dead DESC"#,
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

    /// Inserts a batch of orders in one statement and one transaction. Idempotent: a receipt
    /// already there (a redelivered message) is left as it is, whatever its status now.
    #[tracing::instrument(skip(self, orders), fields(n = orders.len()), err)]
    pub async fn insert_orders(&self, orders: &[NewOrder]) -> Result<(), sqlx::Error> {
        if orders.is_empty() {
            return Ok(());
        }
        let _statement = self.count();
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
                .push("NOW(3) + INTERVAL ")
                .push_bind_unseparated(o.payment_window.as_micros() as u64)
                .push_unseparated(" MICROSECOND");
        });
        q.push(" ON DUPLICATE KEY UPDATE receipt = receipt");
        q.build().execute(&mut *tx).await?;
        tx.commit().await
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn order(&self, receipt: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        let _statement = self.count();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE receipt = ?")))
            .bind(receipt)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// The order rows of these receipts (those that have one), as the consumer keeps their
    /// status in Redis after its insert.
    #[tracing::instrument(skip(self, receipts), fields(n = receipts.len()), err)]
    pub async fn orders_by_receipt(&self, receipts: &[String]) -> Result<Vec<OrderRow>, sqlx::Error> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let _statement = self.count();
        let mut q = sqlx::QueryBuilder::new(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE receipt IN ("));
        let mut list = q.separated(", ");
        for r in receipts {
            list.push_bind(r);
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(order_from_row).collect()
    }

    /// The payment timeout's conditional update: true if this call cancelled the order. Only
    /// past `pay_by` by MySQL's clock, the one `pay` is judged by.
    #[tracing::instrument(skip(self), err)]
    pub async fn cancel_if_pending(&self, receipt: &str) -> Result<bool, sqlx::Error> {
        let _statement = self.count();
        let done = sqlx::query(
            r#"UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3)
               WHERE receipt = ? AND status = 'pending_payment' AND pay_by <= NOW(3)"#,
        )
        .bind(receipt)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The payment: pays the order if it is the user's, unpaid and not past `pay_by` (MySQL's
    /// clock), and reads the row back in the same transaction, so the answer never depends on
    /// anything read after the commit. `None`: no order row with this receipt (yet).
    #[tracing::instrument(skip(self), err)]
    pub async fn pay(&self, receipt: &str, user_id: &str) -> Result<Option<(OrderRow, bool)>, sqlx::Error> {
        let _statement = self.count();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            r#"UPDATE orders SET status = 'paid', paid_at = NOW(3)
               WHERE receipt = ? AND user_id = ? AND status = 'pending_payment' AND pay_by > NOW(3)"#,
        )
        .bind(receipt)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE receipt = ?")))
            .bind(receipt)
            .fetch_optional(&mut *tx)
            .await?;
        let row = row.as_ref().map(order_from_row).transpose()?;
        tx.commit().await?;
        Ok(row.map(|o| (o, done.rows_affected() == 1)))
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
        let _statement = self.count();
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

impl Db {
    /// A purchase that lost to the one-per-user key (its buyer already has another order for
    /// the activity): a dead letter without an order row. False if it was recorded before.
    #[tracing::instrument(skip(self, message, payload), fields(receipt = %message.receipt), err)]
    pub async fn insert_dead_letter(
        &self,
        message: &OrderMessage,
        payload: &str,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        let _statement = self.count();
        let done = sqlx::query(
            r#"INSERT IGNORE INTO dead_letters (receipt, activity_id, product_id, user_id, payload, reason, attempts)
               VALUES (?, ?, ?, ?, ?, ?, 0)"#,
        )
        .bind(&message.receipt)
        .bind(message.activity_id)
        .bind(message.product_id)
        .bind(&message.user_id)
        .bind(payload)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn dead_letter(&self, receipt: &str) -> Result<Option<DeadLetter>, sqlx::Error> {
        let _statement = self.count();
        let row = sqlx::query(
            "SELECT receipt, activity_id, product_id, user_id, created_at FROM dead_letters WHERE receipt = ?",
        )
        .bind(receipt)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DeadLetter {
                receipt: r.try_get("receipt")?,
                activity_id: r.try_get("activity_id")?,
                product_id: r.try_get("product_id")?,
                user_id: r.try_get("user_id")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Records that these purchases' units are back in stock (the last step after a cancel or
    /// a dead letter; until it is done, the sweep redoes the restore).
    #[tracing::instrument(skip(self, receipts), fields(n = receipts.len()), err)]
    pub async fn mark_restored(&self, receipts: &[&str]) -> Result<(), sqlx::Error> {
        if receipts.is_empty() {
            return Ok(());
        }
        let _statement = self.count();
        let mut tx = self.pool.begin().await?;
        for table in ["orders", "dead_letters"] {
            let mut q = sqlx::QueryBuilder::new(format!("UPDATE {table} SET unit_restored = 1 WHERE receipt IN ("));
            let mut list = q.separated(", ");
            for r in receipts {
                list.push_bind(*r);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// The sweep's cancel: unpaid orders more than `grace` past `pay_by` (MySQL's clock),
    /// oldest first, at most `limit`. Returns how many it cancelled.
    #[tracing::instrument(skip(self), err)]
    pub async fn cancel_overdue(&self, grace: std::time::Duration, limit: u32) -> Result<u64, sqlx::Error> {
        let _statement = self.count();
        let done = sqlx::query(
            r#"UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3)
               WHERE status = 'pending_payment' AND pay_by < NOW(3) - INTERVAL ? MICROSECOND
               ORDER BY pay_by LIMIT ?"#,
        )
        .bind(grace.as_micros() as u64)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Cancelled or failed purchases whose unit is not yet recorded as restored, at most `limit`.
    #[tracing::instrument(skip(self), err)]
    pub async fn units_to_restore(&self, limit: u32) -> Result<Vec<Returned>, sqlx::Error> {
        let _statement = self.count();
        let rows = sqlx::query(
            r#"(SELECT receipt, activity_id, product_id FROM orders
                WHERE status IN ('cancelled', 'failed') AND unit_restored = 0 LIMIT ?)
               UNION ALL
               (SELECT d.receipt, d.activity_id, d.product_id FROM dead_letters d
                WHERE d.unit_restored = 0 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.receipt = d.receipt) LIMIT ?)"#,
        )
        .bind(limit)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Returned {
                    receipt: r.try_get("receipt")?,
                    activity_id: r.try_get("activity_id")?,
                    product_id: r.try_get("product_id")?,
                })
            })
            .collect()
    }
}
