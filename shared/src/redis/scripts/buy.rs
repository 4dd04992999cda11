//! `lua/buy.lua`: one purchase attempt, atomically (per-user limit, window, one-per-user,
//! decrement, outbox entry).

use std::{sync::LazyLock, time::Duration};

use redis::Value;

use super::{Lua, ReplyError, int, text};
use crate::{
    domain::Shard,
    redis::{RedisStore, StoreError},
};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/buy.lua")));

/// What `buy.lua` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyReply {
    /// The product's sale is not in Redis: rebuild it, then try again.
    NotLoaded,
    /// The product exists but has no activity.
    NoActivity,
    Queued {
        receipt: String,
        message: String,
        limits: Limits,
    },
    SoldOut {
        limits: Limits,
    },
    AlreadyBought {
        receipt: String,
        limits: Limits,
    },
    NotStarted {
        starts_at_ms: i64,
        limits: Limits,
    },
    Ended {
        ends_at_ms: i64,
        limits: Limits,
    },
    /// The per-user limit; retry after this many milliseconds.
    UserLimited {
        retry_after_ms: i64,
        limits: Limits,
    },
    /// The activity's rate (across every instance) turned this attempt away.
    ActivityLimited {
        retry_after_ms: i64,
        limits: Limits,
    },
    /// The sale has this many buckets, not the number the caller asked with: ask the user's
    /// bucket of that many.
    WrongBuckets {
        buckets: u16,
    },
    /// The user's bucket is empty and another caller is refilling it: ask again shortly
    /// (nothing was counted against any limit).
    Refilling {
        lease_left_ms: i64,
        limits: Limits,
    },
    /// The user's bucket is empty and this caller holds its refill lease: refill it
    /// (`sale::rebalance`), then ask again.
    Refill {
        limits: Limits,
    },
}

/// How long a refill may hold a bucket's lease before another caller takes over (one that
/// died leaves it to expire).
pub const REFILL_LEASE: Duration = Duration::from_millis(1000);

/// The activity's per-instance token bucket settings, carried back by every reply so an
/// instance follows an admin's change without a deploy and without an extra round trip, and
/// the activity's id (for the metrics' `Activity` dimension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rate_per_sec: u32,
    pub burst: u32,
    pub activity_id: u64,
}

impl BuyReply {
    pub fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let bad = |detail: String| ReplyError::new("buy.lua", detail);
        let Value::Array(items) = value else {
            return Err(bad(format!("{value:?}")));
        };
        let code = int(items.first()).ok_or_else(|| bad(format!("{items:?}")))?;
        let detail = || text(items.get(1)).ok_or_else(|| bad(format!("{items:?}")));
        let limits = Limits {
            rate_per_sec: int(items.get(2)).and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            burst: int(items.get(3)).and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            activity_id: int(items.get(4)).and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
        };
        let detail_int = || int(items.get(1)).ok_or_else(|| bad(format!("{items:?}")));
        Ok(match code {
            0 => Self::NotLoaded,
            7 => Self::NoActivity,
            1 => Self::Queued {
                receipt: detail()?,
                message: text(items.get(5)).ok_or_else(|| bad(format!("{items:?}")))?,
                limits,
            },
            2 => Self::SoldOut { limits },
            3 => Self::AlreadyBought { receipt: detail()?, limits },
            4 => Self::NotStarted { starts_at_ms: detail_int()?, limits },
            5 => Self::Ended { ends_at_ms: detail_int()?, limits },
            6 => Self::UserLimited { retry_after_ms: detail_int()?, limits },
            8 => Self::ActivityLimited { retry_after_ms: detail_int()?, limits },
            9 => Self::WrongBuckets { buckets: u16::try_from(detail_int()?).map_err(|_| bad(format!("{items:?}")))? },
            10 => Self::Refilling { lease_left_ms: detail_int()?, limits },
            11 => Self::Refill { limits },
            other => return Err(bad(format!("code {other}"))),
        })
    }
}

impl RedisStore {
    /// Runs `buy.lua`; a purchase (and only a purchase: every attempt writes the per-user
    /// counter, so a WAIT on every call would make the 99% who lose wait for replicas too) is
    /// then confirmed by [`RedisStore::confirm_replicated`]. One the replicas did not confirm
    /// is [`StoreError::NotReplicated`]: the caller answers 503 and sends nothing; the purchase
    /// stays in its primary's outbox (where `outbox-retry` delivers it if that primary lives,
    /// and a retrying buyer gets its receipt) or is gone with the primary, together with its
    /// unit and its buyer record.
    #[tracing::instrument(skip(self), err)]
    ///
    /// `shard` is the user's bucket of the sale as the caller believes it split
    /// ([`Shard::of_user`]); a wrong belief is answered [`BuyReply::WrongBuckets`].
    pub async fn buy(
        &self,
        shard: impl Into<Shard> + std::fmt::Debug,
        user: &str,
        retry_after: Duration,
    ) -> Result<BuyReply, StoreError> {
        let shard = shard.into();
        let k = &self.keys;
        let value: Value = self
            .run(
                SCRIPT
                    .key(k.sale(shard))
                    .key(k.buyers(shard))
                    .key(k.outbox(shard))
                    .key(k.outbox_due(shard))
                    .key(k.user_limit(shard, user))
                    .arg(user)
                    .arg(shard.product_id)
                    .arg(retry_after.as_millis() as u64)
                    .arg(shard.buckets)
                    .arg(shard.receipt_suffix())
                    .arg(REFILL_LEASE.as_millis() as u64),
            )
            .await?;
        let reply = BuyReply::from_value(&value)?;
        if let BuyReply::Queued { receipt, message, .. } = &reply
            && self.wait_replicas > 0
        {
            let activity_id = serde_json::from_str::<crate::domain::OrderMessage>(message)
                .map_err(|e| ReplyError::new("buy.lua", format!("queued message: {e}")))?
                .activity_id;
            // The buyer record, as buy.lua wrote it: "<activity_id>:<user>" -> receipt.
            self.confirm_replicated(&k.buyers(shard), &format!("{activity_id}:{user}"), receipt).await?;
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_queued_reply_carries_receipt_message_and_limits() -> Result<(), Box<dyn std::error::Error>> {
        let v = Value::Array(vec![
            Value::Int(1),
            bulk("3-7-alice-100"),
            Value::Int(500),
            Value::Int(50),
            bulk("1"),
            bulk("{}"),
        ]);
        let reply = BuyReply::from_value(&v)?;
        assert_eq!(
            reply,
            BuyReply::Queued {
                receipt: "3-7-alice-100".into(),
                message: "{}".into(),
                limits: Limits { rate_per_sec: 500, burst: 50, activity_id: 1 }
            }
        );
        Ok(())
    }

    #[test]
    fn an_unknown_code_is_an_error_not_a_guess() {
        let v = Value::Array(vec![Value::Int(42), bulk(""), Value::Int(0), Value::Int(0)]);
        assert!(BuyReply::from_value(&v).is_err());
        assert!(BuyReply::from_value(&Value::Nil).is_err());
    }
}
