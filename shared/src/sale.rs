//! The sale's business logic over Redis and MySQL: the cache-miss rebuild (bloom filter, one
//! rebuilder at a time), warm-up, the stock view and the purchase itself.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use chrono::Utc;

use crate::{
    config::SaleConfig,
    db::{self, Db},
    domain::{Activity, OrderMessage, SaleState, UNLIMITED, UserId, to_ms},
    limiter::Limiter,
    queue::Queue,
    scripts::{BuyReply, LoadReply},
    store::{LoadMode, RedisStore, SaleLoad, StoreError},
};

/// How long one rebuilder may hold a product's lock. Longer than any rebuild should take; if
/// the holder dies, the next caller takes over after this.
const LOCK_TTL: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error("no such product")]
    ProductNotFound,
    #[error("redis is unavailable")]
    Redis(#[from] StoreError),
    #[error("mysql is unavailable")]
    Mysql(#[from] sqlx::Error),
    #[error("another caller is rebuilding the sale and did not finish in time")]
    RebuildBusy,
}

/// Redis + MySQL, as every sale path needs them.
#[derive(Clone)]
pub struct Sale {
    pub redis: RedisStore,
    pub db: Db,
    pub cfg: SaleConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockView {
    pub product_id: u64,
    pub activity_id: u64,
    pub stock: i64,
    pub unlimited: bool,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub state: SaleState,
}

fn lock_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Sale {
    /// Lists a product: the MySQL row, then its bloom filter bits.
    pub async fn list_product(&self, product: &db::NewProduct) -> Result<u64, SaleError> {
        let id = self.db.insert_product(product).await?;
        self.redis.bloom_add(id).await?;
        Ok(id)
    }

    /// Warm-up of one activity: bloom bits, then the sale. A live sale of the same activity
    /// keeps its stock (only window and limits change), so running it twice or mid-sale never
    /// hands out a unit twice; a missing one is derived from MySQL and the outbox.
    #[tracing::instrument(skip(self, activity), fields(activity_id = activity.id, product_id = activity.product_id), err)]
    pub async fn warm(&self, activity: &Activity) -> Result<LoadReply, SaleError> {
        self.redis.bloom_add(activity.product_id).await?;
        let load = self.derive_load(activity).await?;
        Ok(self.redis.load_sale(activity.product_id, LoadMode::Refresh, &load, self.cfg.negative_ttl).await?)
    }

    /// Makes sure the product's sale is in Redis. Ids the bloom filter rules out are refused
    /// without MySQL; otherwise one caller (holding the product's lock) rebuilds from MySQL
    /// while the others wait for it, up to `rebuild_wait`, then give up (503).
    #[tracing::instrument(skip(self), err)]
    pub async fn ensure_loaded(&self, product_id: u64) -> Result<(), SaleError> {
        if !self.redis.bloom_may_contain(product_id).await? {
            return Err(SaleError::ProductNotFound);
        }
        let token = lock_token();
        let deadline = Instant::now() + self.cfg.rebuild_wait;
        loop {
            if self.redis.try_lock(product_id, LOCK_TTL, &token).await? {
                let rebuilt = self.rebuild(product_id).await;
                if let Err(e) = self.redis.unlock(product_id, &token).await {
                    tracing::warn!(error = %e, "could not release the rebuild lock; it expires by itself");
                }
                return rebuilt;
            }
            tokio::time::sleep(POLL).await;
            if self.redis.sale(product_id).await?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SaleError::RebuildBusy);
            }
        }
    }

    async fn rebuild(&self, product_id: u64) -> Result<(), SaleError> {
        let Some(activity) = self.db.current_activity(product_id, Utc::now()).await? else {
            let absent = SaleLoad {
                activity_id: 0,
                stock: 0,
                starts_at_ms: 0,
                ends_at_ms: 0,
                per_user_per_min: 0,
                rate_per_sec: 0,
                burst: 0,
                seq: 0,
                buyers: vec![],
                returned: vec![],
            };
            self.redis.load_sale(product_id, LoadMode::IfMissing, &absent, self.cfg.negative_ttl).await?;
            return Err(SaleError::ProductNotFound);
        };
        let load = self.derive_load(&activity).await?;
        let reply = self.redis.load_sale(product_id, LoadMode::IfMissing, &load, self.cfg.negative_ttl).await?;
        tracing::info!(activity_id = activity.id, stock = load.stock, ?reply, "sale rebuilt from MySQL");
        Ok(())
    }

    /// What Redis should hold for an activity, derived from the record rather than copied from
    /// the activity row: a unit is taken by every outbox entry and every order, except those
    /// whose unit came back (cancelled, dead-lettered). The outbox is read before MySQL: the
    /// consumer inserts a row before it removes the entry, so no purchase falls between reads.
    async fn derive_load(&self, a: &Activity) -> Result<SaleLoad, SaleError> {
        let outbox: Vec<OrderMessage> =
            self.redis.outbox(a.product_id).await?.into_iter().filter(|m| m.activity_id == a.id).collect();
        let orders = self.db.order_keys(a.id).await?;

        let mut buyers = HashMap::new();
        let mut taken = HashSet::new();
        let mut returned = HashSet::new();
        for m in &outbox {
            buyers.insert(format!("{}:{}", a.id, m.user_id), m.receipt.clone());
            taken.insert(m.receipt.clone());
        }
        for o in orders {
            buyers.insert(format!("{}:{}", a.id, o.user_id), o.receipt.clone());
            if o.unit_returned {
                returned.insert(o.receipt);
            } else {
                taken.insert(o.receipt);
            }
        }
        let taken = taken.difference(&returned).count() as i64;
        let stock = if a.stock == UNLIMITED { UNLIMITED } else { (a.stock - taken).max(0) };
        Ok(SaleLoad {
            activity_id: a.id,
            stock,
            starts_at_ms: to_ms(a.starts_at),
            ends_at_ms: to_ms(a.ends_at),
            per_user_per_min: a.per_user_per_min,
            rate_per_sec: a.rate_limit_per_sec,
            burst: a.burst,
            seq: buyers.len() as u64,
            buyers: buyers.into_iter().collect(),
            returned: returned.into_iter().collect(),
        })
    }

    /// The product's stock as a page shows it. Redis only, unless the sale must be rebuilt.
    #[tracing::instrument(skip(self), err)]
    pub async fn stock(&self, product_id: u64) -> Result<StockView, SaleError> {
        let snap = match self.redis.sale(product_id).await? {
            Some(s) => s,
            None => {
                self.ensure_loaded(product_id).await?;
                self.redis.sale(product_id).await?.ok_or(SaleError::RebuildBusy)?
            }
        };
        if snap.activity_id == 0 {
            return Err(SaleError::ProductNotFound);
        }
        Ok(StockView {
            product_id,
            activity_id: snap.activity_id,
            stock: snap.stock,
            unlimited: snap.stock == UNLIMITED,
            starts_at_ms: snap.starts_at_ms,
            ends_at_ms: snap.ends_at_ms,
            state: SaleState::at(to_ms(Utc::now()), snap.starts_at_ms, snap.ends_at_ms),
        })
    }
}

