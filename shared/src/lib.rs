//! The flash sale's library crate. Every Lambda function is a thin binary over it.
//!
//! Layout:
//! - [`config`]: typed configuration per dependency, read once per cold start.
//! - [`telemetry`]: tracing (JSON lines in Lambda).
//! - [`api`]: the HTTP boundary: error type and body, identity from authorizer claims, parsing.
//! - [`domain`]: ids, activities, the order message, sale states.
//! - [`keys`], [`scripts`], [`store`], [`bloom`]: Redis key names, the Lua scripts and their
//!   replies, the store over one connection manager, the product bloom filter.
//! - [`db`]: MySQL, one function per query, and the migrations in `sql/`.
//! - [`queue`]: the SQS client and sends.
//! - [`limiter`]: the per-instance token bucket.
//! - [`sale`]: the logic: buy, stock view, warm-up, cache-miss rebuild.

pub mod admin;
pub mod api;
pub mod bloom;
pub mod config;
pub mod db;
pub mod domain;
pub mod keys;
pub mod limiter;
pub mod pipeline;
pub mod queue;
pub mod sale;
pub mod scripts;
pub mod store;
pub mod telemetry;
