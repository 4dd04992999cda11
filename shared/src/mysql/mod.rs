//! The MySQL adapter: one function per query, prepared statements only (sqlx), no ORM; the
//! migrations in `sql/`. Queries are grouped by table: [`catalog`] (products, activities),
//! [`orders`] (the pipeline's writes and reads), [`reports`] (admin lists and counts).
//!
//! `Db` counts the statements it sends, so a test can prove that a path never reached MySQL
//! (invariant 7: unknown product ids never do).

mod catalog;
mod orders;
mod reports;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use sqlx::{
    MySqlPool,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
};

use crate::config::MysqlConfig;

/// MySQL's error number for a unique-key violation.
const ER_DUP_ENTRY: &str = "1062";

fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(ER_DUP_ENTRY) || db.code().as_deref() == Some("23000"))
}

/// Sets the session's statement time limit: MariaDB's `max_statement_time` (every statement,
/// lock waits included), MySQL's `max_execution_time` (SELECTs); both get
/// `innodb_lock_wait_timeout` (whole seconds, at least 1) for row-lock waits.
async fn bound_statement_time(conn: &mut sqlx::MySqlConnection, limit: std::time::Duration) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut *conn).await?;
    let lock_secs = limit.as_secs().max(1);
    let set = if version.contains("MariaDB") {
        format!("SET SESSION max_statement_time = {:.3}, innodb_lock_wait_timeout = {lock_secs}", limit.as_secs_f64())
    } else {
        format!("SET SESSION max_execution_time = {}, innodb_lock_wait_timeout = {lock_secs}", limit.as_millis())
    };
    conn.execute(sqlx::AssertSqlSafe(set)).await?;
    Ok(())
}

/// A statement in flight: its time is recorded when the query function returns.
struct Statement(std::time::Instant);

impl Drop for Statement {
    fn drop(&mut self) {
        crate::telemetry::metrics::record_mysql(self.0.elapsed());
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../sql");

#[derive(Clone, Debug)]
pub struct Db {
    pool: MySqlPool,
    statements: Arc<AtomicU64>,
}

impl Db {
    /// A lazy pool: no connection is opened until a query needs one, so a cold start does not
    /// touch MySQL and the hot path (Redis only) never does. The URL was parsed (and its
    /// variable named on error) by `config`.
    /// Every connection bounds its statements' time on the server (`statement_timeout`):
    /// a statement stuck on a lock or a slow plan fails (503) instead of running until the
    /// Lambda timeout.
    pub fn connect_lazy(cfg: &MysqlConfig) -> Self {
        let limit = cfg.statement_timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .after_connect(move |conn, _| Box::pin(async move { bound_statement_time(conn, limit).await }))
            .connect_lazy_with(cfg.options.clone());
        Self::from_pool(pool)
    }

    pub fn from_pool(pool: MySqlPool) -> Self {
        Self { pool, statements: Arc::new(AtomicU64::new(0)) }
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Statements this handle has sent since it was made.
    pub fn statements_sent(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Counts one statement; the guard times it (until the query function returns) into the
    /// invocation's MySQL latencies.
    fn count(&self) -> Statement {
        self.statements.fetch_add(1, Ordering::Relaxed);
        Statement(std::time::Instant::now())
    }

    /// Creates the database named in the options if needed, then applies `sql/` migrations.
    #[tracing::instrument(skip_all, err)]
    pub async fn create_and_migrate(options: &MySqlConnectOptions) -> Result<(), sqlx::Error> {
        if let Some(name) = options.get_database().map(str::to_owned) {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(sqlx::Error::Configuration(
                    format!("database name {name:?} is not a plain identifier").into(),
                ));
            }
            let server = MySqlPoolOptions::new().max_connections(1).connect_with(options.clone().database("")).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")))
                .execute(&server)
                .await?;
            server.close().await;
        }
        let pool = MySqlPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(())
    }
}
