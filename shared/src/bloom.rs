//! The product bloom filter: a Redis bitmap written when a product is listed or warmed, read
//! only when a product's keys are missing. An id it rules out is refused without MySQL (cache
//! penetration); a false positive costs one MySQL lookup, then a short negative cache entry.

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
