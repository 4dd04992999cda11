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
pub use scripts::ReplyError;

use crate::{config::RedisConfig, domain::OrderMessage};

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
}

/// The sale and the outbox read in one atomic step (what a load derives from; the reconcile
/// report's Redis side).
#[derive(Debug, Clone)]
pub struct SaleAndOutbox {
    /// (activity id, stock) of the sale Redis holds, if any.
    pub live: Option<(u64, i64)>,
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
    pub async fn sale(&self, product_id: u64) -> Result<Option<SaleSnapshot>, StoreError> {
        let (fields, (secs, micros)): (Vec<Option<i64>>, (i64, i64)) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.sale(product_id))
            .arg(&["activity_id", "stock", "starts_at", "ends_at"])
            .cmd("TIME")
            .query_async(&mut self.conn())
            .await?;
        Ok(match fields.as_slice() {
            [Some(activity_id), Some(stock), Some(starts_at_ms), Some(ends_at_ms)] => Some(SaleSnapshot {
                activity_id: u64::try_from(*activity_id).unwrap_or(0),
                stock: *stock,
                starts_at_ms: *starts_at_ms,
                ends_at_ms: *ends_at_ms,
                now_ms: secs * 1000 + micros / 1000,
            }),
            _ => None,
        })
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
    pub async fn outbox(&self, product_id: u64) -> Result<Vec<OrderMessage>, StoreError> {
        let raw: Vec<String> = self.conn().hvals(self.keys.outbox(product_id)).await?;
        Ok(raw.iter().filter_map(|m| parse_entry(m)).collect())
    }

    /// One outbox entry, if it is still there.
    #[tracing::instrument(skip(self), err)]
    pub async fn outbox_entry(&self, product_id: u64, receipt: &str) -> Result<Option<OrderMessage>, StoreError> {
        let raw: Option<String> = self.conn().hget(self.keys.outbox(product_id), receipt).await?;
        Ok(raw.and_then(|m| parse_entry(&m)))
    }

    /// The live activity and its stock, and the outbox's messages, read atomically.
    #[tracing::instrument(skip(self), err)]
    pub async fn sale_and_outbox(&self, product_id: u64) -> Result<SaleAndOutbox, StoreError> {
        let k = &self.keys;
        type Fields = (Option<u64>, Option<i64>, Option<String>);
        let ((activity, stock, version), raw): (Fields, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(k.sale(product_id))
            .arg(&["activity_id", "stock", "ver"])
            .hvals(k.outbox(product_id))
            .query_async(&mut self.conn())
            .await?;
        let outbox = raw.iter().filter_map(|m| parse_entry(m)).collect();
        Ok(SaleAndOutbox { live: activity.zip(stock), version, outbox })
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

    /// Products an earlier `outbox-retry` run left with outbox entries.
    #[tracing::instrument(skip(self), err)]
    pub async fn outbox_products(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self.conn().smembers(self.keys.outbox_products()).await?)
    }

    /// Entries left in the product's outbox; the product stays on (or leaves) the list of
    /// products `outbox-retry` must visit accordingly.
    #[tracing::instrument(skip(self), err)]
    pub async fn track_outbox(&self, product_id: u64) -> Result<u64, StoreError> {
        let left: u64 = self.conn().hlen(self.keys.outbox(product_id)).await?;
        let list = self.keys.outbox_products();
        if left > 0 {
            let _: () = self.conn().sadd(list, product_id).await?;
        } else {
            let _: () = self.conn().srem(list, product_id).await?;
        }
        Ok(left)
    }
}
