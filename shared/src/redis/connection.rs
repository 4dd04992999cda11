//! The one Redis handle: a single node or a Redis Cluster, plain or TLS, chosen by
//! configuration (`REDIS_URL`, `REDIS_CLUSTER`, `REDIS_TLS_CA_FILE`). Nothing above this file
//! knows which one it runs on: both are an [`aio::ConnectionLike`], and every command this
//! crate sends is either keyed (routed by its key's slot) or sent in a pipeline whose first
//! keyed command names the slot (the cluster client routes the whole pipeline there).
//!
//! TLS is rustls with the aws-lc-rs provider, installed once per process: both ring and
//! aws-lc-rs are in the dependency graph, and rustls refuses to guess.

use std::{
    sync::{Arc, Mutex, Once, RwLock},
    time::{Duration, Instant},
};

use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, TlsCertificates, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};

use crate::{config::RedisConfig, telemetry::metrics};

/// A start-up failure: the variable to look at and why.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConnectError {
    pub var: &'static str,
    pub reason: String,
}

/// A single node (a multiplexed connection that reconnects by itself) or a cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(Cluster),
}

/// A cluster connection that is replaced when it stops working.
///
/// The `redis` crate's cluster connection follows MOVED/ASK and refreshes its slot map on
/// them, but when a primary dies under concurrent load it keeps reconnecting to the dead
/// address and never asks the survivors who owns the slots now (seen here: every request
/// failed for minutes after a SIGKILL; redis-rs issues #1005, #2277), and a transaction
/// (MULTI/EXEC) answered MOVED is returned as an error, not followed. So a connection-class
/// error (I/O, timeout, refused, CLUSTERDOWN, MOVED) makes this handle build a new connection —
/// from the configured URL and every node the last topology named, so a dead first node does
/// not matter — at most once per `REBUILD_EVERY` (concurrent callers wait for the one
/// rebuild), swap it in and send the command once more on it. If that fails too the caller
/// gets the error (503, nothing promised). Every script here is safe to send twice: a buy
/// that did run answers `already_bought` with its receipt the second time.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

struct ClusterInner {
    current: RwLock<ClusterConnection>,
    /// Bumped by every swap: a caller that waited for the rebuild lock sees whether someone
    /// else rebuilt meanwhile.
    generation: std::sync::atomic::AtomicU64,
    rebuild: tokio::sync::Mutex<()>,
    cfg: RedisConfig,
    /// Nodes the last topology named (`host:port`), tried besides the configured URL.
    known: Mutex<Vec<String>>,
    last_rebuild: Mutex<Option<Instant>>,
}

const REBUILD_EVERY: Duration = Duration::from_millis(500);

