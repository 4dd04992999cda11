//! The Redis adapter: the connection, the key names, the bloom filter, the order statuses
//! buyers poll ([`order_status`]), a sale's buyers read whole for an instance's memo
//! ([`buyers`]), and one file per Lua script (its `Script`, its invocation and its reply enum
//! together, in [`scripts`]).
//!
//! Nothing above this module builds a Redis command: capabilities call the narrow methods of
//! [`RedisStore`], which speak domain types only.

pub mod bloom;
pub mod buyers;
pub mod connection;
pub mod keys;
pub mod order_status;
pub mod scripts;

use std::time::Duration;

use redis::AsyncCommands;

pub use connection::{Conn, ConnectError};
pub use keys::Keys;
pub use scripts::{ReplyError, take::PendingMove};

use crate::{
    config::RedisConfig,
    domain::{OrderMessage, Shard},
};

/// The shard that sold `receipt` (it names its bucket); the product's home for a receipt that
/// names none or another product.
pub fn shard_of(product_id: u64, receipt: &str) -> Shard {
    Shard::of_receipt(receipt).filter(|s| s.product_id == product_id).unwrap_or(Shard::home(product_id))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// Start-up: the configuration does not lead to a working Redis (names the variable).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The purchase ran on the primary but fewer replicas than required confirmed it in time.
    #[error("purchase {receipt} reached {replicas} of {wanted} replicas in time")]
    NotReplicated { receipt: String, replicas: u32, wanted: u32 },
}

/// One product's sale as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    /// 0 = the product has no activity (negative cache entry).
    pub activity_id: u64,
    pub stock: i64,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    /// Redis' clock when this was read: the clock `buy.lua` decides the window by.
    pub now_ms: i64,
    /// How many buckets the sale has (`domain::shard`); `stock` is this bucket's part.
    pub buckets: u16,
}

/// One bucket's units as a reader counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketStock {
    pub activity_id: u64,
    /// Its stock (-1 = unlimited).
    pub stock: i64,
    /// Moves out of it not yet settled ([`RedisStore::in_transit`] counts their units).
    pub moving: Vec<PendingMove>,
    /// Units that ever arrived in it (gives, restores).
    pub generation: i64,
}

/// The sale and the outbox read in one atomic step (what a load derives from; the reconcile
/// report's Redis side).
#[derive(Debug, Clone)]
pub struct SaleAndOutbox {
    /// (activity id, stock) of the sale Redis holds, if any.
    pub live: Option<(u64, i64)>,
    /// The buckets the sale Redis holds says it has (1 when none is there).
    pub buckets: u16,
    /// Units that ever arrived in this bucket (gives, restores): see `sale::rebalance`.
    pub generation: i64,
    /// Moves out of this bucket not yet settled (`moves:out`); [`RedisStore::in_transit`]
    /// says how many of their units the receivers do not have yet.
    pub moving: Vec<PendingMove>,
    /// The sale's `ver` (changes with every load), for the load's compare-and-set.
    pub version: Option<String>,
    pub outbox: Vec<OrderMessage>,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    /// Replicas a durable write waits for (`REDIS_WAIT_REPLICAS`), and for how long.
    wait_replicas: u32,
    wait_timeout: Duration,
}

/// A token no other writer uses: a lock holder's identity, a sale load's `ver`.
pub fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Parses an outbox entry; one that does not parse is logged here, where it is dropped.
fn parse_entry(raw: &str) -> Option<OrderMessage> {
    match serde_json::from_str(raw) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(error = %e, entry = %raw, "outbox entry is not an order message; skipped");
            None
        }
    }
}

