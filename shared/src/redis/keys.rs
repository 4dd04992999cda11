//! Redis key names. Every key a script touches carries the product's hash tag `{p<id>}`, so a
//! script's keys live in one Redis Cluster slot; the bloom filter has its own tag `{bloom}`
//! (with its refill's staging key, which is renamed over it) because it is read only when a
//! product's keys are missing, never inside a script.
//!
//! A sale split into buckets (`domain::shard`) has one tag per bucket: bucket 0 keeps `{p<id>}`,
//! bucket `b` of `n` gets `{p<id>.<b>.<salt>}` with the smallest salt whose slot falls in the
//! `b`-th `n`-th of the slot space after bucket 0's. A cluster's primaries hold contiguous, near
//! equal slot ranges (what `--cluster create` and MemoryDB make), so `n` buckets on `n`
//! primaries land on `n` different primaries; on more primaries they still spread. Every
//! process computes the same tags, with no lookup.

use crate::domain::Shard;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    fn product(&self, shard: impl Into<Shard>, suffix: &str) -> String {
        format!("{}:{{{}}}:{suffix}", self.prefix, tag(shard.into()))
    }

    /// The product's current activity: window, stock, limits (hash).
    pub fn sale(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "sale")
    }
    /// "<activity_id>:<user>" -> receipt (hash).
    pub fn buyers(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "buyers")
    }
    /// receipt -> order message not yet acknowledged by the consumer (hash).
    pub fn outbox(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "outbox")
    }
    /// receipt -> when it may be resent (sorted set).
    pub fn outbox_due(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "outbox:due")
    }
    /// receipt -> resends so far (hash).
    pub fn outbox_attempts(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "outbox:attempts")
    }
    /// receipt -> the order's status as the buyer polls it (hash of `KnownOrder` JSON),
    /// written by the pipeline as the order changes (see `redis::order_status`).
    pub fn order_status(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "status")
    }
    /// Receipts whose unit has been given back (set): makes a restore happen once.
    pub fn restored(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "restored")
    }
    /// Per-user attempt counter for this product.
    pub fn user_limit(&self, product_id: impl Into<Shard>, user: &str) -> String {
        self.product(product_id, &format!("rl:{user}"))
    }
    /// A load's buyers or returned receipts, staged in chunks before `load_sale.lua` renames
    /// them into place (`what` is "buyers" or "restored"; `token` is the load's own).
    pub fn staged(&self, product_id: impl Into<Shard>, token: &str, what: &str) -> String {
        self.product(product_id, &format!("staged:{token}:{what}"))
    }
    /// Units a rebalance took from this bucket and has not yet seen given (hash: move id ->
    /// "<to bucket>:<units>"); see `sale::rebalance`.
    pub fn moves_out(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "moves:out")
    }
    /// Moves this bucket has been given (hash: move id -> units): makes a give happen once.
    pub fn moves_in(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "moves:in")
    }
    /// Held by the one caller rebuilding the sale from MySQL.
    pub fn rebuild_lock(&self, product_id: impl Into<Shard>) -> String {
        self.product(product_id, "lock")
    }
    /// Products whose outbox still had entries at the end of an `outbox-retry` run (set): they
    /// are visited until it is empty, however long ago their activity ended.
    pub fn outbox_products(&self) -> String {
        format!("{}:outbox:products", self.prefix)
    }
    /// Held by the one caller refilling a lost bloom filter from MySQL.
    pub fn bloom_lock(&self) -> String {
        format!("{}:bloom:lock", self.prefix)
    }
    /// Bitmap of every listed product id (its own hash tag: one slot, apart from products).
    pub fn bloom(&self) -> String {
        format!("{}:{{bloom}}:products", self.prefix)
    }
    /// A refill's filter while it is built; renamed over [`Self::bloom`] (same slot) when full.
    pub fn bloom_staged(&self, token: &str) -> String {
        format!("{}:{{bloom}}:staged:{token}", self.prefix)
    }
}

const SLOTS: u32 = 16384;

/// The hash tag of a shard (without braces).
fn tag(shard: Shard) -> String {
    let home = format!("p{}", shard.product_id);
    if shard.bucket == 0 {
        return home;
    }
    let n = u32::from(shard.buckets.max(1));
    let part = |slot: u16| u32::from(slot) * n / SLOTS;
    let wanted = (part(slot(home.as_bytes())) + u32::from(shard.bucket)) % n;
    // A slot falls in the wanted part with probability 1/n: a handful of tries.
    (0u32..)
        .map(|salt| format!("{home}.{}.{salt}", shard.bucket))
        .find(|t| part(slot(t.as_bytes())) == wanted)
        .unwrap_or(home)
}

/// Redis Cluster's slot of a hash tag's content: CRC16 (XMODEM) mod 16384.
pub fn slot(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % SLOTS as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // CLUSTER KEYSLOT on a real server: foo 12182, bar 5061, 123456789 12739.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"123456789"), 12739);
    }

    #[test]
    fn the_buckets_of_a_sale_fall_in_different_thirds_of_the_slot_space() {
        let k = Keys::new("fs");
        for product_id in 1..200u64 {
            let mut thirds: Vec<u32> = Shard::all(product_id, 3)
                .map(|s| {
                    let key = k.sale(s);
                    let t = &key[key.find('{').unwrap_or(0) + 1..key.find('}').unwrap_or(0)];
                    u32::from(slot(t.as_bytes())) * 3 / SLOTS
                })
                .collect();
            thirds.sort_unstable();
            assert_eq!(thirds, vec![0, 1, 2], "product {product_id}");
        }
        assert_eq!(k.sale(Shard { product_id: 7, bucket: 0, buckets: 3 }), k.sale(7));
        assert_eq!(k.sale(7), "fs:{p7}:sale");
    }

    #[test]
    fn every_key_of_one_product_shares_its_hash_tag() {
        let k = Keys::new("fs");
        for key in [
            k.sale(7),
            k.buyers(7),
            k.outbox(7),
            k.outbox_due(7),
            k.outbox_attempts(7),
            k.restored(7),
            k.user_limit(7, "u1"),
            k.staged(7, "tok", "buyers"),
        ] {
            assert!(key.contains("{p7}"), "{key}");
        }
        assert!(k.bloom().contains("{bloom}") && k.bloom_staged("t").contains("{bloom}"));
        assert_ne!(k.sale(7), k.sale(71));
    }
}
