//! Store functions: every read and write of the records goes through here.

pub mod carts;
pub mod catalog;
pub mod checkouts;
pub mod flash_sales;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod search;
pub mod users;
pub mod wishlists;

use sea_orm::{DbErr, SqlErr};

/// What a store call can refuse, apart from database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key already holds this value; the string names the constraint.
    #[error("duplicate value for {0}")]
    Duplicate(String),
    #[error(transparent)]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => StoreError::Duplicate(detail),
            _ => StoreError::Db(err),
        }
    }
}

/// Pagination already checked by the caller: `page` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub limit: u64,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        (self.page - 1) * self.limit
    }
}
