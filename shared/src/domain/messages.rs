//! The messages that cross a queue, and a delivered record as the pipeline sees it.

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

/// The message `order-consumer` sends to `payment-timeouts`, delayed by the payment window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutMessage {
    pub receipt: String,
    pub activity_id: u64,
    pub product_id: u64,
}

/// One delivered queue record: its id (what a partial batch response names) and its body.
/// `lambda::records` makes these from an SQS event.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lua_message_parses_as_an_order_message() -> Result<(), Box<dyn std::error::Error>> {
        // What cjson.encode produces in buy.lua (key order is cjson's, not ours).
        let lua = r#"{"user_id":"alice","product_id":7,"receipt":"3-7-alice-100","created_at_ms":1795470804123,"activity_id":3}"#;
        let m: OrderMessage = serde_json::from_str(lua)?;
        assert_eq!(m.receipt, "3-7-alice-100");
        assert_eq!(m.created_at_ms, 1_795_470_804_123);
        Ok(())
    }
}
