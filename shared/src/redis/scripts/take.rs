//! `lua/take.lua`: a rebalance's first step on the giving bucket (half its stock into its
//! out-log, for one receiving bucket), or a look at a bucket for the proof that all are empty.

use std::sync::LazyLock;

use redis::Value;

use super::{Lua, ReplyError, int, text};
use crate::{
    domain::Shard,
    redis::{RedisStore, StoreError},
};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/take.lua")));

/// A move some caller has not finished: taken from `from`, not yet seen given to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMove {
    pub id: String,
    pub from: Shard,
    pub to: Shard,
    pub units: i64,
}

/// What `take.lua` found (and took) in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Units this call moved into the out-log (0 for a look).
    pub units: i64,
    /// The bucket's stock after the call; `None`: it does not hold the activity (not loaded).
    pub stock_left: Option<i64>,
    /// Units that ever arrived in the bucket (gives, restores): equal in two readings = none
    /// arrived between them.
    pub generation: i64,
    /// Moves out of this bucket that were not finished before this call.
    pub pending: Vec<PendingMove>,
}

/// An out-log entry ("<to bucket>:<units>") of bucket `from` as a move; `None` if malformed.
fn parse_move(from: Shard, id: String, entry: &str) -> Option<PendingMove> {
    let (to, units) = entry.split_once(':')?;
    let (to, units) = (to.parse::<u16>().ok()?, units.parse::<i64>().ok()?);
    (to < from.buckets && units > 0).then_some(PendingMove { id, from, to: Shard { bucket: to, ..from }, units })
}

/// A bucket's out-log as read by HGETALL; a malformed entry is logged and left out.
pub fn pending_moves(from: Shard, entries: Vec<(String, String)>) -> Vec<PendingMove> {
    entries
        .into_iter()
        .filter_map(|(id, entry)| {
            let parsed = parse_move(from, id, &entry);
            if parsed.is_none() {
                tracing::error!(entry, bucket = %from.label(), "out-log entry does not parse; left for an operator");
            }
            parsed
        })
        .collect()
}

impl Taken {
    fn from_value(from: Shard, value: &Value) -> Result<Self, ReplyError> {
        let bad = |detail: String| ReplyError::new("take.lua", detail);
        let Value::Array(items) = value else { return Err(bad(format!("{value:?}"))) };
        let units = int(items.first()).ok_or_else(|| bad(format!("{items:?}")))?;
        let stock = int(items.get(1)).ok_or_else(|| bad(format!("{items:?}")))?;
        let generation = int(items.get(2)).ok_or_else(|| bad(format!("{items:?}")))?;
        let mut pending = Vec::new();
        for pair in items.get(3..).unwrap_or_default().chunks(2) {
            let (Some(id), Some(entry)) = (text(pair.first()), text(pair.get(1))) else {
                return Err(bad(format!("{items:?}")));
            };
            pending.push(parse_move(from, id, &entry).ok_or_else(|| bad(format!("out-log entry {entry}")))?);
        }
        Ok(Self { units, stock_left: (stock != -2).then_some(stock), generation, pending })
    }
}

impl RedisStore {
    /// Takes half of `from`'s stock (rounded up) for `to` under `move_id`, or only looks
    /// (`move_id` `None`).
    #[tracing::instrument(skip(self), err)]
    pub async fn take_units(
        &self,
        from: Shard,
        activity_id: u64,
        to: u16,
        move_id: Option<&str>,
    ) -> Result<Taken, StoreError> {
        let k = &self.keys;
        let value: Value = self
            .run(
                SCRIPT
                    .key(k.sale(from))
                    .key(k.moves_out(from))
                    .arg(activity_id)
                    .arg(move_id.unwrap_or(""))
                    .arg(to)
                    .arg(if move_id.is_some() { "take" } else { "look" }),
            )
            .await?;
        Ok(Taken::from_value(from, &value)?)
    }

    /// A take's out-log entry is on the giver's primary and its replicas
    /// (`REDIS_WAIT_REPLICAS`), before its units are given: a failover must not bring the
    /// units back to the giver's stock while the receiver gets them too.
    pub async fn confirm_taken(&self, m: &PendingMove) -> Result<(), StoreError> {
        self.confirm_replicated(&self.keys.moves_out(m.from), &m.id, &format!("{}:{}", m.to.bucket, m.units)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_lists_the_unfinished_moves_and_an_absent_bucket_has_no_stock() -> Result<(), ReplyError> {
        let from = Shard { product_id: 7, bucket: 1, buckets: 3 };
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let v = Value::Array(vec![Value::Int(4), Value::Int(3), Value::Int(2), bulk("m1"), bulk("2:5")]);
        let t = Taken::from_value(from, &v)?;
        assert_eq!((t.units, t.stock_left, t.generation), (4, Some(3), 2));
        assert_eq!(t.pending, vec![PendingMove { id: "m1".into(), from, to: Shard { bucket: 2, ..from }, units: 5 }]);
        let absent = Taken::from_value(from, &Value::Array(vec![Value::Int(0), Value::Int(-2), Value::Int(0)]))?;
        assert_eq!(absent.stock_left, None);
        let bad = Value::Array(vec![Value::Int(0), Value::Int(0), Value::Int(0), bulk("m1"), bulk("9:5")]);
        assert!(Taken::from_value(from, &bad).is_err(), "a bucket the sale does not have");
        assert_eq!(pending_moves(from, vec![("m".into(), "0:2".into()), ("x".into(), "7:1".into())]).len(), 1);
        Ok(())
    }
}
