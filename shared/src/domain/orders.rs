//! Orders as MySQL keeps them, and what lists and reports return.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::OrderMessage;

/// An order's status in MySQL (the API adds `processing` for a purchase not yet written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Cancelled,
    Failed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for OrderStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pending_payment" => Ok(Self::PendingPayment),
            "paid" => Ok(Self::Paid),
            "cancelled" => Ok(Self::Cancelled),
            "failed" => Ok(Self::Failed),
            _ => Err(()),
        }
    }
}

/// An order row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A row the consumer inserts.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub message: OrderMessage,
    pub price_cents: i64,
    /// `pay_by` is MySQL's `NOW(3)` at the insert plus this: the clock that decides the
    /// payment (`pay`, the timeout and the sweep compare with `NOW(3)` too).
    pub payment_window: std::time::Duration,
}

/// A purchase that failed without an order row of its own (its buyer already had an order for
/// the activity), as `dead_letters` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub receipt: String,
    pub activity_id: u64,
    pub product_id: u64,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
}

/// An order's status as Redis keeps it for the buyer's polls (`GET /orders/{receipt}`): the
/// row, or the dead letter of a purchase that failed without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownOrder {
    Stored(OrderRow),
    Failed(DeadLetter),
}

impl KnownOrder {
    pub fn user_id(&self) -> &str {
        match self {
            Self::Stored(o) => &o.user_id,
            Self::Failed(d) => &d.user_id,
        }
    }

    pub fn receipt(&self) -> &str {
        match self {
            Self::Stored(o) => &o.receipt,
            Self::Failed(d) => &d.receipt,
        }
    }

    /// Nothing can change it any more (paid, cancelled, failed). A pending order is not final:
    /// it may still be paid or cancelled.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Stored(o) if o.status == OrderStatus::PendingPayment)
    }
}

/// A cancelled or failed purchase whose unit is not yet recorded as back in stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    pub receipt: String,
    pub activity_id: u64,
    pub product_id: u64,
}

/// An order as the rebuild of a sale needs it.
#[derive(Debug, Clone)]
pub struct OrderKey {
    pub receipt: String,
    pub user_id: String,
    /// Cancelled (or dead-lettered): its unit is back in stock.
    pub unit_returned: bool,
}

/// One page of a list, in stable id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
