//! Domain types: what every layer above speaks, and nothing that does I/O.
//!
//! - [`ids`]: user ids, numeric ids, times as the API and Redis carry them.
//! - [`catalog`]: products and activities (and what an admin submits to create them).
//! - [`orders`]: an order row, its status, pages of a list, what a rebuild needs of orders.
//! - [`shard`]: stock buckets: which bucket a user meets, which one sold a receipt.
//! - [`messages`]: the queue messages (order, payment timeout) and a delivered record.
//! - [`SaleState`]: where a sale stands in its window.

pub mod catalog;
pub mod ids;
pub mod messages;
pub mod orders;
pub mod shard;

pub use catalog::{Activity, NewActivity, NewProduct, Product, UNLIMITED};
pub use ids::{MAX_ID, UserId, from_ms, to_ms, valid_id};
pub use messages::{OrderMessage, Record, TimeoutMessage};
pub use orders::{DeadLetter, KnownOrder, NewOrder, OrderKey, OrderRow, OrderStatus, Page, Returned, StatusCounts};
pub use shard::{MAX_BUCKETS, Shard, receipt_product};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Upcoming,
    Open,
    Ended,
}

impl SaleState {
    pub fn at(now_ms: i64, starts_at_ms: i64, ends_at_ms: i64) -> Self {
        if now_ms < starts_at_ms {
            Self::Upcoming
        } else if now_ms < ends_at_ms {
            Self::Open
        } else {
            Self::Ended
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_window() {
        assert_eq!(SaleState::at(5, 10, 20), SaleState::Upcoming);
        assert_eq!(SaleState::at(10, 10, 20), SaleState::Open);
        assert_eq!(SaleState::at(20, 10, 20), SaleState::Ended);
    }
}
