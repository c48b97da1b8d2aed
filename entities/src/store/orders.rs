//! Orders, their items (at the price paid) and their event timeline.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::{PageRequest, StoreError};

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
    pub checkout_id: Uuid,
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
    tx.execute_raw(stmt(
        "INSERT INTO orders (id, user_id, checkout_id, status, currency, subtotal_minor, tax_minor, shipping_minor, \
         total_minor, shipping_address) VALUES ($1, $2, $3, 'PLACED', $4, $5, $6, $7, $8, $9)",
        vec![
            id.into(),
            order.user_id.into(),
            order.checkout_id.into(),
            order.currency.clone().into(),
            order.subtotal_minor.into(),
            order.tax_minor.into(),
            order.shipping_minor.into(),
            order.total_minor.into(),
            order.shipping_address.clone().into(),
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
         ($1, 'ORDER_CREATED', jsonb_build_object('checkoutId', $2::text), $3), \
         ($1, 'PAYMENT_CONFIRMED', jsonb_build_object('paymentId', $4::text, 'amount', $5::bigint), $6)",
        vec![
            id.into(),
            order.checkout_id.to_string().into(),
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
    pub status: String,
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
    pub shipping_address: serde_json::Value,
    pub item_count: i64,
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

const SUMMARY: &str = "SELECT o.id, o.status, o.currency, o.subtotal_minor, o.tax_minor, o.shipping_minor, o.total_minor, \
    o.shipping_address, (SELECT COALESCE(SUM(quantity), 0)::bigint FROM order_items i WHERE i.order_id = o.id) AS item_count, \
    o.created_at FROM orders o";

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

/// One of the user's orders with its items and timeline; `None` for another user's order.
pub async fn find_for_user<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<Option<(OrderSummary, Vec<OrderItem>, Vec<OrderEvent>)>, StoreError> {
    let Some(order) = OrderSummary::find_by_statement(stmt(
        &format!("{SUMMARY} WHERE o.id = $1 AND o.user_id = $2"),
        vec![order_id.into(), user_id.into()],
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
