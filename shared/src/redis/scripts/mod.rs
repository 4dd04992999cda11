//! The Lua scripts (`lua/*.lua`), one file each: its [`Lua`] (hashed once per process, called
//! by EVALSHA), its invocation as a [`RedisStore`](super::RedisStore) method with the KEYS and
//! ARGV order the script documents, and the enum its reply becomes. A reply is read in exactly
//! one place, next to the script's own contract.
//!
//! Every call goes through [`RedisStore::run`]: EVALSHA, routed by the slot of its first key;
//! a NOSCRIPT answer (the node restarted, a replica was promoted, `SCRIPT FLUSH`) is answered
//! by sending the same call once as EVAL, which runs the script and caches it on that node. No
//! path assumes a script was loaded beforehand, none sends `SCRIPT LOAD` to every node, and no
//! script is sent inside a pipeline.

pub mod ack;
pub mod buy;
pub mod claim;
pub mod give;
pub mod load_sale;
pub mod restore;
pub mod sent;
pub mod take;
pub mod unlock;

use redis::{Cmd, FromRedisValue, RedisError, ToRedisArgs, Value};

use super::{RedisStore, connection::is_noscript};

/// A Lua script: its source and its SHA1.
pub struct Lua {
    code: &'static str,
    sha: String,
}

impl Lua {
    pub fn new(code: &'static str) -> Self {
        Self { code, sha: redis::Script::new(code).get_hash().to_owned() }
    }

    /// A call of this script, its first key given (the key whose slot routes the call).
    pub fn key(&self, key: impl ToRedisArgs) -> Call<'_> {
        let mut call = Call { lua: self, keys: Vec::new(), args: Vec::new() };
        call.key(key);
        call
    }
}

/// One call of a script: its KEYS and ARGV in order.
pub struct Call<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    pub fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// EVALSHA (`by_sha`) or EVAL with the script's source.
    fn cmd(&self, by_sha: bool) -> Cmd {
        let mut cmd = if by_sha { redis::cmd("EVALSHA") } else { redis::cmd("EVAL") };
        cmd.arg(if by_sha { self.lua.sha.as_str() } else { self.lua.code }).arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k.as_slice());
        }
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd
    }
}

impl RedisStore {
    /// Runs a script: EVALSHA, and on NOSCRIPT the same call once as EVAL.
    pub async fn run<T: FromRedisValue>(&self, call: &Call<'_>) -> Result<T, RedisError> {
        let mut conn = self.conn();
        match call.cmd(true).query_async(&mut conn).await {
            Err(e) if is_noscript(&e) => {
                tracing::info!("script not cached on the node (restart, failover or flush); sent as EVAL");
                call.cmd(false).query_async(&mut conn).await
            }
            other => other,
        }
    }
}

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
