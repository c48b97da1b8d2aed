//! Stock reservations. Stock moves only through these functions, so for every product
//! units stocked = available + reserved + sold (the CHECKs forbid negatives).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Statement, TransactionTrait, Value};
use serde::Serialize;
use uuid::Uuid;

use super::{StoreError, catalog::StockLevel, outbox};
use crate::entity::outbox::OutboxKind;

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveLine {
    pub product_id: i64,
    pub quantity: i32,
}

/// A product there was not enough of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shortfall {
    pub product_id: i64,
    pub requested: i32,
    pub available: i32,
}

#[derive(Debug, FromQueryResult)]
struct Reservation {
    product_id: i64,
    quantity: i32,
}

/// Moves units of one product between available, reserved and sold (the deltas sum to zero, so
/// units stocked never change here) and tells the outbox. With `require_available`, only if at
/// least that many units are available; `None` when they are not.
async fn move_stock(
    tx: &DatabaseTransaction,
    product_id: i64,
    (available, reserved, sold): (i32, i32, i32),
    require_available: Option<i32>,
) -> Result<Option<StockLevel>, StoreError> {
    debug_assert_eq!(available + reserved + sold, 0, "stock moves conserve units");
    let level = StockLevel::find_by_statement(stmt(
        "UPDATE inventory SET available = available + $2, reserved = reserved + $3, sold = sold + $4, \
         version = version + 1, updated_at = now() WHERE product_id = $1 AND available >= $5 \
         RETURNING product_id, available, reserved, sold, version",
        vec![product_id.into(), available.into(), reserved.into(), sold.into(), require_available.unwrap_or(i32::MIN).into()],
    ))
    .one(tx)
    .await?;
    if let Some(level) = &level {
        outbox::append(tx, "product", level.product_id, OutboxKind::StockChanged, level).await?;
    }
    Ok(level)
}

/// Reserves every line for `owner` inside `tx`, lines in product-id order so two reservations
/// never wait on each other in a cycle. Returns the shortfalls (every short product, not just
/// the first); when there are any the caller must roll back.
pub async fn reserve_lines(
    tx: &DatabaseTransaction,
    owner: &str,
    mut lines: Vec<ReserveLine>,
    expires_at: DateTime<Utc>,
) -> Result<Vec<Shortfall>, StoreError> {
    lines.sort_by_key(|l| l.product_id);
    let mut shortfalls = Vec::new();
    for line in lines {
        let moved = move_stock(tx, line.product_id, (-line.quantity, line.quantity, 0), Some(line.quantity)).await?;
        match moved {
            Some(_) => {
                tx.execute_raw(stmt(
                    "INSERT INTO inventory_reservations (id, product_id, owner, quantity, status, expires_at) \
                     VALUES ($1, $2, $3, $4, 'RESERVED', $5)",
                    vec![Uuid::now_v7().into(), line.product_id.into(), owner.into(), line.quantity.into(), expires_at.into()],
                ))
                .await?;
            }
            None => {
                let available = tx
                    .query_one_raw(stmt("SELECT available FROM inventory WHERE product_id = $1", vec![line.product_id.into()]))
                    .await?
                    .map(|row| row.try_get::<i32>("", "available"))
                    .transpose()?
                    .unwrap_or(0);
                shortfalls.push(Shortfall { product_id: line.product_id, requested: line.quantity, available });
            }
        }
    }
    Ok(shortfalls)
}

/// Returns every still-RESERVED unit of `owner` to stock; a no-op when there are none, so
/// retries and repeated calls are harmless. Returns the units released.
pub async fn release_reservations(tx: &DatabaseTransaction, owner: &str) -> Result<i64, StoreError> {
    let held = Reservation::find_by_statement(stmt(
        "UPDATE inventory_reservations SET status = 'RELEASED', updated_at = now() \
         WHERE owner = $1 AND status = 'RESERVED' RETURNING product_id, quantity",
        vec![owner.into()],
    ))
    .all(tx)
    .await?;
    let mut held = held;
    held.sort_by_key(|r| r.product_id);
    let mut units = 0;
    for reservation in held {
        let q = reservation.quantity;
        move_stock(tx, reservation.product_id, (q, -q, 0), None).await?.ok_or(StoreError::NotFound)?;
        units += i64::from(reservation.quantity);
    }
    Ok(units)
}

/// Turns `owner`'s reservations into sales. `Ok(false)` when they are no longer all held
/// (released by the sweeper, say): the caller must not sell.
pub async fn confirm_reservations(tx: &DatabaseTransaction, owner: &str, lines: &[ReserveLine]) -> Result<bool, StoreError> {
    let held = Reservation::find_by_statement(stmt(
        "SELECT product_id, quantity FROM inventory_reservations WHERE owner = $1 AND status = 'RESERVED' \
         ORDER BY product_id FOR UPDATE",
        vec![owner.into()],
    ))
    .all(tx)
    .await?;
    let mut wanted: Vec<(i64, i32)> = lines.iter().map(|l| (l.product_id, l.quantity)).collect();
    wanted.sort();
    let have: Vec<(i64, i32)> = held.iter().map(|r| (r.product_id, r.quantity)).collect();
    if have != wanted {
        return Ok(false);
    }
    for reservation in held {
        let q = reservation.quantity;
        move_stock(tx, reservation.product_id, (0, -q, q), None).await?.ok_or(StoreError::NotFound)?;
    }
    tx.execute_raw(stmt(
        "UPDATE inventory_reservations SET status = 'CONFIRMED', updated_at = now() WHERE owner = $1 AND status = 'RESERVED'",
        vec![owner.into()],
    ))
    .await?;
    Ok(true)
}

