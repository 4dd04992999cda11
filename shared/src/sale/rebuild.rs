//! The cache-miss rebuild: ids the bloom filter rules out are refused without MySQL; otherwise
//! one caller (holding the product's lock) rebuilds from MySQL while the others wait for it.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::Utc;

use super::{Sale, SaleError};
use crate::{
    domain::{Activity, Shard, UNLIMITED, to_ms},
    redis::scripts::load_sale::{LoadMode, SaleLoad},
};

/// How long one rebuilder may hold a product's lock. Longer than any rebuild should take; if
/// the holder dies, the next caller takes over after this.
const LOCK_TTL: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);
/// Readings of a split sale's buckets before a derive gives up (units kept moving: 503).
const DERIVE_TRIES: usize = 5;

/// Work that one caller does while the others wait for it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Flight {
    /// Rebuild a product's sale from MySQL (the buckets Redis lost): done when this bucket is
    /// back.
    Sale(Shard),
    /// Refill the lost bloom filter from MySQL.
    Bloom,
}

impl Sale {
    /// Makes sure the product's sale is in Redis. Ids the bloom filter rules out are refused
    /// without MySQL; otherwise one caller (holding the product's lock) rebuilds from MySQL
    /// while the others wait for it, up to `rebuild_wait`, then give up (503).
    #[tracing::instrument(skip(self), err)]
    pub async fn ensure_loaded(&self, shard: impl Into<Shard> + std::fmt::Debug) -> Result<(), SaleError> {
        let shard = shard.into();
        if !self.product_may_exist(shard.product_id).await? {
            return Err(SaleError::ProductNotFound);
        }
        self.single_flight(Flight::Sale(shard)).await
    }

