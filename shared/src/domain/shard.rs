//! Stock buckets. One activity may split its stock into `buckets` parts, each under its own
//! Redis hash tag (so the parts land on different cluster primaries, see `redis::keys`). A
//! [`Shard`] is one part: every key a script touches for it carries its tag.
//!
//! A user always meets the same bucket ([`Shard::of_user`]): her per-user limit, her buyer
//! record and her purchase's outbox entry live in it, so one-per-user holds across buckets
//! without a cross-slot operation. A receipt names the bucket that sold it (`.{bucket}.{buckets}`
//! after the number, nothing for bucket 0), so everything that later touches a purchase (the
//! consumer's ack, the order status, a restore, the outbox) finds its shard from the receipt
//! alone. Bucket 0's keys are the product's keys of before buckets existed: with one bucket
//! nothing changes, receipts included.

/// Most buckets an activity may have (an admin picks 1 to this).
pub const MAX_BUCKETS: u16 = 16;

/// One bucket of one product's sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub product_id: u64,
    /// 0-based; bucket 0 is the product's home (its keys do not depend on `buckets`).
    pub bucket: u16,
    /// How many buckets the sale has (1 = no split).
    pub buckets: u16,
}

impl From<u64> for Shard {
    /// The product's home bucket.
    fn from(product_id: u64) -> Self {
        Self::home(product_id)
    }
}

impl Shard {
    pub fn home(product_id: u64) -> Self {
        Self { product_id, bucket: 0, buckets: 1 }
    }

    /// Every bucket of a sale with `buckets` buckets, home first.
    pub fn all(product_id: u64, buckets: u16) -> impl Iterator<Item = Shard> {
        let buckets = buckets.max(1);
        (0..buckets).map(move |bucket| Self { product_id, bucket, buckets })
    }

    /// The bucket `user` always meets in a sale of `buckets` buckets (FNV-1a of the id: stable
    /// across processes and releases, unlike std's hasher).
    pub fn of_user(product_id: u64, user: &str, buckets: u16) -> Self {
        let buckets = buckets.max(1);
        let hash =
            user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        Self { product_id, bucket: (hash % u64::from(buckets)) as u16, buckets }
    }

    /// What `buy.lua` appends to the receipt's number: nothing for the home bucket.
    pub fn receipt_suffix(&self) -> String {
        if self.bucket == 0 { String::new() } else { format!(".{}.{}", self.bucket, self.buckets) }
    }

    /// The shard that sold `receipt` (`{activity}-{product}-{user}-{n}[.{bucket}.{buckets}]`),
    /// if the receipt is well formed.
    pub fn of_receipt(receipt: &str) -> Option<Shard> {
        let product_id = receipt_product(receipt)?;
        let (_, number) = receipt.rsplit_once('-')?;
        let mut parts = number.split('.');
        parts.next()?;
        Self::with_suffix(product_id, parts)
    }

    /// A short name for lists of shards kept in Redis (`outbox-retry`'s): `7` for the home
    /// bucket, `7.2.3` for bucket 2 of 3.
    pub fn label(&self) -> String {
        if self.bucket == 0 {
            self.product_id.to_string()
        } else {
            format!("{}.{}.{}", self.product_id, self.bucket, self.buckets)
        }
    }

    pub fn from_label(label: &str) -> Option<Shard> {
        let mut parts = label.split('.');
        let product_id = parts.next()?.parse().ok().filter(|id| super::valid_id(*id))?;
        Self::with_suffix(product_id, parts)
    }

    /// The shard named by what follows a receipt's number or a label's product id: nothing
    /// (the home bucket) or `<bucket>.<buckets>`.
    fn with_suffix<'a>(product_id: u64, mut parts: impl Iterator<Item = &'a str>) -> Option<Shard> {
        match (parts.next(), parts.next(), parts.next()) {
            (None, None, None) => Some(Self::home(product_id)),
            (Some(b), Some(n), None) => {
                let (bucket, buckets) = (b.parse::<u16>().ok()?, n.parse::<u16>().ok()?);
                (bucket >= 1 && bucket < buckets && buckets <= MAX_BUCKETS).then_some(Self {
                    product_id,
                    bucket,
                    buckets,
                })
            }
            _ => None,
        }
    }
}

/// The product id a receipt names (`{activity}-{product}-{user}-{n}`), if it is well formed.
pub fn receipt_product(receipt: &str) -> Option<u64> {
    if receipt.is_empty() || receipt.len() > 255 {
        return None;
    }
    let mut parts = receipt.splitn(3, '-');
    let activity = parts.next()?;
    let product = parts.next()?;
    let rest = parts.next()?;
    if !activity.bytes().all(|b| b.is_ascii_digit()) || rest.rsplit_once('-').is_none() {
        return None;
    }
    product.parse().ok().filter(|id| super::valid_id(*id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_name_their_product() {
        assert_eq!(receipt_product("3-7-alice-100"), Some(7));
        assert_eq!(receipt_product("3-7-user-with-dashes-u12"), Some(7));
        assert_eq!(receipt_product("3-7-alice"), None);
        assert_eq!(receipt_product("x-7-alice-1"), None);
        assert_eq!(receipt_product("3-0-alice-1"), None);
        assert_eq!(receipt_product(""), None);
    }

    #[test]
    fn a_receipt_names_the_bucket_that_sold_it() {
        assert_eq!(Shard::of_receipt("3-7-alice-100"), Some(Shard::home(7)));
        assert_eq!(Shard::of_receipt("3-7-a-b.c-100.2.3"), Some(Shard { product_id: 7, bucket: 2, buckets: 3 }));
        assert_eq!(Shard::of_receipt("3-7-alice-u5.1.2"), Some(Shard { product_id: 7, bucket: 1, buckets: 2 }));
        for bad in
            ["3-7-alice-100.3.3", "3-7-alice-100.0.3", "3-7-alice-100.1", "3-7-alice-1.1.99", "3-7-alice-1.1.2.3"]
        {
            assert_eq!(Shard::of_receipt(bad), None, "{bad}");
        }
        let s = Shard { product_id: 7, bucket: 2, buckets: 3 };
        assert_eq!(Shard::of_receipt(&format!("3-7-alice-100{}", s.receipt_suffix())), Some(s));
        assert_eq!(Shard::home(7).receipt_suffix(), "");
    }

    #[test]
    fn a_user_always_meets_the_same_bucket_and_users_spread_over_all() {
        let mut seen = [0u32; 3];
        for i in 0..3000 {
            let user = format!("user-{i}");
            let s = Shard::of_user(7, &user, 3);
            assert_eq!(s, Shard::of_user(7, &user, 3));
            seen[s.bucket as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(Shard::of_user(7, "anyone", 1), Shard::home(7));
    }

    #[test]
    fn labels_round_trip() {
        for s in [Shard::home(7), Shard { product_id: 7, bucket: 2, buckets: 3 }] {
            assert_eq!(Shard::from_label(&s.label()), Some(s));
        }
        assert_eq!(Shard::from_label("7.0.3"), None);
        assert_eq!(Shard::from_label("x"), None);
        // Bucket 0's keys (and label) do not depend on how many buckets there are.
        assert_eq!(Shard { product_id: 7, bucket: 0, buckets: 3 }.label(), Shard::home(7).label());
    }
}
