//! The product bloom filter: a Redis bitmap written when a product is listed or warmed, read
//! only when a product's keys are missing. An id it rules out is refused without MySQL (cache
//! penetration); a false positive costs one MySQL lookup, then a short negative cache entry.

use redis::{AsyncCommands, Value};

use super::{RedisStore, StoreError};

/// 2^23 bits = 1 MiB of Redis. With 5 probes, 100,000 products give a false-positive rate
/// around 1e-6.
pub const BITS: u64 = 1 << 23;
pub const PROBES: u64 = 5;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Bit offsets for an id (Kirsch–Mitzenmacher double hashing).
pub fn positions(id: u64) -> impl Iterator<Item = u64> {
    let h1 = splitmix64(id);
    let h2 = splitmix64(h1 ^ 0x5851_F42D_4C95_7F2D) | 1;
    (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % BITS)
}

impl RedisStore {
    /// Sets the product's bits. Idempotent.
    #[tracing::instrument(skip(self), err)]
    pub async fn bloom_add(&self, product_id: u64) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("BITFIELD");
        cmd.arg(self.keys.bloom());
        for p in positions(product_id) {
            cmd.arg("SET").arg("u1").arg(p).arg(1);
        }
        let _: Value = cmd.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// `Some(false)` means the product was never listed; `None` means the filter itself is
    /// missing (Redis lost it): unknown, not absent. One round trip.
    #[tracing::instrument(skip(self), err)]
    pub async fn bloom_check(&self, product_id: u64) -> Result<Option<bool>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.bloom()).cmd("BITFIELD_RO").arg(self.keys.bloom());
        for p in positions(product_id) {
            pipe.arg("GET").arg("u1").arg(p);
        }
        let (exists, bits): (bool, Vec<i64>) = pipe.query_async(&mut self.conn()).await?;
        Ok(exists.then(|| !bits.is_empty() && bits.iter().all(|&b| b == 1)))
    }

    /// Sets the bits of many products in `key` (the filter, or a refill's staging key).
    async fn bloom_add_many_to(&self, key: &str, product_ids: &[u64]) -> Result<(), StoreError> {
        for chunk in product_ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let cmd = pipe.cmd("BITFIELD").arg(key);
                for p in positions(*id) {
                    cmd.arg("SET").arg("u1").arg(p).arg(1);
                }
                cmd.ignore();
            }
            let _: () = pipe.query_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Replaces the filter with one holding exactly `product_ids`, atomically: it is built
    /// under a staging key and renamed into place, so no reader ever sees a half-filled
    /// filter (which would rule out products that exist).
    #[tracing::instrument(skip(self, product_ids), fields(n = product_ids.len()), err)]
    pub async fn bloom_replace(&self, product_ids: &[u64]) -> Result<(), StoreError> {
        let staged = self.keys.bloom_staged(&super::unique_token());
        // The filter exists (full size) even for an empty catalogue: a bit beyond every probe.
        let _: () = redis::cmd("SETBIT").arg(&staged).arg(BITS).arg(0).query_async(&mut self.conn()).await?;
        let _: () = self.conn().pexpire(&staged, 60_000).await?;
        self.bloom_add_many_to(&staged, product_ids).await?;
        let _: () = redis::pipe()
            .atomic()
            .cmd("RENAME")
            .arg(&staged)
            .arg(self.keys.bloom())
            .cmd("PERSIST")
            .arg(self.keys.bloom())
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Adds products to the live filter (those listed while a refill was being built).
    #[tracing::instrument(skip(self, product_ids), fields(n = product_ids.len()), err)]
    pub async fn bloom_add_many(&self, product_ids: &[u64]) -> Result<(), StoreError> {
        self.bloom_add_many_to(&self.keys.bloom(), product_ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_stable_and_in_range() {
        let a: Vec<u64> = positions(1001).collect();
        assert_eq!(a, positions(1001).collect::<Vec<_>>());
        assert_eq!(a.len() as u64, PROBES);
        assert!(a.iter().all(|&p| p < BITS));
        assert_ne!(a, positions(1002).collect::<Vec<_>>());
    }

    #[test]
    fn false_positive_rate_is_low_for_a_large_catalogue() {
        let mut bits = vec![false; BITS as usize];
        for id in 1..=100_000u64 {
            for p in positions(id) {
                bits[p as usize] = true;
            }
        }
        let fp = (1_000_000..1_200_000u64).filter(|&id| positions(id).all(|p| bits[p as usize])).count();
        assert!(fp < 10, "{fp} false positives in 200,000 unknown ids");
    }
}
