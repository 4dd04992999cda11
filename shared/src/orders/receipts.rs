//! Receipts: `{activity_id}-{product_id}-{user}-{n}[.{bucket}.{buckets}]` (DESIGN.md), unique
//! because `n` comes out of the atomic decrement of the bucket named after it (or the
//! per-bucket counter for unlimited stock). Parsed in `domain::shard`.

pub use crate::domain::{Shard, receipt_product};
