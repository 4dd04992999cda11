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
//! A buyer who already has a unit must still get her receipt (`already_bought`), as `buy.lua`
//! would answer: so with "sold out" or "ended" the instance keeps a copy of the live sale's
//! buyers (`redis::buyers`), refreshed with the answer (re-read only if it changed), and a
//! buyer in it gets her receipt. One who bought within the last deadline (a returned unit sold
//! again) is not in the copy yet and hears `sold_out` until it is refreshed. A request that asks
//! not to be answered from a cache (`Cache-Control: no-cache`, what the sale page sends when it
//! resends a buy whose answer never came) always goes to Redis.
//!
//! When the deadline of a sold-out, ended or stock answer passes, one request of the instance
//! asks Redis while the others keep getting the old answer for a moment more (at most
//! [`REFRESH`]), so an instance serving many requests at once sends one call per deadline, not
//! one per request in flight. "Not open yet" is never served past its deadline (the start).
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

/// How long the others keep the old answer while one caller refreshes it (then another
/// caller tries: the first may have failed).
pub const REFRESH: Duration = Duration::from_millis(250);

/// More products than a sale page ever shows: past this, expired entries are dropped.
const PRUNE_AT: usize = 4096;

impl<V: Clone> Memo<V> {
    /// The answer kept for `product_id`, for every caller but one once its deadline has passed:
    /// the first caller after the deadline gets `None` (it asks Redis and puts the new answer),
    /// and for `refresh` after that the others still get the old answer, so many requests in
    /// flight on one instance do not all ask Redis at the same moment.
    /// An answer for which `stale_ok` is false is never served past its deadline.
    pub fn get_or_refresh(
        &self,
        product_id: u64,
        now: Instant,
        refresh: Duration,
        stale_ok: impl Fn(&V) -> bool,
    ) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (v, until) = entries.get_mut(&product_id)?;
        if now < *until {
            return Some(v.clone());
        }
        if stale_ok(v) {
            *until = now + refresh;
        }
        None
    }

    /// What was kept for `product_id`, past its deadline or not (to refresh it cheaply).
    pub fn last(&self, product_id: u64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&product_id).map(|(v, _)| v.clone())
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
        assert_eq!(memo.get_or_refresh(7, t0 + Duration::from_millis(99), Duration::ZERO, |_| false), Some("sold out"));
        assert_eq!(memo.get_or_refresh(7, t0 + Duration::from_millis(100), Duration::ZERO, |_| false), None);
        assert_eq!(memo.get_or_refresh(8, t0, Duration::ZERO, |_| false), None);
    }

    #[test]
    fn past_its_deadline_one_caller_refreshes_while_the_others_keep_the_old_answer() {
        let memo = Memo::default();
        let t0 = Instant::now();
        let refresh = Duration::from_millis(50);
        memo.put(7, "old", t0, Duration::from_millis(100));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(memo.get_or_refresh(7, later, refresh, |_| true), None, "the first caller refreshes");
        assert_eq!(memo.get_or_refresh(7, later, refresh, |_| true), Some("old"));
        assert_eq!(
            memo.get_or_refresh(7, later + refresh, refresh, |_| true),
            None,
            "a refresh that never came is retried"
        );
        memo.put(7, "new", later, Duration::from_millis(100));
        assert_eq!(memo.get_or_refresh(7, later, refresh, |_| true), Some("new"));
        assert_eq!(memo.get_or_refresh(8, later, refresh, |_| true), None);
        // An answer that must not outlive its deadline: every caller asks.
        memo.put(9, "not open", t0, Duration::from_millis(100));
        assert_eq!(memo.get_or_refresh(9, later, refresh, |_| false), None);
        assert_eq!(memo.get_or_refresh(9, later, refresh, |_| false), None);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing_and_forget_drops_an_answer() {
        let memo = Memo::default();
        let t0 = Instant::now();
        memo.put(7, 1, t0, Duration::ZERO);
        assert_eq!(memo.get_or_refresh(7, t0, Duration::ZERO, |_| false), None);
        memo.put(7, 2, t0, Duration::from_secs(1));
        memo.forget(7);
        assert_eq!(memo.get_or_refresh(7, t0, Duration::ZERO, |_| false), None);
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
