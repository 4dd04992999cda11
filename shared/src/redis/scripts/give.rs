//! `lua/give.lua`: a rebalance's second step on the receiving bucket, once per move; the
//! giver's out-log entry dropped after it (a plain HDEL); and `lua/refill_end.lua`, the refill's end.

use std::{sync::LazyLock, time::Duration};

use super::{Lua, ReplyError};
use crate::{
    domain::Shard,
    redis::{RedisStore, StoreError},
};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/give.lua")));
/// `lua/refill_end.lua`, a refill's last word (kept here, beside the step it closes).
static END: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/refill_end.lua")));

/// What `give.lua` did with a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveReply {
    Given,
    GivenBefore,
    /// The receiving bucket holds another activity now: the move is recorded, not given.
    Dropped,
    /// The receiving bucket is not loaded: the move stays in the giver's log.
    NotLoaded,
}

impl GiveReply {
    pub fn from_code(code: i64) -> Result<Self, ReplyError> {
        match code {
            1 => Ok(Self::Given),
            0 => Ok(Self::GivenBefore),
            2 => Ok(Self::Dropped),
            -1 => Ok(Self::NotLoaded),
            other => Err(ReplyError::new("give.lua", format!("code {other}"))),
        }
    }
}

impl RedisStore {
    #[tracing::instrument(skip(self), err)]
    pub async fn give_units(
        &self,
        to: Shard,
        activity_id: u64,
        move_id: &str,
        units: i64,
    ) -> Result<GiveReply, StoreError> {
        let k = &self.keys;
        let code: i64 =
            self.run(SCRIPT.key(k.sale(to)).key(k.moves_in(to)).arg(activity_id).arg(move_id).arg(units)).await?;
        Ok(GiveReply::from_code(code)?)
    }

    /// A give is on the receiver's primary and its replicas before the giver forgets the move
    /// (a give lost in a failover is then given again by whoever finishes the move).
    pub async fn confirm_given(&self, to: Shard, move_id: &str, units: i64) -> Result<(), StoreError> {
        self.confirm_replicated(&self.keys.moves_in(to), move_id, &units.to_string()).await
    }

    /// The giver forgets a move the receiver has (after [`Self::give_units`]).
    #[tracing::instrument(skip(self), err)]
    pub async fn settle_move(&self, from: Shard, move_id: &str) -> Result<(), StoreError> {
        let _: i64 =
            redis::cmd("HDEL").arg(self.keys.moves_out(from)).arg(move_id).query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Ends a refill of `bucket` (`lua/refill_end.lua`): its lease is free, and with
    /// `dry_for` the bucket answers "sold out" for that long (a refill proved every bucket empty).
    #[tracing::instrument(skip(self), err)]
    pub async fn end_refill(&self, bucket: Shard, dry_for: Option<Duration>) -> Result<(), StoreError> {
        let ms = dry_for.map_or(0, |d| d.as_millis().max(1) as u64);
        let _: i64 = self.run(END.key(self.keys.sale(bucket)).arg(ms)).await?;
        Ok(())
    }
}
