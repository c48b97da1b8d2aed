//! The checkout record in Postgres, written by the checkout activities.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct CheckoutRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
    pub lines: serde_json::Value,
    pub reserved_until: Option<DateTime<Utc>>,
    pub order_id: Option<Uuid>,
    pub failure_code: Option<String>,
}

pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<CheckoutRecord>, StoreError> {
    Ok(CheckoutRecord::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, user_id, status, currency, subtotal_minor, tax_minor, shipping_minor, total_minor, lines, \
         reserved_until, order_id, failure_code FROM checkouts WHERE id = $1",
        [id.into()],
    ))
    .one(db)
    .await?)
}

pub async fn insert<C: ConnectionTrait>(db: &C, record: &CheckoutRecord) -> Result<(), StoreError> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO checkouts (id, user_id, status, currency, subtotal_minor, tax_minor, shipping_minor, total_minor, \
         lines, reserved_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            record.id.into(),
            record.user_id.into(),
            record.status.clone().into(),
            record.currency.clone().into(),
            record.subtotal_minor.into(),
            record.tax_minor.into(),
            record.shipping_minor.into(),
            record.total_minor.into(),
            record.lines.clone().into(),
            record.reserved_until.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Moves a checkout to `status` unless it has already ended (COMPLETED is never undone).
pub async fn set_status<C: ConnectionTrait>(db: &C, id: Uuid, status: &str, failure: Option<&str>) -> Result<(), StoreError> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE checkouts SET status = $2, failure_code = COALESCE($3, failure_code), updated_at = now() \
         WHERE id = $1 AND status <> 'COMPLETED'",
        [id.into(), status.into(), failure.map(str::to_owned).into()],
    ))
    .await?;
    Ok(())
}

/// Marks the checkout COMPLETED with its order.
pub async fn complete<C: ConnectionTrait>(db: &C, id: Uuid, order_id: Uuid) -> Result<(), StoreError> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE checkouts SET status = 'COMPLETED', order_id = $2, updated_at = now() WHERE id = $1",
        [id.into(), order_id.into()],
    ))
    .await?;
    Ok(())
}

/// Serialises work on one checkout for the rest of the caller's transaction (works before the
/// checkout row exists).
pub async fn lock_id<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), StoreError> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        [id.to_string().into()],
    ))
    .await?;
    Ok(())
}

/// Moves an AWAITING_PAYMENT checkout to PAYING (a retry finds it PAYING already). `false`
/// when the checkout is no longer waiting (expired by the sweeper, say): it must not be charged.
pub async fn start_paying<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<bool, StoreError> {
    let moved = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE checkouts SET status = 'PAYING', updated_at = now() WHERE id = $1 AND status IN ('AWAITING_PAYMENT', 'PAYING')",
            [id.into()],
        ))
        .await?
        .rows_affected();
    Ok(moved == 1)
}
