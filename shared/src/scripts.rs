//! The Lua scripts (`lua/*.lua`), loaded once per cold start and called by EVALSHA, and the one
//! place where their replies become Rust values.

use redis::{Script, Value};

pub struct Scripts {
    pub buy: Script,
    pub load_sale: Script,
    pub unlock: Script,
    pub restore: Script,
    pub claim: Script,
    pub ack: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            buy: Script::new(include_str!("../../lua/buy.lua")),
            load_sale: Script::new(include_str!("../../lua/load_sale.lua")),
            unlock: Script::new(include_str!("../../lua/unlock.lua")),
            restore: Script::new(include_str!("../../lua/restore.lua")),
            claim: Script::new(include_str!("../../lua/claim.lua")),
            ack: Script::new(include_str!("../../lua/ack.lua")),
        }
    }
}

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
}

/// The activity's per-instance token bucket settings, carried back by every reply so an
/// instance follows an admin's change without a deploy and without an extra round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rate_per_sec: u32,
    pub burst: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from {script}: {detail}")]
pub struct ReplyError {
    script: &'static str,
    detail: String,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Int(i) => Some(*i),
        other => text(Some(other))?.parse().ok(),
    }
}

impl BuyReply {
    pub fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let bad = |detail: String| ReplyError { script: "buy.lua", detail };
        let Value::Array(items) = value else {
            return Err(bad(format!("{value:?}")));
        };
        let code = int(items.first()).ok_or_else(|| bad(format!("{items:?}")))?;
        let detail = || text(items.get(1)).ok_or_else(|| bad(format!("{items:?}")));
        let limits = Limits {
            rate_per_sec: int(items.get(2)).and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            burst: int(items.get(3)).and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        };
        let detail_int = || int(items.get(1)).ok_or_else(|| bad(format!("{items:?}")));
        Ok(match code {
            0 => Self::NotLoaded,
            7 => Self::NoActivity,
            1 => Self::Queued {
                receipt: detail()?,
                message: text(items.get(4)).ok_or_else(|| bad(format!("{items:?}")))?,
                limits,
            },
            2 => Self::SoldOut { limits },
            3 => Self::AlreadyBought { receipt: detail()?, limits },
            4 => Self::NotStarted { starts_at_ms: detail_int()?, limits },
            5 => Self::Ended { ends_at_ms: detail_int()?, limits },
            6 => Self::UserLimited { retry_after_ms: detail_int()?, limits },
            other => return Err(bad(format!("code {other}"))),
        })
    }
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
            other => Err(ReplyError { script: "load_sale.lua", detail: format!("code {other}") }),
        }
    }
}

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
            other => Err(ReplyError { script: "restore.lua", detail: format!("code {other}") }),
        }
    }
}

/// One outbox entry `claim.lua` handed to this `outbox-retry` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub receipt: String,
    pub message: String,
    pub attempts: u32,
}

impl Claimed {
    pub fn from_value(value: &Value) -> Result<Vec<Self>, ReplyError> {
        let bad = |detail: String| ReplyError { script: "claim.lua", detail };
        let Value::Array(items) = value else { return Err(bad(format!("{value:?}"))) };
        items
            .chunks(3)
            .map(|c| {
                Ok(Self {
                    receipt: text(c.first()).ok_or_else(|| bad(format!("{c:?}")))?,
                    message: text(c.get(1)).ok_or_else(|| bad(format!("{c:?}")))?,
                    attempts: int(c.get(2)).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(format!("{c:?}")))?,
                })
            })
            .collect()
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
        let v = Value::Array(vec![Value::Int(1), bulk("3-7-alice-100"), Value::Int(500), Value::Int(50), bulk("{}")]);
        let reply = BuyReply::from_value(&v)?;
        assert_eq!(
            reply,
            BuyReply::Queued {
                receipt: "3-7-alice-100".into(),
                message: "{}".into(),
                limits: Limits { rate_per_sec: 500, burst: 50 }
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
