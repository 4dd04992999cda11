//! Instance-local answers that cannot be wrong for long.
//!
//! After a sale is sold out (or before it opens, or after it ended) nearly every press of "buy"
//! and every page refresh would cost a Redis round trip for an answer that has not changed.
//! An instance keeps such an answer in memory until a short deadline and answers from there:
//!
//! - sold out: `SALE_MEMO_MS` (units can come back from cancellations and dead letters, and are
//!   sold again at the latest that long after they came back);
//! - ended: `SALE_MEMO_MS` too (the next activity of the product may take over at any time);
//! - not open yet: until the start time Redis gave, at most `SALE_MEMO_UPCOMING_MAX_MS` (an
//!   admin may move the start);
//! - the stock view: `STOCK_CACHE_MS` (a page's stock figure is at most that old).
//!
//! What a memo never answers: whether this user already bought. A buyer whose 202 was lost
//! and who retries while the sale reads sold out would be told `sold_out` instead of getting
//! her receipt; so a request that asks not to be answered from a cache (`Cache-Control:
//! no-cache`, what the sale page sends when it resends a buy whose answer never came) always
//! goes to Redis, and after the deadline every request does again.
//!
//! A deadline is the instance's monotonic clock; the decision itself was Redis' (its clock
//! decided the window, its stock the sell-out), so clock skew between instances does not matter.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Answers per product id, each with its deadline. Cheap to clone (the map is shared).
#[derive(Debug)]
pub struct Memo<V> {
    entries: Arc<Mutex<HashMap<u64, (V, Instant)>>>,
}

impl<V> Clone for Memo<V> {
    fn clone(&self) -> Self {
        Self { entries: self.entries.clone() }
    }
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self { entries: Arc::default() }
    }
}

/// More products than a sale page ever shows: past this, expired entries are dropped.
const PRUNE_AT: usize = 4096;

impl<V: Clone> Memo<V> {
    /// The answer kept for `product_id`, if its deadline has not passed.
    pub fn get(&self, product_id: u64, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&product_id).filter(|(_, until)| now < *until).map(|(v, _)| v.clone())
    }

    /// Keeps `value` for `product_id` for `ttl` (a zero `ttl` keeps nothing).
    pub fn put(&self, product_id: u64, value: V, now: Instant, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= PRUNE_AT {
            entries.retain(|_, (_, until)| now < *until);
        }
        entries.insert(product_id, (value, now + ttl));
    }

    /// Forgets what is kept for `product_id` (this instance learnt that it changed).
    pub fn forget(&self, product_id: u64) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&product_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_until_its_deadline_and_not_after() {
        let memo = Memo::default();
        let t0 = Instant::now();
        memo.put(7, "sold out", t0, Duration::from_millis(100));
        assert_eq!(memo.get(7, t0 + Duration::from_millis(99)), Some("sold out"));
        assert_eq!(memo.get(7, t0 + Duration::from_millis(100)), None);
        assert_eq!(memo.get(8, t0), None);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing_and_forget_drops_an_answer() {
        let memo = Memo::default();
        let t0 = Instant::now();
        memo.put(7, 1, t0, Duration::ZERO);
        assert_eq!(memo.get(7, t0), None);
        memo.put(7, 2, t0, Duration::from_secs(1));
        memo.forget(7);
        assert_eq!(memo.get(7, t0), None);
    }

    #[test]
    fn expired_entries_are_pruned_when_the_map_grows() {
        let memo = Memo::default();
        let t0 = Instant::now();
        for id in 0..PRUNE_AT as u64 {
            memo.put(id, (), t0, Duration::from_millis(1));
        }
        memo.put(u64::MAX, (), t0 + Duration::from_millis(2), Duration::from_secs(1));
        assert_eq!(memo.entries.lock().map(|e| e.len()).unwrap_or(0), 1);
    }
}
