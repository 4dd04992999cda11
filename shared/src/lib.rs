//! The flash sale's library crate. Every Lambda function is a thin binary over it.
//!
//! Layout (dependencies point down; nothing in the core imports the boundaries):
//!
//! - Boundaries: [`http`] (errors → bodies, identity and scopes, body/path/query parsing) and
//!   [`lambda`] (SQS records, batch responses, errors → the runtime's report).
//! - Capabilities: [`sale`] (the hot path: buy, stock, rebuild, warm-up, restore, the stock
//!   buckets' rebalance, bloom, limits), [`orders`] (after the 202: consumer, payment timeout, pay and status, outbox
//!   retry, receipts), [`admin`] (validation, catalog, publish, reconcile).
//! - Adapters: [`redis`] (connection, keys, bloom filter, one file per Lua script),
//!   [`mysql`] (the pool, migrations, queries by table group), [`sqs`] (client and senders),
//!   [`s3`] (the published pages' objects); [`aws`] is what the AWS clients share.
//! - [`domain`]: ids, catalog types, orders, queue messages, sale states, stock buckets
//!   (which bucket a user meets, which one sold a receipt).
//! - [`config`] (the only reader of the environment; URLs parsed at start-up) and
//!   [`telemetry`] (tracing set-up, error chains).

pub mod admin;
pub mod aws;
pub mod config;
pub mod domain;
pub mod http;
pub mod lambda;
pub mod mysql;
pub mod orders;
pub mod redis;
pub mod s3;
pub mod sale;
pub mod sqs;
pub mod telemetry;
