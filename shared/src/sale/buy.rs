//! One press of "buy": an answer this instance already knows (sold out, not open, ended:
//! [`super::memo`]), the instance's token bucket, then one atomic Lua call decides; on success
//! the order message goes to SQS.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{
    Sale, SaleError,
    limits::Limiter,
    memo::{self, Memo},
};
use crate::{
    domain::{SaleState, Shard, UserId},
    redis::{
        buyers::{BuyersRead, LiveBuyers},
        scripts::buy::{BuyReply, Limits},
    },
    sqs::Queue,
};

/// What became of one press of "buy".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyOutcome {
    Queued { receipt: String, activity_id: u64 },
    SoldOut,
    AlreadyBought { receipt: String },
    NotOpen { state: SaleState, at_ms: i64 },
    RateLimited { retry_after: Duration },
}

/// An outcome and the activity that decided it (`None`: this instance turned the press away
/// before any sale was asked, e.g. its own token bucket before it learnt the activity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: BuyOutcome,
    pub activity_id: Option<u64>,
}

/// The buy function's state: the sale, the `orders` queue, this instance's token buckets and
/// the answers it keeps for a while.
pub struct BuyService {
    pub sale: Sale,
    pub queue: Queue,
    pub limiter: Limiter,
    pub memo: Memo<Known>,
    /// How many stock buckets each product's sale has, as this instance last learnt it (1
    /// until a reply says otherwise: `buy.lua` answers a wrong belief with the right number).
    pub buckets: Mutex<HashMap<u64, u16>>,
}

/// An answer this instance keeps for a while, with the buyers of a sold-out or ended sale (who
/// get their receipt, not the answer).
#[derive(Debug, Clone)]
pub struct Known {
    outcome: BuyOutcome,
    activity_id: Option<u64>,
    buyers: Option<Arc<LiveBuyers>>,
}

impl Known {
    fn answer(&self, user: &UserId) -> Decision {
        let outcome = match self.buyers.as_ref().and_then(|b| b.receipts.get(user.as_str())) {
            Some(receipt) => BuyOutcome::AlreadyBought { receipt: receipt.clone() },
            None => self.outcome.clone(),
        };
        Decision { outcome, activity_id: self.activity_id }
    }
}

/// Whether a press of "buy" may be answered from what this instance already knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Sold out, not open or ended may come from the instance's memo.
    MayUseMemo,
    /// Ask Redis (`Cache-Control: no-cache`): a resend whose first answer never came must
    /// learn whether it bought, which no memo knows.
    Fresh,
}

impl BuyService {
    pub fn new(sale: Sale, queue: Queue) -> Self {
        Self { sale, queue, limiter: Limiter::default(), memo: Memo::default(), buckets: Mutex::default() }
    }

    fn buckets_of(&self, product_id: u64) -> u16 {
        let known = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        known.get(&product_id).copied().unwrap_or(1)
    }

    fn forget_buckets(&self, product_id: u64) {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&product_id);
    }

    fn learn_buckets(&self, product_id: u64, buckets: u16) {
        let mut known = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        known.insert(product_id, buckets.max(1));
    }

    /// Keeps an answer Redis gave that holds for every user of the sale for a while (with the
    /// sale's buyers, where it is sold out or ended). If the buyers cannot be read, nothing is
    /// kept: the next request asks Redis again.
    async fn remember(&self, product_id: u64, decision: &Decision) {
        let outcome = &decision.outcome;
        let cfg = &self.sale.cfg;
        let (ttl, with_buyers) = match outcome {
            BuyOutcome::SoldOut | BuyOutcome::NotOpen { state: SaleState::Ended, .. } => (cfg.memo_ttl, true),
            // Nobody can have bought from an activity that has not started.
            BuyOutcome::NotOpen { state: SaleState::Upcoming, at_ms } => {
                // Until the start Redis gave (measured on this instance's clock, which only
                // shortens or lengthens the wait by the skew), at most the configured bound.
                let until_start = at_ms.saturating_sub(crate::domain::to_ms(chrono::Utc::now()));
                (Duration::from_millis(u64::try_from(until_start).unwrap_or(0)).min(cfg.memo_upcoming_max), false)
            }
            // A unit was there after all (units came back): what this instance kept is stale.
            BuyOutcome::Queued { .. } => return self.memo.forget(product_id),
            // Says nothing about the sale as a whole.
            BuyOutcome::AlreadyBought { .. }
            | BuyOutcome::RateLimited { .. }
            | BuyOutcome::NotOpen { state: SaleState::Open, .. } => return,
        };
        if ttl.is_zero() {
            return;
        }
        let buyers = if with_buyers {
            let previous = self.memo.last(product_id).and_then(|k| k.buyers);
            match self.sale.redis.live_buyers(product_id, self.buckets_of(product_id), previous.as_deref()).await {
                Ok(BuyersRead::Read(b)) => Some(Arc::new(b)),
                Ok(BuyersRead::Unchanged) => previous,
                Ok(BuyersRead::NotLoaded) => return,
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), product_id, "buyers not read; nothing kept");
                    return;
                }
            }
        } else {
            None
        };
        let known = Known { outcome: outcome.clone(), activity_id: decision.activity_id, buyers };
        self.memo.put(product_id, known, Instant::now(), ttl);
    }
}