impl RedisStore {
    /// Opens the configured single node or cluster ([`connection::open`] says what is
    /// checked at start-up). Timeouts are short so that a request that finds Redis away gets
    /// its 503 quickly.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self, StoreError> {
        Ok(Self {
            conn: connection::open(cfg).await?,
            keys: Keys::new(cfg.key_prefix.clone()),
            wait_replicas: cfg.wait_replicas,
            wait_timeout: cfg.wait_timeout,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection handle (cheap: it shares the multiplexed connection or the cluster's).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn sale(&self, shard: impl Into<Shard> + std::fmt::Debug) -> Result<Option<SaleSnapshot>, StoreError> {
        let (fields, (secs, micros)): (Vec<Option<i64>>, (i64, i64)) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.sale(shard))
            .arg(&["activity_id", "stock", "starts_at", "ends_at", "buckets"])
            .cmd("TIME")
            .query_async(&mut self.conn())
            .await?;
        Ok(match fields.as_slice() {
            [Some(activity_id), Some(stock), Some(starts_at_ms), Some(ends_at_ms), buckets] => Some(SaleSnapshot {
                buckets: buckets.and_then(|n| u16::try_from(n).ok()).unwrap_or(1).max(1),
                activity_id: u64::try_from(*activity_id).unwrap_or(0),
                stock: *stock,
                starts_at_ms: *starts_at_ms,
                ends_at_ms: *ends_at_ms,
                now_ms: secs * 1000 + micros / 1000,
            }),
            _ => None,
        })
    }

    /// One bucket's stock and the units on their way out of it, read atomically.
    #[tracing::instrument(skip(self), err)]
    pub async fn bucket_stock(&self, shard: Shard) -> Result<Option<BucketStock>, StoreError> {
        type Read = ((Option<u64>, Option<i64>, Option<i64>), Vec<(String, String)>);
        let ((activity, stock, generation), moving): Read = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(self.keys.sale(shard))
            .arg(&["activity_id", "stock", "gen"])
            .hgetall(self.keys.moves_out(shard))
            .query_async(&mut self.conn())
            .await?;
        let moving = scripts::take::pending_moves(shard, moving);
        let generation = generation.unwrap_or(0);
        Ok(activity.zip(stock).map(|(activity_id, stock)| BucketStock { activity_id, stock, moving, generation }))
    }

    /// Units of unsettled moves that their receivers do not have yet (a move given but not
    /// settled is in the receiver's stock already; one whose receiver lost its keys is counted
    /// here, and the give that finishes it adds it there).
    #[tracing::instrument(skip(self, moves), fields(n = moves.len()), err)]
    pub async fn in_transit(&self, moves: &[PendingMove]) -> Result<i64, StoreError> {
        let mut units = 0;
        for m in moves {
            let given: bool = self.conn().hexists(self.keys.moves_in(m.to), &m.id).await?;
            if !given {
                units += m.units;
            }
        }
        Ok(units)
    }

    /// Takes a lock (`keys.rebuild_lock(..)`, `keys.bloom_lock()`): true when this caller
    /// (its `token`) holds it now.
    #[tracing::instrument(skip(self, token), err)]
    pub async fn try_lock(&self, lock: &str, ttl: Duration, token: &str) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(lock)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    /// Order messages still in the product's outbox (not yet acknowledged by the consumer).
    #[tracing::instrument(skip(self), err)]
    pub async fn outbox(&self, shard: impl Into<Shard> + std::fmt::Debug) -> Result<Vec<OrderMessage>, StoreError> {
        let raw: Vec<String> = self.conn().hvals(self.keys.outbox(shard)).await?;
        Ok(raw.iter().filter_map(|m| parse_entry(m)).collect())
    }

    /// One outbox entry, if it is still there.
    #[tracing::instrument(skip(self), err)]
    pub async fn outbox_entry(&self, product_id: u64, receipt: &str) -> Result<Option<OrderMessage>, StoreError> {
        let raw: Option<String> = self.conn().hget(self.keys.outbox(shard_of(product_id, receipt)), receipt).await?;
        Ok(raw.and_then(|m| parse_entry(&m)))
    }

    /// The live activity and its stock, the outbox's messages and the units on their way out
    /// of this bucket, read atomically (one bucket: every key shares its tag).
    #[tracing::instrument(skip(self), err)]
    pub async fn sale_and_outbox(
        &self,
        shard: impl Into<Shard> + std::fmt::Debug,
    ) -> Result<SaleAndOutbox, StoreError> {
        let shard = shard.into();
        let k = &self.keys;
        type Fields = (Option<u64>, Option<i64>, Option<String>, Option<u16>, Option<i64>);
        let ((activity, stock, version, buckets, generation), raw, moving): (
            Fields,
            Vec<String>,
            Vec<(String, String)>,
        ) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(k.sale(shard))
            .arg(&["activity_id", "stock", "ver", "buckets", "gen"])
            .hvals(k.outbox(shard))
            .hgetall(k.moves_out(shard))
            .query_async(&mut self.conn())
            .await?;
        let outbox = raw.iter().filter_map(|m| parse_entry(m)).collect();
        Ok(SaleAndOutbox {
            live: activity.zip(stock),
            buckets: buckets.unwrap_or(1).max(1),
            generation: generation.unwrap_or(0),
            moving: scripts::take::pending_moves(shard, moving),
            version,
            outbox,
        })
    }

    /// Confirms that a write is on the primary that serves `key` now and on
    /// `REDIS_WAIT_REPLICAS` of its replicas: `HGET key field` and `WAIT` in one pipeline,
    /// routed to that primary. The HGET matters: if a failover happened since the write, the
    /// pipeline reaches the promoted replica, whose WAIT would confirm its own (older) data.
    pub async fn confirm_replicated(&self, key: &str, field: &str, expected: &str) -> Result<(), StoreError> {
        let (found, replicas): (Option<String>, u32) = redis::pipe()
            .hget(key, field)
            .cmd("WAIT")
            .arg(self.wait_replicas)
            .arg(self.wait_timeout.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        let replicas = if found.as_deref() == Some(expected) { replicas } else { 0 };
        if replicas < self.wait_replicas {
            return Err(StoreError::NotReplicated {
                receipt: expected.to_owned(),
                replicas,
                wanted: self.wait_replicas,
            });
        }
        Ok(())
    }

    /// Shards (products, or buckets of a split sale) an earlier `outbox-retry` run left with
    /// outbox entries, or a load put there.
    #[tracing::instrument(skip(self), err)]
    pub async fn outbox_products(&self) -> Result<Vec<Shard>, StoreError> {
        let labels: Vec<String> = self.conn().smembers(self.keys.outbox_products()).await?;
        Ok(labels.iter().filter_map(|l| Shard::from_label(l)).collect())
    }

    /// Entries left in the product's outbox; the product stays on (or leaves) the list of
    /// products `outbox-retry` must visit accordingly.
    #[tracing::instrument(skip(self), err)]
    pub async fn track_outbox(&self, shard: Shard) -> Result<u64, StoreError> {
        let left: u64 = self.conn().hlen(self.keys.outbox(shard)).await?;
        let list = self.keys.outbox_products();
        if left > 0 {
            let _: () = self.conn().sadd(list, shard.label()).await?;
        } else {
            let _: () = self.conn().srem(list, shard.label()).await?;
        }
        Ok(left)
    }
}
