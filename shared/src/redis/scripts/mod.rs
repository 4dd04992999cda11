//! The Lua scripts (`lua/*.lua`), one file each: its `Script` (hashed once per process, called
//! by EVALSHA), its invocation as a [`RedisStore`](super::RedisStore) method with the KEYS and
//! ARGV order the script documents, and the enum its reply becomes. A reply is read in exactly
//! one place, next to the script's own contract.

pub mod ack;
pub mod buy;
pub mod claim;
pub mod load_sale;
pub mod restore;
pub mod sent;
pub mod unlock;

use redis::Value;

#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from {script}: {detail}")]
pub struct ReplyError {
    script: &'static str,
    detail: String,
}

impl ReplyError {
    pub(crate) fn new(script: &'static str, detail: impl Into<String>) -> Self {
        Self { script, detail: detail.into() }
    }
}

pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Int(i) => Some(*i),
        other => text(Some(other))?.parse().ok(),
    }
}
