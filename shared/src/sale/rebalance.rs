//! Rebalancing a split sale (`domain::shard`): when a user's bucket runs dry, units move to it
//! from the buckets that still have them, so nobody hears "sold out" while another bucket
//! holds a unit.
//!
//! The buckets live on different primaries, so no step can touch two of them atomically. A
//! move is three single-bucket steps, each atomic, and a unit is at every moment in exactly one
//! place a reader counts:
//!
//! 1. **take** (`take.lua`, on the giver): half its stock leaves it and is recorded in its
//!    out-log under a fresh move id — the units are now "on their way" (the stock sum, the
//!    reconcile and a rebuild count the out-log);
//! 2. **give** (`give.lua`, on the receiver): the units join its stock and the move id joins its
//!    in-log, once per id, whoever calls it;
//! 3. **settle** (HDEL on the giver): the out-log entry goes.
//!
//! Each of 1 and 2 is confirmed on the bucket's replicas (`REDIS_WAIT_REPLICAS`, as a purchase
//! is) before the next step, so a failover cannot undo a take whose units are then given, nor a
//! give whose move is then forgotten.
//!
//! A process that dies after 1 leaves the units in the out-log; after 2, an out-log entry whose
//! id the receiver already has. Either way the next caller who reads that bucket's out-log (any
//! refill's take, [`Sale::recover_moves`] in every `outbox-retry` run) finishes the move with
//! steps 2 and 3 again: 2 is a no-op the second time, so nothing is lost and nothing counted twice.
//!
//! Who refills: `buy.lua` hands the first caller who finds her bucket empty a lease (the
//! others wait, see `sale::buy`). The refill takes from the other buckets in turn; if none has
//! a unit it proves they are all empty at one moment (two readings of every bucket with
//! nothing arrived between: the `gen` counter counts arrivals) and only then marks the bucket
//! dry for `BUCKET_DRY_MS`, the time a unit restored into another bucket can go unsold to this
//! bucket's users (a restore into this bucket ends it at once).

use super::{Sale, SaleError};
use crate::{
    domain::Shard,
    redis::scripts::{give::GiveReply, take::Taken},
};

pub use crate::redis::scripts::take::PendingMove;

/// A step of a move, as an observer sees it (the crash tests stop the process after each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Taken,
    Given,
    Settled,
}

/// What a refill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// Units arrived in the bucket (0: it had some again by the time the refill looked).
    Moved(i64),
    /// Every bucket was empty at one moment: the bucket answers "sold out" for a while.
    Dry,
    /// Units kept moving while it looked: the caller asks its bucket again.
    Undecided,
}

/// Readings of every bucket before a refill gives up deciding.
const ROUNDS: usize = 3;

impl Sale {
    /// Refills bucket `to` of activity `activity_id` from the others (the caller holds its
    /// lease, see `buy.lua`), then frees the lease.
    pub async fn refill(&self, to: Shard, activity_id: u64) -> Result<Refill, SaleError> {
        self.refill_observed(to, activity_id, &|_| {}).await
    }

    /// [`Self::refill`], telling `after` each step of a move as it is done.
    #[tracing::instrument(skip(self, after), err)]
    pub async fn refill_observed(
        &self,
        to: Shard,
        activity_id: u64,
        after: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<Refill, SaleError> {
        let result = self.try_refill(to, activity_id, after).await;
        let dry = matches!(result, Ok(Refill::Dry)).then_some(self.cfg.bucket_dry);
        if let Err(e) = self.redis.end_refill(to, dry).await {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "refill lease not freed; it expires by itself");
        }
        result
    }

    async fn try_refill(
        &self,
        to: Shard,
        activity_id: u64,
        after: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<Refill, SaleError> {
        let n = to.buckets.max(1);
        // The receiver first (a look), then the givers in turn, starting after it.
        let order: Vec<Shard> = (0..n).map(|i| Shard { bucket: (to.bucket + i) % n, ..to }).collect();
        for _ in 0..ROUNDS {
            let mut first: Vec<(Shard, Taken)> = Vec::with_capacity(order.len());
            for &shard in &order {
                let move_id = (shard != to).then(crate::redis::unique_token);
                let t = self.redis.take_units(shard, activity_id, to.bucket, move_id.as_deref()).await?;
                self.finish_moves(&t.pending, activity_id, after).await?;
                if let Some(id) = move_id.filter(|_| t.units > 0) {
                    let taken = PendingMove { id, from: shard, to, units: t.units };
                    self.redis.confirm_taken(&taken).await?;
                    after(Step::Taken);
                    self.finish_moves(std::slice::from_ref(&taken), activity_id, after).await?;
                    return Ok(Refill::Moved(t.units));
                }
                if shard == to && t.stock_left.is_some_and(|s| s != 0) {
                    return Ok(Refill::Moved(0));
                }
                first.push((shard, t));
            }
            if let Some((lost, _)) = first.iter().find(|(_, t)| t.stock_left.is_none()) {
                // A bucket lost its keys: rebuild it (it counts what is on its way), then look again.
                match Box::pin(self.ensure_loaded(*lost)).await {
                    Ok(()) | Err(SaleError::ProductNotFound) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if first.iter().any(|(_, t)| !t.pending.is_empty() || t.stock_left != Some(0)) {
                continue;
            }
            // Every bucket read empty with nothing on its way. Read them all again: if nothing
            // arrived anywhere between the two readings, there was a moment when all were empty.
            let mut settled = true;
            for (shard, before) in &first {
                let again = self.redis.take_units(*shard, activity_id, to.bucket, None).await?;
                if again.stock_left != Some(0) || !again.pending.is_empty() || again.generation != before.generation {
                    settled = false;
                    break;
                }
            }
            if settled {
                return Ok(Refill::Dry);
            }
        }
        Ok(Refill::Undecided)
    }

    /// Finishes moves some caller left (or this one just took): give, then settle. A move
    /// whose receiver is not loaded stays in the giver's out-log.
    async fn finish_moves(
        &self,
        moves: &[PendingMove],
        activity_id: u64,
        after: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<u64, SaleError> {
        let mut finished = 0;
        for m in moves {
            match self.redis.give_units(m.to, activity_id, &m.id, m.units).await? {
                GiveReply::NotLoaded => {
                    tracing::warn!(move_id = %m.id, to = %m.to.label(), "receiving bucket not loaded; the move waits in the out-log");
                    continue;
                }
                GiveReply::Given | GiveReply::GivenBefore => self.redis.confirm_given(m.to, &m.id, m.units).await?,
                GiveReply::Dropped => {}
            }
            after(Step::Given);
            self.redis.settle_move(m.from, &m.id).await?;
            after(Step::Settled);
            finished += 1;
        }
        Ok(finished)
    }

    /// Finishes every move a dead caller left half done in the sale's buckets (`outbox-retry`
    /// runs it for every split sale it visits). Returns how many it finished.
    #[tracing::instrument(skip(self), err)]
    pub async fn recover_moves(&self, product_id: u64, buckets: u16, activity_id: u64) -> Result<u64, SaleError> {
        let mut finished = 0;
        for shard in Shard::all(product_id, buckets) {
            let t = self.redis.take_units(shard, activity_id, shard.bucket, None).await?;
            finished += self.finish_moves(&t.pending, activity_id, &|_| {}).await?;
        }
        if finished > 0 {
            tracing::warn!(product_id, finished, "moves a dead refill left half done were finished");
        }
        Ok(finished)
    }
}
