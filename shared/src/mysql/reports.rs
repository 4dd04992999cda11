//! What admins read: order lists and counts.

use sqlx::Row;

use super::{
    Db,
    orders::{ORDER_COLUMNS, order_from_row},
};
use crate::domain::{OrderRow, OrderStatus, Page, StatusCounts};

impl Db {
    /// Orders, optionally of one activity and one status, in id order.
    #[tracing::instrument(skip(self), err)]
    pub async fn list_orders(
        &self,
        activity_id: Option<u64>,
        status: Option<OrderStatus>,
        page: u32,
        per: u32,
    ) -> Result<Page<OrderRow>, sqlx::Error> {
        let _statement = self.count();
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

    #[tracing::instrument(skip(self), err)]
    pub async fn status_counts(&self, activity_id: u64) -> Result<StatusCounts, sqlx::Error> {
        let _statement = self.count();
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
    #[tracing::instrument(skip(self, receipts), fields(n = receipts.len()), err)]
    pub async fn existing_receipts(&self, receipts: &[String]) -> Result<Vec<String>, sqlx::Error> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let _statement = self.count();
        let mut q = sqlx::QueryBuilder::new("SELECT receipt FROM orders WHERE receipt IN (");
        let mut list = q.separated(", ");
        for r in receipts {
            list.push_bind(r);
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
    }
}
