//! Our ledger of charges and refunds. Card data is never stored: only the gateway's reference.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::StoreError;

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Payment {
    pub id: Uuid,
    pub checkout_id: Option<Uuid>,
    pub idempotency_key: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub currency: String,
    pub status: String,
    pub gateway: String,
    pub gateway_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

const COLUMNS: &str = "id, checkout_id, idempotency_key, amount_minor, refunded_minor, currency, status, gateway, \
    gateway_reference, failure_code, failure_message";

/// What a payment pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purchase {
    Checkout(Uuid),
    FlashClaim(Uuid),
}

/// The payment for `idempotency_key`, created PROCESSING if it does not exist yet.
pub async fn begin_charge<C: ConnectionTrait>(
    db: &C,
    idempotency_key: &str,
    purchase: Purchase,
    amount_minor: i64,
    currency: &str,
    gateway: &str,
) -> Result<Payment, StoreError> {
    let (checkout_id, flash_claim_id) = match purchase {
        Purchase::Checkout(id) => (Some(id), None),
        Purchase::FlashClaim(id) => (None, Some(id)),
    };
    db.execute_raw(stmt(
        "INSERT INTO payments (id, checkout_id, flash_claim_id, idempotency_key, amount_minor, currency, status, gateway) \
         VALUES ($1, $2, $3, $4, $5, $6, 'PROCESSING', $7) ON CONFLICT (idempotency_key) DO NOTHING",
        vec![
            Uuid::now_v7().into(),
            checkout_id.into(),
            flash_claim_id.into(),
            idempotency_key.into(),
            amount_minor.into(),
            currency.into(),
            gateway.into(),
        ],
    ))
    .await?;
    Payment::find_by_statement(stmt(&format!("SELECT {COLUMNS} FROM payments WHERE idempotency_key = $1"), vec![idempotency_key.into()]))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

pub async fn find_by_key<C: ConnectionTrait>(db: &C, idempotency_key: &str) -> Result<Option<Payment>, StoreError> {
    Ok(Payment::find_by_statement(stmt(
        &format!("SELECT {COLUMNS} FROM payments WHERE idempotency_key = $1"),
        vec![idempotency_key.into()],
    ))
    .one(db)
    .await?)
}

pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<Payment>, StoreError> {
    Ok(Payment::find_by_statement(stmt(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"), vec![id.into()])).one(db).await?)
}

pub async fn mark_completed<C: ConnectionTrait>(db: &C, id: Uuid, reference: &str) -> Result<(), StoreError> {
    db.execute_raw(stmt(
        "UPDATE payments SET status = 'COMPLETED', gateway_reference = $2, updated_at = now() WHERE id = $1 AND status = 'PROCESSING'",
        vec![id.into(), reference.into()],
    ))
    .await?;
    Ok(())
}

pub async fn mark_failed<C: ConnectionTrait>(db: &C, id: Uuid, code: &str, message: &str) -> Result<(), StoreError> {
    db.execute_raw(stmt(
        "UPDATE payments SET status = 'FAILED', failure_code = $2, failure_message = $3, updated_at = now() \
         WHERE id = $1 AND status = 'PROCESSING'",
        vec![id.into(), code.into(), message.into()],
    ))
    .await?;
    Ok(())
}

/// Records a completed refund of `amount_minor` once per idempotency key and moves the payment
/// to REFUNDED or PARTIALLY_REFUNDED.
pub async fn record_refund<C: ConnectionTrait>(
    db: &C,
    payment_id: Uuid,
    idempotency_key: &str,
    amount_minor: i64,
    currency: &str,
    reason: &str,
    reference: &str,
) -> Result<(), StoreError> {
    let inserted = db
        .execute_raw(stmt(
            "INSERT INTO refunds (id, payment_id, idempotency_key, amount_minor, currency, status, reason, gateway_reference, attempts) \
             VALUES ($1, $2, $3, $4, $5, 'COMPLETED', $6, $7, 1) ON CONFLICT (idempotency_key) DO NOTHING",
            vec![
                Uuid::now_v7().into(),
                payment_id.into(),
                idempotency_key.into(),
                amount_minor.into(),
                currency.into(),
                reason.into(),
                reference.into(),
            ],
        ))
        .await?
        .rows_affected();
    if inserted == 1 {
        db.execute_raw(stmt(
            "UPDATE payments SET refunded_minor = refunded_minor + $2, \
             status = CASE WHEN refunded_minor + $2 >= amount_minor THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END, \
             updated_at = now() WHERE id = $1",
            vec![payment_id.into(), amount_minor.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Whether a refund under `idempotency_key` is recorded.
pub async fn refund_recorded<C: ConnectionTrait>(db: &C, idempotency_key: &str) -> Result<bool, StoreError> {
    Ok(db.query_one_raw(stmt("SELECT 1 AS one FROM refunds WHERE idempotency_key = $1", vec![idempotency_key.into()])).await?.is_some())
}
