//! The live sale's buyers, read whole by an instance that is about to answer "sold out" or
//! "ended" from memory (`sale::memo`): with that copy it still answers a buyer who bought with
//! her receipt (`already_bought`), as `buy.lua` would, without a round trip per request.
//!
//! Once a sale is sold out its buyers change only when a returned unit sells again, so a
//! refresh first reads the buyer count (one small pipeline) and reads the whole hash again
//! only when the count or the live activity changed. The hash is read by HSCAN in pages, so
//! a large sale never blocks Redis with one long command.

use std::collections::HashMap;

use super::{RedisStore, StoreError};
use crate::domain::Shard;

/// The live activity's buyers: user -> receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveBuyers {
    pub activity_id: u64,
    /// Fields of the buyers hash when it was read (every activity's, as HLEN counts them).
    pub fields: u64,
    pub receipts: HashMap<String, String>,
}

/// What [`RedisStore::live_buyers`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyersRead {
    /// The sale is not in Redis.
    NotLoaded,
    /// Same live activity, same number of buyers as the copy the caller holds.
    Unchanged,
    Read(LiveBuyers),
}

/// Fields one HSCAN page asks for.
const PAGE: u64 = 1000;

impl RedisStore {
    /// The live activity's buyers (of every bucket of a split sale), unless neither the live
    /// activity nor the number of buyers changed since `previous` was read.
    #[tracing::instrument(skip(self, previous), err)]
    pub async fn live_buyers(
        &self,
        product_id: u64,
        buckets: u16,
        previous: Option<&LiveBuyers>,
    ) -> Result<BuyersRead, StoreError> {
        let shards: Vec<Shard> = Shard::all(product_id, buckets).collect();
        let mut activity_id = None;
        let mut fields = 0;
        for shard in &shards {
            let (activity, n): (Option<u64>, u64) = redis::pipe()
                .hget(self.keys.sale(*shard), "activity_id")
                .hlen(self.keys.buyers(*shard))
                .query_async(&mut self.conn())
                .await?;
            let Some(activity) = activity else { return Ok(BuyersRead::NotLoaded) };
            activity_id.get_or_insert(activity);
            fields += n;
        }
        let Some(activity_id) = activity_id else { return Ok(BuyersRead::NotLoaded) };
        if previous.is_some_and(|p| p.activity_id == activity_id && p.fields == fields) {
            return Ok(BuyersRead::Unchanged);
        }
        let prefix = format!("{activity_id}:");
        let mut receipts = HashMap::new();
        for shard in shards {
            let key = self.keys.buyers(shard);
            let mut cursor = 0u64;
            loop {
                let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut self.conn())
                    .await?;
                for (member, receipt) in page {
                    if let Some(user) = member.strip_prefix(&prefix) {
                        receipts.insert(user.to_owned(), receipt);
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(BuyersRead::Read(LiveBuyers { activity_id, fields, receipts }))
    }
}
