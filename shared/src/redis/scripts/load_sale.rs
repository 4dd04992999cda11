//! `lua/load_sale.lua`: writes a product's sale from what MySQL and the outbox say, atomically,
//! as a compare-and-set on the sale's `ver` the writer read. A large sale's buyers are staged
//! in chunks first (plain `HSET`/`SADD`, at most [`CHUNK`] members per command), so no single
//! call blocks Redis for long.

use std::{sync::LazyLock, time::Duration};

use super::{Lua, ReplyError};
use crate::{
    domain::Shard,
    redis::{RedisStore, StoreError},
};

/// Most members one staging command carries (each buyer is two arguments).
pub const CHUNK: usize = 1000;
/// How long staged members live if the load that staged them never runs.
const STAGED_TTL_MS: u64 = 60_000;

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/load_sale.lua")));

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
    /// How many buckets the sale has (this load is one bucket's part: its stock, its buyers).
    pub buckets: u16,
    /// ("<activity>:<user>", receipt) of everyone who already bought in this activity.
    pub buyers: Vec<(String, String)>,
    /// Receipts whose unit is already back in stock (cancelled or dead-lettered).
    pub returned: Vec<String>,
    /// The sale's `ver` as the writer read it with the outbox (`None`: no sale was there).
    pub read_version: Option<String>,
}

impl SaleLoad {
    /// The negative entry: the product exists but has no activity.
    pub fn absent() -> Self {
        Self {
            activity_id: 0,
            stock: 0,
            starts_at_ms: 0,
            ends_at_ms: 0,
            per_user_per_min: 0,
            rate_per_sec: 0,
            burst: 0,
            seq: 0,
            buckets: 1,
            buyers: vec![],
            returned: vec![],
            read_version: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Cache rebuild: never overwrite a sale another caller loaded meanwhile.
    IfMissing,
    /// Warm-up: a live sale of the same activity keeps its stock and buyers.
    Refresh,
}

/// What `load_sale.lua` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadReply {
    /// A live sale was already there (another caller won the rebuild).
    AlreadyLoaded,
    Written,
    /// A live sale of the same activity kept its stock; window and limits were refreshed.
    Refreshed,
    /// The sale changed since the writer read it: derive again and retry.
    Stale,
    /// Another activity is live (or starts first): this one waits until that one has ended.
    Deferred,
}

impl LoadReply {
    pub fn from_code(code: i64) -> Result<Self, ReplyError> {
        match code {
            0 => Ok(Self::AlreadyLoaded),
            1 => Ok(Self::Written),
            2 => Ok(Self::Refreshed),
            3 => Ok(Self::Stale),
            4 => Ok(Self::Deferred),
            other => Err(ReplyError::new("load_sale.lua", format!("code {other}"))),
        }
    }
}

impl RedisStore {
    /// Stages the load's buyers and returned receipts (chunked), then runs the script.
    /// `retention`: how long the sale's keys outlive its end.
    #[tracing::instrument(skip(self, load), fields(activity_id = load.activity_id, buyers = load.buyers.len()), err)]
    pub async fn load_sale(
        &self,
        product_id: impl Into<Shard> + std::fmt::Debug,
        mode: LoadMode,
        load: &SaleLoad,
        negative_ttl: Duration,
        retention: Duration,
    ) -> Result<LoadReply, StoreError> {
        let product_id: Shard = product_id.into();
        let k = &self.keys;
        let version = super::super::unique_token();
        let (staged_buyers, staged_returned) =
            (k.staged(product_id, &version, "buyers"), k.staged(product_id, &version, "restored"));
        if !load.buyers.is_empty() || !load.returned.is_empty() {
            let mut pipe = redis::pipe();
            for chunk in load.buyers.chunks(CHUNK) {
                let cmd = pipe.cmd("HSET").arg(&staged_buyers);
                for (member, receipt) in chunk {
                    cmd.arg(member).arg(receipt);
                }
                pipe.ignore();
            }
            for chunk in load.returned.chunks(CHUNK) {
                pipe.cmd("SADD").arg(&staged_returned).arg(chunk).ignore();
            }
            pipe.cmd("PEXPIRE").arg(&staged_buyers).arg(STAGED_TTL_MS).ignore();
            pipe.cmd("PEXPIRE").arg(&staged_returned).arg(STAGED_TTL_MS).ignore();
            pipe.query_async::<()>(&mut self.conn()).await?;
        }
        let mut inv = SCRIPT.key(k.sale(product_id));
        inv.key(k.buyers(product_id)).key(k.restored(product_id)).key(&staged_buyers).key(&staged_returned);
        inv.key(k.moves_out(product_id)).key(k.moves_in(product_id));
        inv.arg(match mode {
            LoadMode::IfMissing => "if_missing",
            LoadMode::Refresh => "refresh",
        })
        .arg(load.read_version.as_deref().unwrap_or(""))
        .arg(load.activity_id)
        .arg(load.stock)
        .arg(load.starts_at_ms)
        .arg(load.ends_at_ms)
        .arg(load.per_user_per_min)
        .arg(load.rate_per_sec)
        .arg(load.burst)
        .arg(load.seq)
        .arg(negative_ttl.as_millis() as u64)
        .arg(retention.as_millis() as u64)
        .arg(&version)
        .arg(load.buckets.max(1));
        let code: i64 = self.run(&inv).await?;
        let reply = LoadReply::from_code(code)?;
        if reply == LoadReply::Written && load.activity_id != 0 {
            // A product that can sell is on outbox-retry's list until its outbox is empty
            // (outside the script: the list is not in the product's slot).
            let _: () = redis::cmd("SADD")
                .arg(k.outbox_products())
                .arg(product_id.label())
                .query_async(&mut self.conn())
                .await?;
        }
        Ok(reply)
    }
}
