//! `lua/claim.lua`: claims outbox entries due for a resend, atomically, so overlapping
//! `outbox-retry` runs claim disjoint entries.

use std::{sync::LazyLock, time::Duration};

use redis::Value;

use super::{Lua, ReplyError, int, text};
use crate::redis::{RedisStore, StoreError};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/claim.lua")));

/// One outbox entry `claim.lua` handed to this `outbox-retry` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub receipt: String,
    pub message: String,
    /// Resends the queue accepted before this claim.
    pub attempts: u32,
}

/// What one claim returned: Redis' clock when it ran, and the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub now_ms: i64,
    pub entries: Vec<Claimed>,
}

impl Claim {
    pub fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let bad = |detail: String| ReplyError::new("claim.lua", detail);
        let Value::Array(items) = value else { return Err(bad(format!("{value:?}"))) };
        let now_ms = int(items.first()).ok_or_else(|| bad(format!("{items:?}")))?;
        let entries = items
            .get(1..)
            .unwrap_or_default()
            .chunks(3)
            .map(|c| {
                Ok(Claimed {
                    receipt: text(c.first()).ok_or_else(|| bad(format!("{c:?}")))?,
                    message: text(c.get(1)).ok_or_else(|| bad(format!("{c:?}")))?,
                    attempts: int(c.get(2)).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(format!("{c:?}")))?,
                })
            })
            .collect::<Result<_, ReplyError>>()?;
        Ok(Self { now_ms, entries })
    }
}

impl RedisStore {
    /// Claims up to `limit` entries due now (Redis' clock); claimed ones become due again
    /// after `backoff`.
    #[tracing::instrument(skip(self), err)]
    pub async fn claim_due(
        &self,
        product_id: crate::domain::Shard,
        backoff: Duration,
        limit: u32,
    ) -> Result<Claim, StoreError> {
        let k = &self.keys;
        let value: Value = self
            .run(
                SCRIPT
                    .key(k.outbox(product_id))
                    .key(k.outbox_due(product_id))
                    .key(k.outbox_attempts(product_id))
                    .arg(backoff.as_millis() as u64)
                    .arg(limit),
            )
            .await?;
        Ok(Claim::from_value(&value)?)
    }
}
