//! Redis access: the connection, the keys and the scripts, behind narrow methods.

use std::time::Duration;

use redis::{AsyncCommands, Value, aio::ConnectionManager};

use crate::{
    bloom,
    config::RedisConfig,
    domain::OrderMessage,
    keys::Keys,
    scripts::{BuyReply, Claimed, LoadReply, ReplyError, RestoreReply, Scripts},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

/// One product's sale as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    /// 0 = the product has no activity (negative cache entry).
    pub activity_id: u64,
    pub stock: i64,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
}

/// What the load script writes.
#[derive(Debug, Clone)]
pub struct SaleLoad {
    pub activity_id: u64,
    pub stock: i64,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub per_user_per_min: u32,
    pub rate_per_sec: u32,
    pub burst: u32,
    pub seq: u64,
    /// ("<activity>:<user>", receipt) of everyone who already bought in this activity.
    pub buyers: Vec<(String, String)>,
    /// Receipts whose unit is already back in stock (cancelled or dead-lettered).
    pub returned: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Cache rebuild: never overwrite a sale another caller loaded meanwhile.
    IfMissing,
    /// Warm-up: a live sale of the same activity keeps its stock and buyers.
    Refresh,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
}

impl RedisStore {
    /// Connects lazily: a cold start does not fail because Redis is briefly away; a request
    /// that finds it away gets 503. Timeouts are short so that answer comes quickly.
    pub fn new(cfg: &RedisConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(cfg.url.as_str())?;
        let manager_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_cfg)?;
        Ok(Self { conn, keys: Keys::new(cfg.key_prefix.clone()), scripts: Default::default() })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection handle (cheap: it shares the manager's multiplexed connection).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn buy(&self, product_id: u64, user: &str, retry_after: Duration) -> Result<BuyReply, StoreError> {
        let k = &self.keys;
        let value: Value = self
            .scripts
            .buy
            .key(k.sale(product_id))
            .key(k.buyers(product_id))
            .key(k.outbox(product_id))
            .key(k.outbox_due(product_id))
            .key(k.user_limit(product_id, user))
            .arg(user)
            .arg(product_id)
            .arg(retry_after.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(BuyReply::from_value(&value)?)
    }

    #[tracing::instrument(skip(self), err)]
    pub async fn sale(&self, product_id: u64) -> Result<Option<SaleSnapshot>, StoreError> {
        let fields: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(self.keys.sale(product_id))
            .arg(&["activity_id", "stock", "starts_at", "ends_at"])
            .query_async(&mut self.conn())
            .await?;
        Ok(match fields.as_slice() {
            [Some(activity_id), Some(stock), Some(starts_at_ms), Some(ends_at_ms)] => Some(SaleSnapshot {
                activity_id: u64::try_from(*activity_id).unwrap_or(0),
                stock: *stock,
                starts_at_ms: *starts_at_ms,
                ends_at_ms: *ends_at_ms,
            }),
            _ => None,
        })
    }

    /// Sets the product's bits. Idempotent.
    #[tracing::instrument(skip(self), err)]
    pub async fn bloom_add(&self, product_id: u64) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("BITFIELD");
        cmd.arg(self.keys.bloom());
        for p in bloom::positions(product_id) {
            cmd.arg("SET").arg("u1").arg(p).arg(1);
        }
        let _: Value = cmd.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// False means the product was never listed. One round trip (BITFIELD with every probe).
    #[tracing::instrument(skip(self), err)]
    pub async fn bloom_may_contain(&self, product_id: u64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("BITFIELD_RO");
        cmd.arg(self.keys.bloom());
        for p in bloom::positions(product_id) {
            cmd.arg("GET").arg("u1").arg(p);
        }
        let bits: Vec<i64> = cmd.query_async(&mut self.conn()).await?;
        Ok(!bits.is_empty() && bits.iter().all(|&b| b == 1))
    }

    /// Takes the product's rebuild lock; `Some(token)` when this caller holds it.
    pub async fn try_lock(&self, product_id: u64, ttl: Duration, token: &str) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.rebuild_lock(product_id))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    pub async fn unlock(&self, product_id: u64, token: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .unlock
            .key(self.keys.rebuild_lock(product_id))
            .arg(token)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Order messages still in the product's outbox (not yet acknowledged by the consumer).
    #[tracing::instrument(skip(self), err)]
    pub async fn outbox(&self, product_id: u64) -> Result<Vec<OrderMessage>, StoreError> {
        let raw: Vec<String> = self.conn().hvals(self.keys.outbox(product_id)).await?;
        Ok(raw
            .iter()
            .filter_map(|m| match serde_json::from_str(m) {
                Ok(msg) => Some(msg),
                Err(e) => {
                    tracing::error!(error = %e, message = %m, "outbox entry is not an order message");
                    None
                }
            })
            .collect())
    }

    #[tracing::instrument(skip(self, load), fields(activity_id = load.activity_id, buyers = load.buyers.len()), err)]
    pub async fn load_sale(
        &self,
        product_id: u64,
        mode: LoadMode,
        load: &SaleLoad,
        negative_ttl: Duration,
    ) -> Result<LoadReply, StoreError> {
        let k = &self.keys;
        let mut inv = self.scripts.load_sale.prepare_invoke();
        inv.key(k.sale(product_id)).key(k.buyers(product_id)).key(k.restored(product_id));
        inv.arg(match mode {
            LoadMode::IfMissing => "if_missing",
            LoadMode::Refresh => "refresh",
        })
        .arg(load.activity_id)
        .arg(load.stock)
        .arg(load.starts_at_ms)
        .arg(load.ends_at_ms)
        .arg(load.per_user_per_min)
        .arg(load.rate_per_sec)
        .arg(load.burst)
        .arg(load.seq)
        .arg(negative_ttl.as_millis() as u64)
        .arg(load.buyers.len());
        for (member, receipt) in &load.buyers {
            inv.arg(member).arg(receipt);
        }
        for receipt in &load.returned {
            inv.arg(receipt);
        }
        let code: i64 = inv.invoke_async(&mut self.conn()).await?;
        Ok(LoadReply::from_code(code)?)
    }

    /// Gives a returned purchase's unit back, once per receipt (see `restore.lua`).
    #[tracing::instrument(skip(self), err)]
    pub async fn restore(&self, product_id: u64, activity_id: u64, receipt: &str) -> Result<RestoreReply, StoreError> {
        let k = &self.keys;
        let code: i64 = self
            .scripts
            .restore
            .key(k.sale(product_id))
            .key(k.restored(product_id))
            .key(k.outbox(product_id))
            .key(k.outbox_due(product_id))
            .key(k.outbox_attempts(product_id))
            .arg(receipt)
            .arg(activity_id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(RestoreReply::from_code(code)?)
    }

    /// Claims up to `limit` entries due now; claimed ones become due again after `backoff`.
    #[tracing::instrument(skip(self), err)]
    pub async fn claim_due(
        &self,
        product_id: u64,
        now_ms: i64,
        backoff: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let k = &self.keys;
        let value: Value = self
            .scripts
            .claim
            .key(k.outbox(product_id))
            .key(k.outbox_due(product_id))
            .key(k.outbox_attempts(product_id))
            .arg(now_ms)
            .arg(now_ms + backoff.as_millis() as i64)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Claimed::from_value(&value)?)
    }

    /// The consumer's acknowledgement (`ack.lua`): these orders are rows now, their outbox
    /// entries go, and any purchase the live sale lost is adopted. Returns (adopted, oversold).
    #[tracing::instrument(skip(self, orders), fields(n = orders.len()), err)]
    pub async fn ack_outbox(&self, product_id: u64, orders: &[&OrderMessage]) -> Result<(i64, i64), StoreError> {
        if orders.is_empty() {
            return Ok((0, 0));
        }
        let k = &self.keys;
        let mut inv = self.scripts.ack.prepare_invoke();
        inv.key(k.sale(product_id))
            .key(k.buyers(product_id))
            .key(k.outbox(product_id))
            .key(k.outbox_due(product_id))
            .key(k.outbox_attempts(product_id));
        for m in orders {
            inv.arg(m.activity_id).arg(&m.user_id).arg(&m.receipt);
        }
        let (adopted, oversold): (i64, i64) = inv.invoke_async(&mut self.conn()).await?;
        Ok((adopted, oversold))
    }

    /// One outbox entry, if it is still there.
    pub async fn outbox_entry(&self, product_id: u64, receipt: &str) -> Result<Option<OrderMessage>, StoreError> {
        let raw: Option<String> = self.conn().hget(self.keys.outbox(product_id), receipt).await?;
        Ok(raw.and_then(|m| serde_json::from_str(&m).ok()))
    }

    /// Sets the bits of many products (a lost bloom filter refilled from MySQL).
    pub async fn bloom_add_many(&self, product_ids: &[u64]) -> Result<(), StoreError> {
        for chunk in product_ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let cmd = pipe.cmd("BITFIELD").arg(self.keys.bloom());
                for p in bloom::positions(*id) {
                    cmd.arg("SET").arg("u1").arg(p).arg(1);
                }
                cmd.ignore();
            }
            let _: () = pipe.query_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    pub async fn bloom_exists(&self) -> Result<bool, StoreError> {
        Ok(self.conn().exists(self.keys.bloom()).await?)
    }

    /// (the live activity id, its stock) and the outbox's messages, read atomically.
    pub async fn sale_and_outbox(
        &self,
        product_id: u64,
    ) -> Result<(Option<(u64, i64)>, Vec<OrderMessage>), StoreError> {
        let k = &self.keys;
        let ((activity, stock), raw): ((Option<u64>, Option<i64>), Vec<String>) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(k.sale(product_id))
            .arg(&["activity_id", "stock"])
            .hvals(k.outbox(product_id))
            .query_async(&mut self.conn())
            .await?;
        let outbox = raw.iter().filter_map(|m| serde_json::from_str(m).ok()).collect();
        Ok((activity.zip(stock), outbox))
    }
}
