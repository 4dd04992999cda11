//! The demo sale `flash-local serve --demo` sets up, so a fresh checkout has something to buy:
//! one product, 100 units, open for a day from now. Idempotent: an open demo sale is reused
//! (and warmed again, which keeps its stock).

use chrono::{Duration, Utc};
use shared::{
    domain::{NewActivity, NewProduct},
    sale::{Sale, SaleError},
};
use sqlx::Row;

pub const DEMO_PRODUCT: &str = "Demo flash-sale phone";

pub async fn ensure(sale: &Sale) -> Result<(u64, u64), SaleError> {
    let existing = sqlx::query(
        r#"SELECT a.id AS activity_id, p.id AS product_id FROM activities a JOIN products p ON p.id = a.product_id
           WHERE p.name = ? AND a.ends_at > ? ORDER BY a.id DESC LIMIT 1"#,
    )
    .bind(DEMO_PRODUCT)
    .bind(Utc::now())
    .fetch_optional(sale.db.pool())
    .await?;
    let activity_id = match existing {
        Some(row) => row.try_get::<u64, _>("activity_id")?,
        None => {
            let product_id = sale
                .list_product(
                    &NewProduct {
                        name: DEMO_PRODUCT.into(),
                        description: "A phone, 100 units, one per person.".into(),
                        price_cents: 99_900,
                        image_url: String::new(),
                    },
                    None,
                )
                .await?;
            let now = Utc::now();
            sale.db
                .insert_activity(&NewActivity {
                    product_id,
                    stock: 100,
                    starts_at: now,
                    ends_at: now + Duration::days(1),
                    rate_limit_per_sec: 5_000,
                    burst: 500,
                    per_user_per_min: 5,
                    buckets: 1,
                })
                .await?
        }
    };
    let activity = sale.db.activity(activity_id).await?.ok_or(SaleError::ProductNotFound)?;
    sale.warm(&activity).await?;
    Ok((activity.product_id, activity.id))
}
