//! Everything after the 202: the order consumer, the payment timeout, the payment and order
//! status, and the outbox retry. Each keeps invariants 1-5 under at-least-once delivery:
//! - the consumer's insert is idempotent on the receipt (unique key);
//! - cancel and pay are conditional updates on `pending_payment`, so exactly one wins;
//! - a unit comes back through `restore.lua`, once per receipt (the `restored` set);
//! - a dead letter and a late order race on the same unique receipt, so only one exists;
//! - every step after a commit is redone until it is done: a unit's return is recorded
//!   (`unit_restored`) after the restore, and the sweep redoes what is not recorded.
//!
//! - [`consumer`]: SQS `orders` -> MySQL, the payment timeout, the outbox ack.
//! - [`timeout`]: an unpaid order cancelled, its unit restored.
//! - [`pay`]: the order status a buyer reads, and the payment.
//! - [`outbox_retry`]: resends of unacknowledged purchases; dead letters after the cap.
//! - [`sweep`]: overdue unpaid orders cancelled, unrecorded unit returns redone (scheduled).
//! - [`receipts`]: what a receipt says about itself.

pub mod consumer;
pub mod outbox_retry;
pub mod pay;
pub mod receipts;
pub mod sweep;
pub mod timeout;

pub use consumer::OrderConsumer;
pub use outbox_retry::{OutboxRetry, RetryReport};
pub use pay::{OrderView, Orders, PayOutcome};
pub use sweep::SweepReport;
pub use timeout::{Expired, PaymentTimeouts};