/// What became of one press of "buy".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyOutcome {
    Queued { receipt: String, activity_id: u64 },
    SoldOut,
    AlreadyBought { receipt: String },
    NotOpen { state: SaleState, at_ms: i64 },
    RateLimited { retry_after: Duration },
}

/// The buy function's state: the sale, the `orders` queue and this instance's token buckets.
pub struct BuyService {
    pub sale: Sale,
    pub queue: Queue,
    pub limiter: Limiter,
}

impl BuyService {
    /// One atomic Lua call decides; on success the order message goes to SQS. A failed send
    /// does not undo the purchase: the outbox entry written by the same Lua call is resent by
    /// `outbox-retry`.
    #[tracing::instrument(skip(self, user), fields(user = user.as_str()), err)]
    pub async fn buy(&self, user: &UserId, product_id: u64) -> Result<BuyOutcome, SaleError> {
        if let Err(retry_after) = self.limiter.try_acquire(product_id, Instant::now()) {
            return Ok(BuyOutcome::RateLimited { retry_after });
        }
        let mut rebuilt = false;
        loop {
            let reply = self.sale.redis.buy(product_id, user.as_str(), self.sale.cfg.outbox_retry_after).await?;
            let learn = |limits| self.limiter.learn(product_id, limits, Instant::now());
            return Ok(match reply {
                BuyReply::NotLoaded if !rebuilt => {
                    self.sale.ensure_loaded(product_id).await?;
                    rebuilt = true;
                    continue;
                }
                BuyReply::NotLoaded => return Err(SaleError::RebuildBusy),
                BuyReply::NoActivity => return Err(SaleError::ProductNotFound),
                BuyReply::Queued { receipt, message, limits } => {
                    learn(limits);
                    let activity_id = match serde_json::from_str::<OrderMessage>(&message) {
                        Ok(m) => m.activity_id,
                        Err(e) => {
                            tracing::error!(error = %e, %message, "buy.lua wrote a message that does not parse");
                            0
                        }
                    };
                    if let Err(e) = self.queue.send(&message).await {
                        tracing::warn!(error = %e, %receipt, "order message not sent now; outbox-retry will resend it");
                    }
                    BuyOutcome::Queued { receipt, activity_id }
                }
                BuyReply::SoldOut { limits } => {
                    learn(limits);
                    BuyOutcome::SoldOut
                }
                BuyReply::AlreadyBought { receipt, limits } => {
                    learn(limits);
                    BuyOutcome::AlreadyBought { receipt }
                }
                BuyReply::NotStarted { starts_at_ms, limits } => {
                    learn(limits);
                    BuyOutcome::NotOpen { state: SaleState::Upcoming, at_ms: starts_at_ms }
                }
                BuyReply::Ended { ends_at_ms, limits } => {
                    learn(limits);
                    BuyOutcome::NotOpen { state: SaleState::Ended, at_ms: ends_at_ms }
                }
                BuyReply::UserLimited { retry_after_ms, limits } => {
                    learn(limits);
                    BuyOutcome::RateLimited { retry_after: Duration::from_millis(retry_after_ms.max(0) as u64) }
                }
            });
        }
    }
}

/// Builds the sale's state once per cold start (no connection is opened yet: Redis and MySQL
/// connect on first use).
pub fn connect(core: &crate::config::CoreConfig) -> Result<Sale, SaleError> {
    Ok(Sale { redis: RedisStore::new(&core.redis)?, db: Db::connect_lazy(&core.mysql)?, cfg: core.sale.clone() })
}
