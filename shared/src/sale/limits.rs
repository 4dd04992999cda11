//! The per-instance token bucket, a pre-filter in front of Redis. The activity's limit itself
//! is enforced across all instances inside `buy.lua` (a token bucket in the sale's hash on
//! Redis' clock), so this one limits nothing globally: with N instances it admits up to N × the
//! rate. It stays because it costs no round trip and turns away, before Redis, whatever one
//! instance receives beyond the activity's whole rate — requests the global bucket would refuse
//! anyway. Its rate and burst come from the activity, carried back by each Lua reply.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::redis::scripts::buy::Limits;

#[derive(Debug)]
struct Bucket {
    limits: Limits,
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<u64, Bucket>>,
}

impl Limiter {
    /// Takes a token for `product_id`, or says how long until one is there. A product whose
    /// limits this instance has not yet learnt is not limited.
    pub fn try_acquire(&self, product_id: u64, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(b) = buckets.get_mut(&product_id) else { return Ok(()) };
        if b.limits.rate_per_sec == 0 {
            return Ok(());
        }
        let rate = f64::from(b.limits.rate_per_sec);
        let burst = f64::from(b.limits.burst.max(1));
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    /// The activity whose limits this instance last learnt for the product.
    pub fn activity(&self, product_id: u64) -> Option<u64> {
        let buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.get(&product_id).map(|b| b.limits.activity_id)
    }

    /// Follows the activity's current limits.
    pub fn learn(&self, product_id: u64, limits: Limits, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match buckets.get_mut(&product_id) {
            Some(b) if b.limits == limits => {}
            Some(b) => {
                b.limits = limits;
                b.tokens = b.tokens.min(f64::from(limits.burst.max(1)));
            }
            None => {
                buckets.insert(product_id, Bucket { limits, tokens: f64::from(limits.burst.max(1)), last: now });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuses_then_refills_at_the_rate() {
        let l = Limiter::default();
        let t0 = Instant::now();
        l.learn(1, Limits { rate_per_sec: 10, burst: 3, activity_id: 1 }, t0);
        for _ in 0..3 {
            assert!(l.try_acquire(1, t0).is_ok());
        }
        let wait = l.try_acquire(1, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.try_acquire(1, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.try_acquire(1, t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn an_unknown_product_is_not_limited_and_limits_follow_changes() {
        let l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.try_acquire(9, t0).is_ok());
        l.learn(9, Limits { rate_per_sec: 1, burst: 1, activity_id: 1 }, t0);
        assert!(l.try_acquire(9, t0).is_ok());
        assert!(l.try_acquire(9, t0).is_err());
        l.learn(9, Limits { rate_per_sec: 1000, burst: 1, activity_id: 1 }, t0);
        assert!(l.try_acquire(9, t0 + Duration::from_millis(2)).is_ok());
    }
}
