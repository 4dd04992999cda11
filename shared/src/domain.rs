//! Domain types shared by every function.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The message `buy` writes into the outbox and sends to the `orders` queue. `buy.lua` builds
/// it (cjson), so its field names here and there must agree; a unit test checks that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMessage {
    pub receipt: String,
    pub activity_id: u64,
    pub product_id: u64,
    pub user_id: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub image_url: String,
}

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
}

pub const UNLIMITED: i64 = -1;

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

/// The message `order-consumer` sends to `payment-timeouts`, delayed by the payment window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutMessage {
    pub receipt: String,
    pub activity_id: u64,
    pub product_id: u64,
}

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

/// A user id as the token's `sub` carries it. It becomes part of a receipt, a Redis key and a
/// URL path, so only a conservative alphabet is accepted (Cognito's UUIDs and typical ids pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.@:|".contains(&b) || b == b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Largest id the API accepts: ids are BIGINT UNSIGNED in MySQL, but JSON clients lose
/// precision above 2^53, so nothing larger is ever handed out or accepted.
pub const MAX_ID: u64 = (1 << 53) - 1;

pub fn valid_id(id: u64) -> bool {
    (1..=MAX_ID).contains(&id)
}

pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_with_separators_or_spaces_are_refused() {
        assert!(UserId::parse("7f1c2a4e-0b9d-4c35-9a57-6f0e5d7f9a11").is_some());
        assert!(UserId::parse("user_42@example.com").is_some());
        for bad in ["", "a/b", "a b", "a{b}", "é", &"x".repeat(129)] {
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_lua_message_parses_as_an_order_message() -> Result<(), Box<dyn std::error::Error>> {
        // What cjson.encode produces in buy.lua (key order is cjson's, not ours).
        let lua = r#"{"user_id":"alice","product_id":7,"receipt":"3-7-alice-100","created_at_ms":1795470804123,"activity_id":3}"#;
        let m: OrderMessage = serde_json::from_str(lua)?;
        assert_eq!(m.receipt, "3-7-alice-100");
        assert_eq!(m.created_at_ms, 1_795_470_804_123);
        Ok(())
    }

    #[test]
    fn state_follows_the_window() {
        assert_eq!(SaleState::at(5, 10, 20), SaleState::Upcoming);
        assert_eq!(SaleState::at(10, 10, 20), SaleState::Open);
        assert_eq!(SaleState::at(20, 10, 20), SaleState::Ended);
    }
}
