//! Running a sale: validated admin writes, paginated lists, warm-up on request, publishing the
//! static page, and the reconcile report. Every admin action is logged with who did it.
//!
//! - [`validation`]: paging and body checks (400s).
//! - [`catalog`]: products, activities, order lists, warm-up of one activity.
//! - [`publish`]: the static sale page, rendered and written.
//! - [`reconcile`]: invariant 1 for one activity.

pub mod catalog;
pub mod publish;
pub mod reconcile;
pub mod validation;

pub use catalog::{LimitsChange, Warmed};
pub use publish::{Pages, PublishError, Published, render_page};
pub use reconcile::{BucketReport, Reconcile};
pub use validation::{
    DEFAULT_PER, MAX_BURST, MAX_PER, MAX_PER_USER_PER_MIN, MAX_RATE_PER_SEC, MAX_STOCK, count, idempotency_key, paging,
};

use crate::{
    mysql::Db,
    redis::StoreError,
    sale::{Sale, SaleError},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    /// A change only allowed before the activity starts (its number of buckets).
    #[error("the activity has started")]
    Started,
    #[error("the page could not be published")]
    Publish(#[source] PublishError),
    #[error(transparent)]
    Sale(#[from] SaleError),
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sale(SaleError::Mysql(e))
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Sale(SaleError::Redis(e))
    }
}

/// The admin function's state: the sale (Redis, MySQL), where pages are published (the S3
/// client, built once) and the scope an admin token must carry (`ADMIN_SCOPE`).
pub struct Admin {
    pub sale: Sale,
    pub pages: Pages,
    pub admin_scope: String,
}

impl Admin {
    fn db(&self) -> &Db {
        &self.sale.db
    }
}
