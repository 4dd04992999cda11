//! `lua/restore.lua`: gives a returned purchase's unit back, once per receipt.

use std::sync::LazyLock;

use super::{Lua, ReplyError};
use crate::redis::{RedisStore, StoreError};

static SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("../../../../lua/restore.lua")));

/// What `restore.lua` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreReply {
    Restored,
    AlreadyRestored,
    /// Recorded as returned, but there was no unit to give back (another activity is live,
    /// or the stock is unlimited).
    NothingToRestore,
    NotLoaded,
}

impl RestoreReply {
    pub fn from_code(code: i64) -> Result<Self, ReplyError> {
        match code {
            1 => Ok(Self::Restored),
            0 => Ok(Self::AlreadyRestored),
            2 => Ok(Self::NothingToRestore),
            -1 => Ok(Self::NotLoaded),
            other => Err(ReplyError::new("restore.lua", format!("code {other}"))),
        }
    }
}

impl RedisStore {
    #[tracing::instrument(skip(self), err)]
    pub async fn restore(&self, product_id: u64, activity_id: u64, receipt: &str) -> Result<RestoreReply, StoreError> {
        let k = &self.keys;
        // The bucket that sold it: its stock, its restored set, its outbox.
        let shard = crate::redis::shard_of(product_id, receipt);
        let code: i64 = self
            .run(
                SCRIPT
                    .key(k.sale(shard))
                    .key(k.restored(shard))
                    .key(k.outbox(shard))
                    .key(k.outbox_due(shard))
                    .key(k.outbox_attempts(shard))
                    .arg(receipt)
                    .arg(activity_id),
            )
            .await?;
        Ok(RestoreReply::from_code(code)?)
    }
}
