//! Redis key names. Every key a script touches carries the product's hash tag `{p<id>}`, so a
//! script's keys live in one Redis Cluster slot; the bloom filter has its own tag `{bloom}`
//! (with its refill's staging key, which is renamed over it) because it is read only when a
//! product's keys are missing, never inside a script.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    fn product(&self, product_id: u64, suffix: &str) -> String {
        format!("{}:{{p{product_id}}}:{suffix}", self.prefix)
    }

    /// The product's current activity: window, stock, limits (hash).
    pub fn sale(&self, product_id: u64) -> String {
        self.product(product_id, "sale")
    }
    /// "<activity_id>:<user>" -> receipt (hash).
    pub fn buyers(&self, product_id: u64) -> String {
        self.product(product_id, "buyers")
    }
    /// receipt -> order message not yet acknowledged by the consumer (hash).
    pub fn outbox(&self, product_id: u64) -> String {
        self.product(product_id, "outbox")
    }
    /// receipt -> when it may be resent (sorted set).
    pub fn outbox_due(&self, product_id: u64) -> String {
        self.product(product_id, "outbox:due")
    }
    /// receipt -> resends so far (hash).
    pub fn outbox_attempts(&self, product_id: u64) -> String {
        self.product(product_id, "outbox:attempts")
    }
    /// receipt -> the order's status as the buyer polls it (hash of `KnownOrder` JSON),
    /// written by the pipeline as the order changes (see `redis::order_status`).
    pub fn order_status(&self, product_id: u64) -> String {
        self.product(product_id, "status")
    }
    /// Receipts whose unit has been given back (set): makes a restore happen once.
    pub fn restored(&self, product_id: u64) -> String {
        self.product(product_id, "restored")
    }
    /// Per-user attempt counter for this product.
    pub fn user_limit(&self, product_id: u64, user: &str) -> String {
        self.product(product_id, &format!("rl:{user}"))
    }
    /// A load's buyers or returned receipts, staged in chunks before `load_sale.lua` renames
    /// them into place (`what` is "buyers" or "restored"; `token` is the load's own).
    pub fn staged(&self, product_id: u64, token: &str, what: &str) -> String {
        self.product(product_id, &format!("staged:{token}:{what}"))
    }
    /// Held by the one caller rebuilding the sale from MySQL.
    pub fn rebuild_lock(&self, product_id: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