impl Cluster {
    fn connection(&self) -> ClusterConnection {
        match self.inner.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// After a connection-class error seen on connection `generation`: true when a newer
    /// connection is in place (rebuilt here or by a concurrent caller) and worth one retry.
    async fn recover(&self, e: &RedisError, seen: u64) -> bool {
        use redis::ServerErrorKind::{ClusterDown, ExecAbort, Moved};
        let connection_class = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.kind() == ErrorKind::Server(ClusterDown)
            || e.kind() == ErrorKind::Server(Moved)
            // A transaction (MULTI/EXEC) refused with MOVED inside: the client does not follow
            // those; it ran nothing, so it is safe to send again once the topology is read.
            || (e.kind() == ErrorKind::Server(ExecAbort) && e.to_string().contains("Moved"));
        if !connection_class {
            return false;
        }
        let _one_at_a_time = self.inner.rebuild.lock().await;
        if self.generation() != seen {
            return true;
        }
        {
            let Ok(mut last) = self.inner.last_rebuild.lock() else { return false };
            if last.is_some_and(|t| t.elapsed() < REBUILD_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let nodes = self.inner.known.lock().map(|k| k.clone()).unwrap_or_default();
        match connect_cluster(&self.inner.cfg, &nodes).await {
            Ok((conn, known)) => {
                tracing::warn!(error = %e, "redis cluster connection rebuilt after a connection error; topology read again");
                if let Ok(mut current) = self.inner.current.write() {
                    *current = conn;
                }
                if let Ok(mut k) = self.inner.known.lock() {
                    *k = known;
                }
                self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis cluster connection could not be rebuilt yet");
                false
            }
        }
    }
}

/// Every round trip is timed into the invocation's latencies (`telemetry::metrics::calls`).
impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let started = Instant::now();
            let reply = match self {
                Conn::Single(c) => c.req_packed_command(cmd).await,
                Conn::Cluster(c) => {
                    let seen = c.generation();
                    match c.connection().req_packed_command(cmd).await {
                        Err(e) if c.recover(&e, seen).await => c.connection().req_packed_command(cmd).await,
                        other => other,
                    }
                }
            };
            metrics::record_redis(started.elapsed());
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let started = Instant::now();
            let reply = match self {
                Conn::Single(c) => c.req_packed_commands(cmd, offset, count).await,
                Conn::Cluster(c) => {
                    let seen = c.generation();
                    match c.connection().req_packed_commands(cmd, offset, count).await {
                        Err(e) if c.recover(&e, seen).await => {
                            c.connection().req_packed_commands(cmd, offset, count).await
                        }
                        other => other,
                    }
                }
            };
            metrics::record_redis(started.elapsed());
            reply
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Conn {
    /// The cluster connection in use now (for commands routed by hand, e.g. to one node).
    pub fn cluster_connection(&self) -> Option<ClusterConnection> {
        match self {
            Conn::Cluster(c) => Some(c.connection()),
            Conn::Single(_) => None,
        }
    }
}

/// Connects to the cluster through the configured URL or any of `nodes`, and reads the
/// addresses of every node it names (for the next rebuild).
async fn connect_cluster(cfg: &RedisConfig, nodes: &[String]) -> Result<(ClusterConnection, Vec<String>), RedisError> {
    let scheme = if cfg.url.starts_with("rediss://") { "rediss" } else { "redis" };
    let mut initial = vec![cfg.url.clone()];
    initial.extend(nodes.iter().map(|n| format!("{scheme}://{n}")));
    let mut builder = ClusterClientBuilder::new(initial)
        .connection_timeout(cfg.connect_timeout)
        .response_timeout(cfg.response_timeout)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500);
    if let Some(certs) = certificates(cfg) {
        builder = builder.certs(certs);
    }
    let client: ClusterClient = builder.build()?;
    let mut conn = tokio::time::timeout(startup_deadline(cfg), client.get_async_connection())
        .await
        .map_err(|_| RedisError::from((ErrorKind::Io, "the cluster did not answer in time")))??;
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await?;
    Ok((conn, node_addresses(&slots)))
}

/// Every `host:port` a `CLUSTER SLOTS` reply names (primaries and replicas).
fn node_addresses(slots: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for range in slots {
        let Value::Array(items) = range else { continue };
        for node in items.iter().skip(2) {
            let Value::Array(fields) = node else { continue };
            let host = fields.first().and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
            let port = fields.get(1).and_then(|v| redis::from_redis_value_ref::<u16>(v).ok());
            if let (Some(host), Some(port)) = (host, port) {
                let address = format!("{host}:{port}");
                if !host.is_empty() && !out.contains(&address) {
                    out.push(address);
                }
            }
        }
    }
    out
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only if another provider was installed first, which is then the one in use.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

fn certificates(cfg: &RedisConfig) -> Option<TlsCertificates> {
    cfg.tls_ca.as_ref().map(|ca| TlsCertificates { client_tls: None, root_cert: Some(ca.pem.clone()) })
}

/// Which variable a connection failure points at: a refused certificate is the CA's (or,
/// with the system roots, the URL's host); anything else is the URL's.
fn blame(cfg: &RedisConfig, e: &RedisError) -> ConnectError {
    let text = format!("{e}");
    let certificate = text.contains("certificate") || text.contains("UnknownIssuer") || text.contains("handshake");
    let var = if certificate && cfg.tls_ca.is_some() { "REDIS_TLS_CA_FILE" } else { "REDIS_URL" };
    let reason = if certificate {
        format!("the server's TLS certificate was refused ({text})")
    } else {
        format!("could not connect to {} ({text})", if cfg.cluster { "the cluster" } else { "redis" })
    };
    ConnectError { var, reason }
}

/// Opens the configured connection.
///
/// Single node: lazy (a cold start does not fail because Redis is briefly away; a request
/// that finds it away gets 503), but one PING is tried at start-up so a refused certificate
/// is a start-up error naming its variable rather than a 503 on every request.
/// Cluster: the topology is read at start-up (an unreachable cluster or a refused certificate
/// is a start-up error naming the variable); afterwards the client follows MOVED/ASK and
/// refreshes its slot map after failovers.
pub async fn open(cfg: &RedisConfig) -> Result<Conn, ConnectError> {
    install_crypto_provider();
    let bad_url = |e: RedisError| ConnectError { var: "REDIS_URL", reason: e.to_string() };
    if cfg.cluster {
        let (conn, known) = connect_cluster(cfg, &[]).await.map_err(|e| blame(cfg, &e))?;
        return Ok(Conn::Cluster(Cluster {
            inner: Arc::new(ClusterInner {
                current: RwLock::new(conn),
                generation: std::sync::atomic::AtomicU64::new(0),
                rebuild: tokio::sync::Mutex::new(()),
                cfg: cfg.clone(),
                known: Mutex::new(known),
                last_rebuild: Mutex::new(None),
            }),
        }));
    }
    let client = match certificates(cfg) {
        Some(certs) => redis::Client::build_with_tls(cfg.url.as_str(), certs),
        None => redis::Client::open(cfg.url.as_str()),
    }
    .map_err(bad_url)?;
    let manager_cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    let mut conn = Conn::Single(ConnectionManager::new_lazy_with_config(client, manager_cfg).map_err(bad_url)?);
    match tokio::time::timeout(startup_deadline(cfg), redis::cmd("PING").query_async::<()>(&mut conn)).await {
        Ok(Err(e)) if is_tls_refusal(&e) => return Err(blame(cfg, &e)),
        Ok(Err(e)) => tracing::warn!(error = %e, "redis is not reachable at start-up; requests answer 503 until it is"),
        Err(_) => tracing::warn!("redis did not answer at start-up; requests answer 503 until it does"),
        Ok(Ok(())) => {}
    }
    Ok(conn)
}

fn startup_deadline(cfg: &RedisConfig) -> Duration {
    cfg.connect_timeout + cfg.response_timeout
}

fn is_tls_refusal(e: &RedisError) -> bool {
    let text = e.to_string();
    text.contains("certificate") || text.contains("UnknownIssuer")
}

/// True when the error is Redis' NOSCRIPT (the script cache was emptied: a restart, a
/// failover, `SCRIPT FLUSH`).
pub fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
