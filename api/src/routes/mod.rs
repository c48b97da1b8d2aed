//! HTTP operations, one `#[OpenApi]` struct per area.

pub mod admin;
pub mod admin_orders;
pub mod auth;
pub mod cart;
pub mod catalog;
pub mod checkout;
mod direct_json;
pub mod flash;
pub mod ops;
pub mod orders;
pub mod search;
pub mod wishlist;

use poem_openapi::{Object, Tags};

pub use direct_json::DirectJson;

use crate::error::{ApiError, ErrorCode};
use emporium_entities::store::PageRequest;

#[derive(Tags)]
pub enum ApiTags {
    /// Accounts and tokens
    Auth,
    /// Browsing the catalogue
    Catalog,
    /// Product search and autocomplete
    Search,
    /// Carts of anonymous and signed-in shoppers
    Cart,
    /// Products saved for later
    Wishlist,
    /// Checking out: reserve, pay, cancel
    Checkout,
    /// Orders of the signed-in user
    Orders,
    /// Flash sales: entry, waiting room, claims
    FlashSales,
    /// Catalogue management (admin role)
    Admin,
    /// Health, readiness and metrics
    Operations,
}

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// Checks `page` (from 1) and `limit` (1 to `MAX_PAGE_SIZE`).
pub fn page_request(page: Option<i64>, limit: Option<i64>) -> Result<PageRequest, ApiError> {
    let page = page.unwrap_or(1);
    if page < 1 {
        return Err(ApiError::new(ErrorCode::InvalidPage, "page counts from 1"));
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE as i64);
    if limit < 1 {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit must be at least 1"));
    }
    if limit as u64 > MAX_PAGE_SIZE {
        return Err(ApiError::new(ErrorCode::LimitTooLarge, format!("limit must be at most {MAX_PAGE_SIZE}")));
    }
    Ok(PageRequest { page: page as u64, limit: limit as u64 })
}

/// An amount of money in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize)]
pub struct Money {
    /// Minor units, e.g. 1999 for 19.99.
    pub amount: i64,
    /// ISO 4217 code, e.g. "USD".
    pub currency: String,
}
