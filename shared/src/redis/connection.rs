//! The one Redis handle: a single node or a Redis Cluster, plain or TLS, chosen by
//! configuration (`REDIS_URL`, `REDIS_CLUSTER`, `REDIS_TLS_CA_FILE`). Nothing above this file
//! knows which one it runs on: both are an [`aio::ConnectionLike`], and every command this
//! crate sends is either keyed (routed by its key's slot) or sent in a pipeline whose first
//! keyed command names the slot (the cluster client routes the whole pipeline there).
//!
//! TLS is rustls with the aws-lc-rs provider, installed once per process: both ring and
//! aws-lc-rs are in the dependency graph, and rustls refuses to guess.

use std::{sync::Once, time::Duration};

use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, TlsCertificates, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};

use crate::config::RedisConfig;

/// A start-up failure: the variable to look at and why.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConnectError {
    pub var: &'static str,
    pub reason: String,
}

/// A single node (a multiplexed connection that reconnects by itself) or a cluster (a
/// connection per node, slot map refreshed on MOVED and after failures).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
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
        let mut builder = ClusterClientBuilder::new(vec![cfg.url.as_str()])
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.response_timeout)
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(500);
        if let Some(certs) = certificates(cfg) {
            builder = builder.certs(certs);
        }
        let client: ClusterClient = builder.build().map_err(bad_url)?;
        let conn = tokio::time::timeout(startup_deadline(cfg), client.get_async_connection())
            .await
            .map_err(|_| ConnectError { var: "REDIS_URL", reason: "the cluster did not answer in time".into() })?
            .map_err(|e| blame(cfg, &e))?;
        let mut conn = Conn::Cluster(conn);
        // The slot map was read from one node; a refused certificate shows on the first command.
        redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(|e| blame(cfg, &e))?;
        return Ok(conn);
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
