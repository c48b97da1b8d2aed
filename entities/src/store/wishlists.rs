use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct WishlistItem {
    pub product_id: i64,
    pub title: String,
    pub price_minor: i64,
    pub currency: String,
    pub available: i32,
    pub added_at: DateTime<Utc>,
}

/// Adds a live product to the wishlist (a no-op when it is there); `NotFound` for unknown or
/// deleted products.
pub async fn add<C: ConnectionTrait>(db: &C, user_id: Uuid, product_id: i64) -> Result<(), StoreError> {
    let inserted = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH live AS (SELECT id FROM products WHERE id = $2 AND deleted_at IS NULL), \
             ins AS (INSERT INTO wishlists (user_id, product_id) SELECT $1, id FROM live \
                     ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM live) AS live",
            [user_id.into(), product_id.into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "live"))
        .transpose()?
        .unwrap_or(false);
    if inserted { Ok(()) } else { Err(StoreError::NotFound) }
}

/// `NotFound` when the product was not on the wishlist.
pub async fn remove<C: ConnectionTrait>(db: &C, user_id: Uuid, product_id: i64) -> Result<(), StoreError> {
    let removed = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM wishlists WHERE user_id = $1 AND product_id = $2",
            [user_id.into(), product_id.into()],
        ))
        .await?
        .rows_affected();
    if removed == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// The wishlist, newest first, without products that left the catalogue.
pub async fn list<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Vec<WishlistItem>, StoreError> {
    Ok(WishlistItem::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT w.product_id, p.title, p.price_minor, p.currency, COALESCE(i.available, 0) AS available, w.added_at \
         FROM wishlists w JOIN products p ON p.id = w.product_id LEFT JOIN inventory i ON i.product_id = p.id \
         WHERE w.user_id = $1 AND p.deleted_at IS NULL ORDER BY w.added_at DESC, w.product_id",
        [user_id.into()],
    ))
    .all(db)
    .await?)
}