impl BuyService {
    /// One atomic Lua call decides; on success the order message goes to SQS. A failed send
    /// does not undo the purchase: the outbox entry written by the same Lua call is resent by
    /// `outbox-retry`. A purchase the replicas did not confirm in time (`REDIS_WAIT_REPLICAS`)
    /// is answered 503 and not sent: if its primary dies it is gone with its unit and buyer
    /// record (nothing was promised); if not, `outbox-retry` sends it and a retry of the buy
    /// answers `already_bought` with its receipt.
    #[tracing::instrument(skip(self, user), fields(user = user.as_str()), err)]
    pub async fn buy(&self, user: &UserId, product_id: u64, freshness: Freshness) -> Result<Decision, SaleError> {
        let now = Instant::now();
        if freshness == Freshness::MayUseMemo
            && let Some(known) = self.memo.get_or_refresh(product_id, now, memo::REFRESH, |k| {
                !matches!(k.outcome, BuyOutcome::NotOpen { state: SaleState::Upcoming, .. })
            })
        {
            return Ok(known.answer(user));
        }
        if let Err(retry_after) = self.limiter.try_acquire(product_id, now) {
            let activity_id = self.limiter.activity(product_id);
            return Ok(Decision { outcome: BuyOutcome::RateLimited { retry_after }, activity_id });
        }
        let decision = self.ask_redis(user, product_id).await?;
        self.remember(product_id, &decision).await;
        Ok(decision)
    }

    /// The user's bucket decides (one round trip in the common case). Asked with a wrong number
    /// of buckets, it names the right one and the call goes again; found empty, the caller
    /// refills it or waits for the refill (`sale::rebalance`), up to `BUCKET_REFILL_WAIT_MS`.
    async fn ask_redis(&self, user: &UserId, product_id: u64) -> Result<Decision, SaleError> {
        let mut rebuilt = false;
        let mut verified = false;
        let mut relearnt = 0;
        let refill_deadline = Instant::now() + self.sale.cfg.bucket_refill_wait;
        loop {
            let shard = Shard::of_user(product_id, user.as_str(), self.buckets_of(product_id));
            let reply = self.sale.redis.buy(shard, user.as_str(), self.sale.cfg.outbox_retry_after).await?;
            let learn = |limits: Limits| {
                self.limiter.learn(product_id, limits, Instant::now());
                Some(limits.activity_id)
            };
            let (outcome, activity_id) = match reply {
                // A bucket other than the home one that is gone or holds an ended sale may be
                // an earlier split this instance still believes in (a later activity of the
                // product split otherwise): ask the home bucket what the sale is now, once.
                BuyReply::NotLoaded | BuyReply::Ended { .. } if shard.bucket != 0 && !verified => {
                    self.forget_buckets(product_id);
                    verified = true;
                    continue;
                }
                BuyReply::NotLoaded if !rebuilt => {
                    self.sale.ensure_loaded(shard).await?;
                    rebuilt = true;
                    continue;
                }
                // Twice is enough for any real change (it happens only before a sale opens).
                BuyReply::WrongBuckets { buckets } if relearnt < 2 => {
                    self.learn_buckets(product_id, buckets);
                    relearnt += 1;
                    continue;
                }
                BuyReply::WrongBuckets { .. } => return Err(SaleError::RebuildBusy),
                // The lease is this caller's now: it refills (and frees the lease) even when
                // its own wait is over, so no bucket is left blocked for the lease's length.
                BuyReply::Refill { limits } => {
                    learn(limits);
                    let refill = self.sale.refill(shard, limits.activity_id).await?;
                    tracing::debug!(?refill, bucket = shard.bucket, "bucket refilled");
                    if Instant::now() >= refill_deadline {
                        return Err(SaleError::RefillBusy);
                    }
                    continue;
                }
                BuyReply::Refilling { .. } if Instant::now() >= refill_deadline => return Err(SaleError::RefillBusy),
                BuyReply::Refilling { lease_left_ms, limits } => {
                    learn(limits);
                    tokio::time::sleep(Duration::from_millis(lease_left_ms.clamp(1, 10) as u64)).await;
                    continue;
                }
                BuyReply::NotLoaded => return Err(SaleError::RebuildBusy),
                BuyReply::NoActivity => return Err(SaleError::ProductNotFound),
                BuyReply::Queued { receipt, message, limits } => {
                    learn(limits);
                    if let Err(e) = self.queue.send(&message).await {
                        tracing::warn!(error = %e, %receipt, "order message not sent now; outbox-retry will resend it");
                    }
                    let activity_id = learn(limits).unwrap_or_default();
                    (BuyOutcome::Queued { receipt, activity_id }, Some(activity_id))
                }
                BuyReply::SoldOut { limits } => (BuyOutcome::SoldOut, learn(limits)),
                BuyReply::AlreadyBought { receipt, limits } => (BuyOutcome::AlreadyBought { receipt }, learn(limits)),
                BuyReply::NotStarted { starts_at_ms, limits } => {
                    (BuyOutcome::NotOpen { state: SaleState::Upcoming, at_ms: starts_at_ms }, learn(limits))
                }
                BuyReply::Ended { ends_at_ms, limits } => {
                    (BuyOutcome::NotOpen { state: SaleState::Ended, at_ms: ends_at_ms }, learn(limits))
                }
                BuyReply::UserLimited { retry_after_ms, limits }
                | BuyReply::ActivityLimited { retry_after_ms, limits } => {
                    let retry_after = Duration::from_millis(retry_after_ms.max(0) as u64);
                    (BuyOutcome::RateLimited { retry_after }, learn(limits))
                }
            };
            return Ok(Decision { outcome, activity_id });
        }
    }
}
