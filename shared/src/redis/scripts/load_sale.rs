//! `lua/load_sale.lua`: writes a product's sale from what MySQL and the outbox say, atomically.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use super::ReplyError;
use crate::redis::{RedisStore, StoreError};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../../../lua/load_sale.lua")));

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
            buyers: vec![],
            returned: vec![],
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
}

impl LoadReply {
    pub fn from_code(code: i64) -> Result<Self, ReplyError> {
        match code {
            0 => Ok(Self::AlreadyLoaded),
            1 => Ok(Self::Written),
            2 => Ok(Self::Refreshed),
            other => Err(ReplyError::new("load_sale.lua", format!("code {other}"))),
        }
    }
}

impl RedisStore {
    #[tracing::instrument(skip(self, load), fields(activity_id = load.activity_id, buyers = load.buyers.len()), err)]
    pub async fn load_sale(
        &self,
        product_id: u64,
        mode: LoadMode,
        load: &SaleLoad,
        negative_ttl: Duration,
    ) -> Result<LoadReply, StoreError> {
        let k = &self.keys;
        let mut inv = SCRIPT.prepare_invoke();
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
}