    /// Does `flight`'s work as the one holder of its lock, or waits for the holder until the
    /// work is seen done (up to `rebuild_wait`, then `RebuildBusy`: 503). A holder that dies
    /// frees the lock after `LOCK_TTL`.
    /// Boxed, so that every caller's future stays shallow (the hot paths, the sweep and the
    /// order lookups all reach it; nested, their types overflow the compiler's layout limit).
    pub(super) fn single_flight(
        &self,
        flight: Flight,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SaleError>> + Send + '_>> {
        Box::pin(async move {
            let lock = match flight {
                Flight::Sale(shard) => self.redis.keys().rebuild_lock(shard.product_id),
                Flight::Bloom => self.redis.keys().bloom_lock(),
            };
            let token = crate::redis::unique_token();
            let deadline = Instant::now() + self.cfg.rebuild_wait;
            loop {
                if self.redis.try_lock(&lock, LOCK_TTL, &token).await? {
                    let result = match flight {
                        Flight::Sale(shard) => self.rebuild(shard.product_id).await,
                        Flight::Bloom => self.refill_bloom().await,
                    };
                    match self.redis.unlock(&lock, &token).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(lock, "the work outlived its lock"),
                        Err(e) => tracing::warn!(error = %e, lock, "could not release the lock; it expires by itself"),
                    }
                    return result;
                }
                tokio::time::sleep(POLL).await;
                let done = match flight {
                    Flight::Sale(shard) => self.redis.sale(shard).await?.is_some(),
                    Flight::Bloom => self.redis.bloom_check(0).await?.is_some(),
                };
                if done {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(SaleError::RebuildBusy);
                }
            }
        })
    }

    /// Writes the buckets Redis lost (all of them, or some of a split sale) from MySQL, the
    /// outboxes and the buckets that survived; a bucket another caller wrote meanwhile is left
    /// alone (`if_missing`).
    #[tracing::instrument(skip(self), err)]
    async fn rebuild(&self, product_id: u64) -> Result<(), SaleError> {
        let Some(activity) = self.db.current_activity(product_id, Utc::now()).await? else {
            self.redis
                .load_sale(
                    product_id,
                    LoadMode::IfMissing,
                    &SaleLoad::absent(),
                    self.cfg.negative_ttl,
                    self.cfg.retention,
                )
                .await?;
            return Err(SaleError::ProductNotFound);
        };
        for (shard, load) in self.derive_loads(&activity).await? {
            if load.live {
                continue;
            }
            let reply = self
                .redis
                .load_sale(shard, LoadMode::IfMissing, &load.load, self.cfg.negative_ttl, self.cfg.retention)
                .await?;
            tracing::info!(
                activity_id = activity.id,
                bucket = shard.bucket,
                stock = load.load.stock,
                ?reply,
                "sale rebuilt from MySQL"
            );
        }
        Ok(())
    }

    /// What Redis should hold for an activity, bucket by bucket, derived from the record rather
    /// than copied from the activity row: a unit is taken by every outbox entry and every order,
    /// except those whose unit came back (cancelled, dead-lettered). Each bucket's outbox is read
    /// before MySQL: the consumer inserts a row before it removes the entry, so no purchase falls
    /// between reads. Each bucket's `ver` is read with its outbox: its load is a compare-and-set
    /// on it.
    ///
    /// The units left are shared out evenly when no bucket holds the activity (a first load,
    /// or Redis lost everything). When some do (Redis lost some buckets of a split sale), the
    /// lost ones share what the survivors and the moves on their way do not hold; the survivors
    /// are read twice and the reading is redone if a unit moved between them meanwhile. A
    /// purchase a survivor makes while this reads is counted twice (in its stock, then in
    /// MySQL), never not at all: a rebuilt bucket can come back short by such a purchase,
    /// never over. The
    /// buckets of an earlier split into another number are written empty with the new number,
    /// so an instance that still believes in them is told the right one.
    #[tracing::instrument(skip(self, a), fields(activity_id = a.id), err)]
    pub(super) async fn derive_loads(&self, a: &Activity) -> Result<Vec<(Shard, BucketLoad)>, SaleError> {
        for _ in 0..DERIVE_TRIES {
            if let Some(loads) = self.derive_loads_once(a).await? {
                return Ok(loads);
            }
            tracing::info!("units moved between buckets while they were read; reading again");
        }
        Err(SaleError::RebuildBusy)
    }

    /// One reading for [`Self::derive_loads`]; `None` when units moved between the surviving
    /// buckets while they were read.
    async fn derive_loads_once(&self, a: &Activity) -> Result<Option<Vec<(Shard, BucketLoad)>>, SaleError> {
        let n = a.buckets.max(1);
        let home = self.redis.sale_and_outbox(a.product_id).await?;
        let mut shards: Vec<Shard> = Shard::all(a.product_id, n).collect();
        // An earlier split of this product into another number of buckets (changed before the
        // sale opened): its buckets are written empty with the new number.
        if home.buckets != n {
            shards.extend((1..home.buckets).map(|bucket| Shard {
                product_id: a.product_id,
                bucket,
                buckets: home.buckets,
            }));
        }
        let mut reads = vec![home];
        for shard in &shards[1..] {
            reads.push(self.redis.sale_and_outbox(*shard).await?);
        }
        let orders = self.db.order_keys(a.id).await?;

        let index = |receipt: &str| {
            let s = crate::redis::shard_of(a.product_id, receipt);
            if s.bucket < n && (s.bucket == 0 || s.buckets == n) { usize::from(s.bucket) } else { 0 }
        };
        let mut buyers: Vec<HashMap<String, String>> = vec![HashMap::new(); shards.len()];
        let mut returned: Vec<HashSet<String>> = vec![HashSet::new(); shards.len()];
        let mut taken = HashSet::new();
        for read in &reads {
            for m in read.outbox.iter().filter(|m| m.activity_id == a.id) {
                buyers[index(&m.receipt)].insert(format!("{}:{}", a.id, m.user_id), m.receipt.clone());
                taken.insert(m.receipt.clone());
            }
        }
        for o in orders {
            let i = index(&o.receipt);
            buyers[i].insert(format!("{}:{}", a.id, o.user_id), o.receipt.clone());
            if o.unit_returned {
                returned[i].insert(o.receipt);
            } else {
                taken.insert(o.receipt);
            }
        }
        let all_returned: HashSet<&String> = returned.iter().flatten().collect();
        let taken = taken.iter().filter(|r| !all_returned.contains(r)).count() as i64;
        let left = (a.stock - taken).max(0);
        let seq = buyers.iter().map(HashMap::len).sum::<usize>() as u64;

        // A bucket holds the activity as split now; one split otherwise is being split anew.
        let held: Vec<bool> = (0..shards.len())
            .map(|i| i < usize::from(n) && reads[i].buckets == n && reads[i].live.is_some_and(|(id, _)| id == a.id))
            .collect();
        let mut survivors = 0;
        for i in (0..shards.len()).filter(|&i| held[i]) {
            survivors += reads[i].live.map_or(0, |(_, s)| s.max(0)) + self.redis.in_transit(&reads[i].moving).await?;
        }
        let lost: Vec<usize> = (0..usize::from(n)).filter(|&i| !held[i]).collect();
        // The survivors' units only count if no unit moved between them while they were read
        // (one by one, on different primaries): read again, after the units on their way were
        // counted; a bucket that gained a unit (`gen`) or whose out-log changed means a move
        // ran meanwhile, and the whole reading is done again. Sales only take units away, so
        // a sale between the readings counts a unit twice (short, never over).
        if !lost.is_empty() && lost.len() < usize::from(n) {
            for i in (0..shards.len()).filter(|&i| held[i]) {
                let again = self.redis.bucket_stock(shards[i]).await?;
                let ids = |moves: &[crate::redis::PendingMove]| moves.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
                let same = again
                    .is_some_and(|b| b.generation == reads[i].generation && ids(&b.moving) == ids(&reads[i].moving));
                if !same {
                    return Ok(None);
                }
            }
        }
        let mut shares = vec![0i64; shards.len()];
        if lost.len() == usize::from(n) {
            // No bucket holds it: the units left shared out evenly (a first load, or all lost).
            for (i, share) in shares.iter_mut().take(usize::from(n)).enumerate() {
                *share = left / i64::from(n) + i64::from((i as i64) < left % i64::from(n));
            }
        } else if !lost.is_empty() {
            let rest = (left - survivors).max(0);
            let k = lost.len() as i64;
            for (j, &i) in lost.iter().enumerate() {
                shares[i] = rest / k + i64::from((j as i64) < rest % k);
            }
        }
        Ok(Some(
            shards
                .into_iter()
                .zip(reads)
                .enumerate()
                .map(|(i, (shard, read))| {
                    let live = held[i];
                    let load = SaleLoad {
                        activity_id: a.id,
                        stock: if a.stock == UNLIMITED {
                            UNLIMITED
                        } else if i < usize::from(n) {
                            shares[i]
                        } else {
                            0
                        },
                        starts_at_ms: to_ms(a.starts_at),
                        ends_at_ms: to_ms(a.ends_at),
                        per_user_per_min: a.per_user_per_min,
                        rate_per_sec: a.rate_limit_per_sec,
                        burst: a.burst,
                        seq,
                        buckets: n,
                        buyers: std::mem::take(&mut buyers[i]).into_iter().collect(),
                        returned: std::mem::take(&mut returned[i]).into_iter().collect(),
                        read_version: read.version,
                    };
                    (shard, BucketLoad { load, live })
                })
                .collect(),
        ))
    }
}

/// One bucket's load, and whether that bucket holds the activity already (a rebuild leaves it).
#[derive(Debug, Clone)]
pub(super) struct BucketLoad {
    pub load: SaleLoad,
    pub live: bool,
}