/// Puts sold units back on sale (a cancelled order, a received return), products in id order.
pub async fn restock_sold(tx: &DatabaseTransaction, lines: &[ReserveLine]) -> Result<(), StoreError> {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.product_id);
    for line in lines.into_iter().filter(|l| l.quantity > 0) {
        let q = line.quantity;
        move_stock(tx, line.product_id, (q, 0, -q), None).await?.ok_or(StoreError::NotFound)?;
    }
    Ok(())
}

/// Sets `quantity` units of a product aside for `owner` (a flash sale) until `expires_at`;
/// `Ok(None)` with the units available when there are not enough.
pub async fn set_aside(
    tx: &DatabaseTransaction,
    owner: &str,
    product_id: i64,
    quantity: i32,
    expires_at: DateTime<Utc>,
) -> Result<Result<(), i32>, StoreError> {
    let short = reserve_lines(tx, owner, vec![ReserveLine { product_id, quantity }], expires_at).await?;
    Ok(match short.first() {
        Some(s) => Err(s.available),
        None => Ok(()),
    })
}

/// Sells `quantity` of the units set aside for `owner`: reserved → sold, and the reservation
/// shrinks (or ends CONFIRMED when nothing is left of it).
pub async fn sell_set_aside(tx: &DatabaseTransaction, owner: &str, product_id: i64, quantity: i32) -> Result<(), StoreError> {
    let updated = tx
        .execute_raw(stmt(
            "UPDATE inventory_reservations SET \
             status = CASE WHEN quantity = $3 THEN 'CONFIRMED' ELSE status END, \
             quantity = CASE WHEN quantity = $3 THEN quantity ELSE quantity - $3 END, updated_at = now() \
             WHERE owner = $1 AND product_id = $2 AND status = 'RESERVED' AND quantity >= $3",
            vec![owner.into(), product_id.into(), quantity.into()],
        ))
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    move_stock(tx, product_id, (0, -quantity, quantity), None).await?.ok_or(StoreError::NotFound)?;
    Ok(())
}

/// How long past its expiry a reservation of a checkout that is being paid is left alone: the
/// charge may still succeed. After that it counts as abandoned too (a charge that succeeds even
/// later finds the stock gone and is refunded).
const PAYING_PATIENCE_SECS: i64 = 15 * 60;

/// Releases reservations that expired more than `grace_secs` ago and whose owner stopped
/// waiting. Each owner is released in its own transaction, under the same lock as the charge
/// step, so a checkout is either charged or released, never both. Returns the owners released.
pub async fn release_expired<C: TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait>(
    db: &C,
    grace_secs: i64,
) -> Result<Vec<String>, StoreError> {
    let owners: Vec<String> = db
        .query_all_raw(stmt(
            "SELECT DISTINCT owner FROM inventory_reservations              WHERE status = 'RESERVED' AND expires_at < now() - make_interval(secs => $1) ORDER BY owner LIMIT 500",
            vec![(grace_secs as f64).into()],
        ))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "owner"))
        .collect::<Result<_, _>>()?;
    let mut released = Vec::new();
    for owner in owners {
        let tx = db.begin().await?;
        let checkout_id = owner.strip_prefix("checkout:").and_then(|id| Uuid::parse_str(id).ok());
        if let Some(checkout_id) = checkout_id {
            // Locks the checkout row whatever its status: the charge step waits for this
            // transaction and then finds the checkout expired, or this one skips a checkout
            // that is being paid.
            let paying = tx
                .query_one_raw(stmt(
                    "SELECT status = 'PAYING' AND reserved_until > now() - make_interval(secs => $2) AS paying \
                     FROM checkouts WHERE id = $1 FOR UPDATE",
                    vec![checkout_id.into(), (PAYING_PATIENCE_SECS as f64).into()],
                ))
                .await?
                .map(|row| row.try_get::<bool>("", "paying"))
                .transpose()?
                .unwrap_or(false);
            if paying {
                tx.rollback().await?;
                continue;
            }
            tx.execute_raw(stmt(
                "UPDATE checkouts SET status = 'EXPIRED', updated_at = now() \
                 WHERE id = $1 AND status IN ('AWAITING_PAYMENT', 'PAYING')",
                vec![checkout_id.into()],
            ))
            .await?;
        }
        // re-checked under lock: a sale may have confirmed them meanwhile
        if release_reservations(&tx, &owner).await? > 0 {
            released.push(owner);
        }
        tx.commit().await?;
    }
    Ok(released)
}
