//! The catalog: products and their sales (activities).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub image_url: String,
}

/// One product on sale for a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: u64,
    pub product_id: u64,
    /// -1 = unlimited.
    pub stock: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub rate_limit_per_sec: u32,
    pub burst: u32,
    pub per_user_per_min: u32,
    /// Stock buckets (`domain::shard`): 1 = one hash tag, as before buckets existed.
    pub buckets: u16,
}

pub const UNLIMITED: i64 = -1;

/// A product as an admin submits it (validated in `admin::validation`).
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub image_url: String,
}

/// An activity as an admin submits it (validated in `admin::validation`).
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub product_id: u64,
    pub stock: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub rate_limit_per_sec: u32,
    pub burst: u32,
    pub per_user_per_min: u32,
    pub buckets: u16,
}
