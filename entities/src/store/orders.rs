//! Orders, their items (at the price paid) and their event timeline.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::{
    PageRequest, StoreError,
    inventory::{self, ReserveLine},
};

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderItem {
    pub product_id: i64,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub user_id: Uuid,
    /// What was bought through: a checkout or a flash-sale claim.
    pub source: super::payments::Purchase,
    pub payment_id: Uuid,
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
    pub shipping_address: serde_json::Value,
    pub items: Vec<NewOrderItem>,
}

/// The order of a checkout, if it has one.
pub async fn order_of_checkout<C: ConnectionTrait>(db: &C, checkout_id: Uuid) -> Result<Option<Uuid>, StoreError> {
    Ok(db
        .query_one_raw(stmt("SELECT id FROM orders WHERE checkout_id = $1", vec![checkout_id.into()]))
        .await?
        .map(|row| row.try_get("", "id"))
        .transpose()?)
}

/// Inserts the order, its items, the ORDER_CREATED and PAYMENT_CONFIRMED events and links the
/// payment, inside the caller's transaction.
pub async fn insert_order(tx: &DatabaseTransaction, order: &NewOrder) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    let (checkout_id, flash_claim_id, source) = match order.source {
        super::payments::Purchase::Checkout(c) => (Some(c), None, serde_json::json!({ "checkoutId": c })),
        super::payments::Purchase::FlashClaim(c) => (None, Some(c), serde_json::json!({ "flashClaimId": c })),
    };
    tx.execute_raw(stmt(
        "INSERT INTO orders (id, user_id, checkout_id, flash_claim_id, status, currency, subtotal_minor, tax_minor, shipping_minor, \
         total_minor, shipping_address) VALUES ($1, $2, $3, $10, 'PLACED', $4, $5, $6, $7, $8, $9)",
        vec![
            id.into(),
            order.user_id.into(),
            checkout_id.into(),
            order.currency.clone().into(),
            order.subtotal_minor.into(),
            order.tax_minor.into(),
            order.shipping_minor.into(),
            order.total_minor.into(),
            order.shipping_address.clone().into(),
            flash_claim_id.into(),
        ],
    ))
    .await?;
    for item in &order.items {
        tx.execute_raw(stmt(
            "INSERT INTO order_items (order_id, product_id, sku, title, quantity, unit_price_minor, currency) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                id.into(),
                item.product_id.into(),
                item.sku.clone().into(),
                item.title.clone().into(),
                item.quantity.into(),
                item.unit_price_minor.into(),
                order.currency.clone().into(),
            ],
        ))
        .await?;
    }
    tx.execute_raw(stmt(
        "INSERT INTO order_events (order_id, kind, data, dedupe_key) VALUES \
         ($1, 'ORDER_CREATED', $2, $3), \
         ($1, 'PAYMENT_CONFIRMED', jsonb_build_object('paymentId', $4::text, 'amount', $5::bigint), $6)",
        vec![
            id.into(),
            source.into(),
            format!("{id}:created").into(),
            order.payment_id.to_string().into(),
            order.total_minor.into(),
            format!("{id}:payment").into(),
        ],
    ))
    .await?;
    tx.execute_raw(stmt("UPDATE payments SET order_id = $1, updated_at = now() WHERE id = $2", vec![id.into(), order.payment_id.into()]))
        .await?;
    Ok(id)
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct OrderSummary {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
    pub shipping_address: serde_json::Value,
    pub item_count: i64,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct OrderItem {
    pub product_id: i64,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub returned_quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct OrderEvent {
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

const SUMMARY: &str = "SELECT o.id, o.user_id, o.status, o.currency, o.subtotal_minor, o.tax_minor, o.shipping_minor, o.total_minor, \
    o.shipping_address, (SELECT COALESCE(SUM(quantity), 0)::bigint FROM order_items i WHERE i.order_id = o.id) AS item_count, \
    o.carrier, o.tracking_number, o.created_at FROM orders o";

/// The user's orders, newest first, and how many there are.
pub async fn list_for_user<C: ConnectionTrait>(db: &C, user_id: Uuid, page: PageRequest) -> Result<(Vec<OrderSummary>, u64), StoreError> {
    let total: i64 = db
        .query_one_raw(stmt("SELECT COUNT(*) AS n FROM orders WHERE user_id = $1", vec![user_id.into()]))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    let orders = OrderSummary::find_by_statement(stmt(
        &format!("{SUMMARY} WHERE o.user_id = $1 ORDER BY o.created_at DESC, o.id DESC LIMIT $2 OFFSET $3"),
        vec![user_id.into(), (page.limit as i64).into(), (page.offset() as i64).into()],
    ))
    .all(db)
    .await?;
    Ok((orders, total as u64))
}

/// An order with its items and timeline; with `owner`, `None` for anyone else's order.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<(OrderSummary, Vec<OrderItem>, Vec<OrderEvent>)>, StoreError> {
    let Some(order) = OrderSummary::find_by_statement(stmt(
        &format!("{SUMMARY} WHERE o.id = $1 AND ($2::uuid IS NULL OR o.user_id = $2)"),
        vec![order_id.into(), owner.into()],
    ))
    .one(db)
    .await?
    else {
        return Ok(None);
    };
    let items = OrderItem::find_by_statement(stmt(
        "SELECT product_id, sku, title, quantity, unit_price_minor, currency, returned_quantity FROM order_items \
         WHERE order_id = $1 ORDER BY product_id",
        vec![order_id.into()],
    ))
    .all(db)
    .await?;
    let events = OrderEvent::find_by_statement(stmt(
        "SELECT kind, data, created_at FROM order_events WHERE order_id = $1 ORDER BY id",
        vec![order_id.into()],
    ))
    .all(db)
    .await?;
    Ok(Some((order, items, events)))
}

/// One transition of an order's lifecycle, applied by `record_transition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub order_id: Uuid,
    pub dedupe_key: String,
    pub event: String,
    pub data: serde_json::Value,
    pub status: String,
    pub carrier: Option<(String, String)>,
    /// (product, units) going back on sale.
    pub restock: Vec<(i64, i32)>,
    /// Whether the restocked units are returns (counted on the order's items).
    pub count_as_returned: bool,
}

/// Appends the event and applies its effects (status, shipment, restock, returned units) inside
/// `tx`, once: `Ok(false)` when the event's `dedupe_key` is recorded already and nothing changed.
pub async fn record_transition(tx: &DatabaseTransaction, t: &Transition) -> Result<bool, StoreError> {
    let inserted = tx
        .execute_raw(stmt(
            "INSERT INTO order_events (order_id, kind, data, dedupe_key) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (dedupe_key) DO NOTHING",
            vec![t.order_id.into(), t.event.clone().into(), t.data.clone().into(), t.dedupe_key.clone().into()],
        ))
        .await?
        .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let (carrier, tracking) = t.carrier.clone().unzip();
    let updated = tx
        .execute_raw(stmt(
            "UPDATE orders SET status = $2, carrier = COALESCE($3, carrier), tracking_number = COALESCE($4, tracking_number), \
             updated_at = now() WHERE id = $1",
            vec![t.order_id.into(), t.status.clone().into(), carrier.into(), tracking.into()],
        ))
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    let lines: Vec<ReserveLine> = t.restock.iter().map(|&(product_id, quantity)| ReserveLine { product_id, quantity }).collect();
    inventory::restock_sold(tx, &lines).await?;
    if t.count_as_returned {
        for &(product_id, quantity) in &t.restock {
            let changed = tx
                .execute_raw(stmt(
                    "UPDATE order_items SET returned_quantity = returned_quantity + $3 WHERE order_id = $1 AND product_id = $2",
                    vec![t.order_id.into(), product_id.into(), quantity.into()],
                ))
                .await?
                .rows_affected();
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
        }
    }
    Ok(true)
}

/// The current status of an order and whose it is.
pub async fn status_of<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Option<(Uuid, String)>, StoreError> {
    db.query_one_raw(stmt("SELECT user_id, status FROM orders WHERE id = $1", vec![order_id.into()]))
        .await?
        .map(|row| Ok((row.try_get("", "user_id")?, row.try_get("", "status")?)))
        .transpose()
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct AdminOrderSummary {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub status: String,
    pub currency: String,
    pub total_minor: i64,
    pub item_count: i64,
    pub created_at: DateTime<Utc>,
}

/// Orders for the back office, newest first, optionally of one status and/or one customer.
pub async fn list_all<C: ConnectionTrait>(
    db: &C,
    status: Option<&str>,
    customer: Option<Uuid>,
    page: PageRequest,
) -> Result<(Vec<AdminOrderSummary>, u64), StoreError> {
    let filter = "($1::text IS NULL OR o.status = $1) AND ($2::uuid IS NULL OR o.user_id = $2)";
    let values = || -> Vec<Value> { vec![status.map(str::to_owned).into(), customer.into()] };
    let total: i64 = db
        .query_one_raw(stmt(&format!("SELECT COUNT(*) AS n FROM orders o WHERE {filter}"), values()))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    let mut page_values = values();
    page_values.extend([(page.limit as i64).into(), (page.offset() as i64).into()]);
    let orders = AdminOrderSummary::find_by_statement(stmt(
        &format!(
            "SELECT o.id, o.user_id, u.email, o.status, o.currency, o.total_minor, \
             (SELECT COALESCE(SUM(quantity), 0)::bigint FROM order_items i WHERE i.order_id = o.id) AS item_count, o.created_at \
             FROM orders o JOIN users u ON u.id = o.user_id WHERE {filter} ORDER BY o.created_at DESC, o.id DESC LIMIT $3 OFFSET $4"
        ),
        page_values,
    ))
    .all(db)
    .await?;
    Ok((orders, total as u64))
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct OrderPayment {
    pub status: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub currency: String,
}

/// The payment of an order (its refunds are summed in `refunded_minor`).
pub async fn payment_of<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Option<OrderPayment>, StoreError> {
    Ok(OrderPayment::find_by_statement(stmt(
        "SELECT status, amount_minor, refunded_minor, currency FROM payments WHERE order_id = $1 ORDER BY created_at LIMIT 1",
        vec![order_id.into()],
    ))
    .one(db)
    .await?)
}
