//! Flash sales in Postgres: the sale, its units set aside from normal stock, and the durable
//! record of every claim. Redis admits entries at speed; Postgres has the last word on who
//! won, so nothing is sold twice even if Redis forgets.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::{StoreError, inventory};

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Owner of the reservation that holds a sale's units.
pub fn stock_owner(sale_id: Uuid) -> String {
    format!("flash-sale:{sale_id}")
}

/// How long after the end the sale's set-aside reservation may live before the reservation
/// sweeper returns it (reconciliation normally does that within minutes).
const SET_ASIDE_GRACE_HOURS: i64 = 24;

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct FlashSale {
    pub id: Uuid,
    pub product_id: i64,
    pub price_minor: i64,
    pub currency: String,
    pub quantity: i32,
    pub per_user_limit: i32,
    pub admission_per_sec: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: String,
    pub sold: i32,
    pub returned_to_stock: i32,
    pub reconciliation: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

const SALE_COLUMNS: &str = "id, product_id, price_minor, currency, quantity, per_user_limit, admission_per_sec, starts_at, ends_at, status, sold, \
    returned_to_stock, reconciliation, created_at";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSale {
    pub product_id: i64,
    pub price_minor: i64,
    pub currency: String,
    pub quantity: i32,
    pub per_user_limit: i32,
    /// Entries admitted per second before the waiting room; 0 for none.
    pub admission_per_sec: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateSaleError {
    #[error("product not found")]
    ProductNotFound,
    #[error("only {available} units are available")]
    NotEnoughStock { available: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the sale and sets its units aside from the product's stock, in `tx`.
pub async fn create(tx: &DatabaseTransaction, sale: &NewSale) -> Result<FlashSale, CreateSaleError> {
    let live = tx
        .query_one_raw(stmt("SELECT id FROM products WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", vec![sale.product_id.into()]))
        .await
        .map_err(StoreError::from)?;
    if live.is_none() {
        return Err(CreateSaleError::ProductNotFound);
    }
    let id = Uuid::now_v7();
    let until = sale.ends_at + Duration::hours(SET_ASIDE_GRACE_HOURS);
    if let Err(available) = inventory::set_aside(tx, &stock_owner(id), sale.product_id, sale.quantity, until).await? {
        return Err(CreateSaleError::NotEnoughStock { available });
    }
    let created = FlashSale::find_by_statement(stmt(
        &format!(
            "INSERT INTO flash_sales (id, product_id, price_minor, currency, quantity, per_user_limit, starts_at, ends_at, \
             admission_per_sec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {SALE_COLUMNS}"
        ),
        vec![
            id.into(),
            sale.product_id.into(),
            sale.price_minor.into(),
            sale.currency.clone().into(),
            sale.quantity.into(),
            sale.per_user_limit.into(),
            sale.starts_at.into(),
            sale.ends_at.into(),
            sale.admission_per_sec.into(),
        ],
    ))
    .one(tx)
    .await
    .map_err(StoreError::from)?
    .ok_or(StoreError::NotFound)?;
    Ok(created)
}

pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<FlashSale>, StoreError> {
    Ok(FlashSale::find_by_statement(stmt(&format!("SELECT {SALE_COLUMNS} FROM flash_sales WHERE id = $1"), vec![id.into()]))
        .one(db)
        .await?)
}

pub async fn set_status<C: ConnectionTrait>(db: &C, id: Uuid, status: &str) -> Result<(), StoreError> {
    db.execute_raw(stmt(
        "UPDATE flash_sales SET status = $2, updated_at = now() WHERE id = $1 AND status NOT IN ('RECONCILED') AND status <> $2",
        vec![id.into(), status.into()],
    ))
    .await?;
    Ok(())
}

/// Units of a sale by claim state, from Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromQueryResult)]
pub struct ClaimFigures {
    /// Held by claims waiting for payment (CLAIMED or PAYING).
    pub open: i64,
    pub paid: i64,
    pub expired: i64,
}

pub async fn figures<C: ConnectionTrait>(db: &C, sale_id: Uuid) -> Result<ClaimFigures, StoreError> {
    Ok(ClaimFigures::find_by_statement(stmt(
        "SELECT COALESCE(SUM(quantity) FILTER (WHERE status IN ('CLAIMED', 'PAYING')), 0)::bigint AS open, \
         COALESCE(SUM(quantity) FILTER (WHERE status = 'PAID'), 0)::bigint AS paid, \
         COALESCE(SUM(quantity) FILTER (WHERE status = 'EXPIRED'), 0)::bigint AS expired \
         FROM flash_sale_claims WHERE sale_id = $1",
        vec![sale_id.into()],
    ))
    .one(db)
    .await?
    .unwrap_or_default())
}

/// Units a user holds or bought in a sale, and their open claim if any.
pub async fn user_units<C: ConnectionTrait>(db: &C, sale_id: Uuid, user_id: Uuid) -> Result<i64, StoreError> {
    Ok(db
        .query_one_raw(stmt(
            "SELECT COALESCE(SUM(quantity), 0)::bigint AS n FROM flash_sale_claims \
             WHERE sale_id = $1 AND user_id = $2 AND status IN ('CLAIMED', 'PAYING', 'PAID')",
            vec![sale_id.into(), user_id.into()],
        ))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0))
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Claim {
    pub id: Uuid,
    pub sale_id: Uuid,
    pub user_id: Uuid,
    pub quantity: i32,
    pub status: String,
    pub order_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

const CLAIM_COLUMNS: &str = "id, sale_id, user_id, quantity, status, order_id, expires_at";

pub async fn find_claim<C: ConnectionTrait>(db: &C, claim_id: Uuid) -> Result<Option<Claim>, StoreError> {
    Ok(Claim::find_by_statement(stmt(&format!("SELECT {CLAIM_COLUMNS} FROM flash_sale_claims WHERE id = $1"), vec![claim_id.into()]))
        .one(db)
        .await?)
}

/// What Postgres says to a claim Redis admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    Recorded(Claim),
    /// The user already holds this open claim.
    Existing(Claim),
    SoldOut,
    LimitReached,
}

/// Records a claim if the sale still has a unit for it and the user is under their limit,
/// deciding under the sale's row lock, so Postgres never lets more claims win than there are
/// units whatever Redis believes.
pub async fn record_claim(
    tx: &DatabaseTransaction,
    sale: &FlashSale,
    user_id: Uuid,
    claim_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<ClaimDecision, StoreError> {
    tx.execute_raw(stmt("SELECT id FROM flash_sales WHERE id = $1 FOR UPDATE", vec![sale.id.into()])).await?;
    if let Some(open) = Claim::find_by_statement(stmt(
        &format!("SELECT {CLAIM_COLUMNS} FROM flash_sale_claims WHERE sale_id = $1 AND user_id = $2 AND status IN ('CLAIMED', 'PAYING')"),
        vec![sale.id.into(), user_id.into()],
    ))
    .one(tx)
    .await?
    {
        return Ok(ClaimDecision::Existing(open));
    }
    let figures = figures(tx, sale.id).await?;
    if figures.open + figures.paid >= i64::from(sale.quantity) {
        return Ok(ClaimDecision::SoldOut);
    }
    if user_units(tx, sale.id, user_id).await? >= i64::from(sale.per_user_limit) {
        return Ok(ClaimDecision::LimitReached);
    }
    let claim = Claim::find_by_statement(stmt(
        &format!(
            "INSERT INTO flash_sale_claims (id, sale_id, user_id, quantity, status, expires_at) \
             VALUES ($1, $2, $3, 1, 'CLAIMED', $4) RETURNING {CLAIM_COLUMNS}"
        ),
        vec![claim_id.into(), sale.id.into(), user_id.into(), expires_at.into()],
    ))
    .one(tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(ClaimDecision::Recorded(claim))
}

/// Moves a claim to PAYING unless it has expired; a claim already PAYING or PAID (a retried
/// step) is returned as it is. `None` when it can no longer be paid.
pub async fn begin_payment<C: ConnectionTrait>(db: &C, claim_id: Uuid) -> Result<Option<Claim>, StoreError> {
    let moved = Claim::find_by_statement(stmt(
        &format!(
            "UPDATE flash_sale_claims SET status = 'PAYING', updated_at = now() \
             WHERE id = $1 AND status = 'CLAIMED' AND expires_at > now() RETURNING {CLAIM_COLUMNS}"
        ),
        vec![claim_id.into()],
    ))
    .one(db)
    .await?;
    if moved.is_some() {
        return Ok(moved);
    }
    Ok(find_claim(db, claim_id).await?.filter(|c| c.status == "PAYING" || c.status == "PAID"))
}

/// Ends an unpaid claim (expired, declined): `true` if this call ended it, so its unit goes
/// back exactly once. A PAYING claim ends only with `even_paying` (its charge was declined).
pub async fn expire_claim<C: ConnectionTrait>(db: &C, claim_id: Uuid, even_paying: bool) -> Result<bool, StoreError> {
    let statuses = if even_paying { "('CLAIMED', 'PAYING')" } else { "('CLAIMED')" };
    Ok(db
        .execute_raw(stmt(
            &format!("UPDATE flash_sale_claims SET status = 'EXPIRED', updated_at = now() WHERE id = $1 AND status IN {statuses}"),
            vec![claim_id.into()],
        ))
        .await?
        .rows_affected()
        == 1)
}

/// Expires the sale's claims (of `user`, if given) still CLAIMED a minute after they expired:
/// their workflow never started (the API died between recording the claim and starting it), or
/// it would have ended them. Returns how many; their units go back with the other expired
/// claims' (`expired_claims`).
pub async fn expire_abandoned_claims<C: ConnectionTrait>(db: &C, sale_id: Uuid, user: Option<Uuid>) -> Result<u64, StoreError> {
    Ok(db
        .execute_raw(stmt(
            "UPDATE flash_sale_claims SET status = 'EXPIRED', updated_at = now() \
             WHERE sale_id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND status = 'CLAIMED' \
               AND expires_at < now() - interval '1 minute'",
            vec![sale_id.into(), user.into()],
        ))
        .await?
        .rows_affected())
}

/// The sale's EXPIRED claims (of `user`, if given) as (claim, user): whose units must be back on
/// the counter. Giving one back twice is harmless (`flash_redis::give_back` is once per claim).
pub async fn expired_claims<C: ConnectionTrait>(db: &C, sale_id: Uuid, user: Option<Uuid>) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
        user_id: Uuid,
    }
    let rows = Row::find_by_statement(stmt(
        "SELECT id, user_id FROM flash_sale_claims WHERE sale_id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND status = 'EXPIRED'",
        vec![sale_id.into(), user.into()],
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.user_id)).collect())
}

/// Marks the claim PAID with its order and sells its unit from the sale's set-aside stock.
pub async fn complete_claim(tx: &DatabaseTransaction, claim: &Claim, product_id: i64, order_id: Uuid) -> Result<(), StoreError> {
    let updated = tx
        .execute_raw(stmt(
            "UPDATE flash_sale_claims SET status = 'PAID', order_id = $2, updated_at = now() WHERE id = $1 AND status = 'PAYING'",
            vec![claim.id.into(), order_id.into()],
        ))
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    inventory::sell_set_aside(tx, &stock_owner(claim.sale_id), product_id, claim.quantity).await?;
    tx.execute_raw(stmt(
        "UPDATE flash_sales SET sold = sold + $2, updated_at = now() WHERE id = $1",
        vec![claim.sale_id.into(), claim.quantity.into()],
    ))
    .await?;
    Ok(())
}

/// The outcome of reconciling a sale, stored on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    pub quantity: i64,
    /// Units Redis counted as taken (quantity − its counter), when it still had the sale.
    pub redis_taken: Option<i64>,
    pub paid_claims: i64,
    pub orders: i64,
    pub expired_claims: i64,
    pub returned_to_stock: i64,
    /// Redis, claims and orders agree.
    pub consistent: bool,
}

/// Ends the sale: the units still set aside go back to normal stock and the figures are
/// recorded. Refuses (`Ok(None)`) while claims are still open. Idempotent.
pub async fn reconcile(
    tx: &DatabaseTransaction,
    sale_id: Uuid,
    redis_remaining: Option<i64>,
) -> Result<Option<Reconciliation>, StoreError> {
    let sale = FlashSale::find_by_statement(stmt(
        &format!("SELECT {SALE_COLUMNS} FROM flash_sales WHERE id = $1 FOR UPDATE"),
        vec![sale_id.into()],
    ))
    .one(tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    if sale.status == "RECONCILED" {
        return Ok(sale.reconciliation.and_then(|r| serde_json::from_value(r).ok()));
    }
    let figures = figures(tx, sale_id).await?;
    if figures.open > 0 {
        return Ok(None);
    }
    let orders: i64 = tx
        .query_one_raw(stmt(
            "SELECT COUNT(*) AS n FROM orders o JOIN flash_sale_claims c ON c.id = o.flash_claim_id WHERE c.sale_id = $1",
            vec![sale_id.into()],
        ))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    let returned = inventory::release_reservations(tx, &stock_owner(sale_id)).await?;
    let quantity = i64::from(sale.quantity);
    let redis_taken = redis_remaining.map(|r| quantity - r);
    let outcome = Reconciliation {
        quantity,
        redis_taken,
        paid_claims: figures.paid,
        orders,
        expired_claims: figures.expired,
        returned_to_stock: returned,
        consistent: redis_taken.is_none_or(|t| t == figures.paid) && orders == figures.paid && figures.paid + returned == quantity,
    };
    tx.execute_raw(stmt(
        "UPDATE flash_sales SET status = 'RECONCILED', returned_to_stock = $2, reconciliation = $3, updated_at = now() WHERE id = $1",
        vec![sale_id.into(), (returned as i32).into(), serde_json::to_value(&outcome).unwrap_or_default().into()],
    ))
    .await?;
    Ok(Some(outcome))
}

/// What Redis is loaded with: the settings and the units not held by an open or paid claim.
pub async fn redis_state<C: ConnectionTrait>(db: &C, sale: &FlashSale) -> Result<crate::flash_redis::SaleState, StoreError> {
    let taken = figures(db, sale.id).await?;
    Ok(crate::flash_redis::SaleState {
        quantity: i64::from(sale.quantity),
        remaining: (i64::from(sale.quantity) - taken.open - taken.paid).max(0),
        per_user_limit: i64::from(sale.per_user_limit),
        starts_ms: sale.starts_at.timestamp_millis(),
        ends_ms: sale.ends_at.timestamp_millis(),
        admission_per_sec: i64::from(sale.admission_per_sec),
    })
}

/// The claim, locked until `tx` ends.
pub async fn lock_claim(tx: &DatabaseTransaction, claim_id: Uuid) -> Result<Option<Claim>, StoreError> {
    Ok(Claim::find_by_statement(stmt(
        &format!("SELECT {CLAIM_COLUMNS} FROM flash_sale_claims WHERE id = $1 FOR UPDATE"),
        vec![claim_id.into()],
    ))
    .one(tx)
    .await?)
}

/// Claim figures of the sales not yet reconciled or reconciled within the last day.
pub async fn recent_figures<C: ConnectionTrait>(db: &C) -> Result<Vec<(Uuid, ClaimFigures)>, StoreError> {
    #[derive(FromQueryResult)]
    struct Row {
        sale_id: Uuid,
        open: i64,
        paid: i64,
        expired: i64,
    }
    let rows = Row::find_by_statement(stmt(
        "SELECT s.id AS sale_id, \
         COALESCE(SUM(c.quantity) FILTER (WHERE c.status IN ('CLAIMED', 'PAYING')), 0)::bigint AS open, \
         COALESCE(SUM(c.quantity) FILTER (WHERE c.status = 'PAID'), 0)::bigint AS paid, \
         COALESCE(SUM(c.quantity) FILTER (WHERE c.status = 'EXPIRED'), 0)::bigint AS expired \
         FROM flash_sales s LEFT JOIN flash_sale_claims c ON c.sale_id = s.id \
         WHERE s.status <> 'RECONCILED' OR s.updated_at > now() - interval '1 day' GROUP BY s.id LIMIT 1000",
        vec![],
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.sale_id, ClaimFigures { open: r.open, paid: r.paid, expired: r.expired })).collect())
}
