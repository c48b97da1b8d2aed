//! Signed-in carts. Every change runs in one transaction that first locks the user's cart row
//! (the upsert that bumps its version), so concurrent changes to one cart queue up instead of
//! losing each other's updates.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, QueryResult, Statement, TransactionTrait, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;

/// One line of a cart: the unit price is the one seen when the line was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromQueryResult)]
pub struct CartLine {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub added_at: DateTime<Utc>,
}

/// A signed-in cart; `version` grows with every change (it orders cache writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCart {
    pub version: i64,
    pub lines: Vec<CartLine>,
}

/// What a cart needs to know of a product.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct CartProduct {
    pub id: i64,
    pub sku: String,
    pub title: String,
    pub price_minor: i64,
    pub currency: String,
    pub available: i32,
    pub deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartChange {
    /// Adds to the line (creating it).
    Add {
        product_id: i64,
        quantity: i32,
    },
    /// Sets the quantity of an existing line.
    Set {
        product_id: i64,
        quantity: i32,
    },
    Remove {
        product_id: i64,
    },
    Clear,
}

impl CartChange {
    /// (mode, product id, quantity) as the cart scripts take them: `add`, `set`, `remove` or
    /// `clear`, with 0 where a change has no such part.
    pub fn parts(self) -> (&'static str, i64, i32) {
        match self {
            CartChange::Add { product_id, quantity } => ("add", product_id, quantity),
            CartChange::Set { product_id, quantity } => ("set", product_id, quantity),
            CartChange::Remove { product_id } => ("remove", product_id, 0),
            CartChange::Clear => ("clear", 0, 0),
        }
    }
}

/// Why a cart change was refused. No line was changed (the cart's version counter may have moved,
/// and an empty cart row may have been created).
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("product not found")]
    ProductNotFound,
    #[error("the cart has no line for this product")]
    LineNotFound,
    #[error("only {available} available")]
    InsufficientStock { available: i32, in_cart: i32 },
    #[error("at most {max} per line")]
    LineLimit { max: i32, in_cart: i32 },
    #[error("the cart is in {cart}, the product in {product}")]
    CurrencyMismatch { cart: String, product: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for CartError {
    fn from(err: sea_orm::DbErr) -> Self {
        CartError::Store(err.into())
    }
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

const LINES: &str = "SELECT product_id, quantity, unit_price_minor, currency, added_at FROM cart_items \
    WHERE cart_id = $1 ORDER BY added_at, product_id";

/// Products by id, deleted ones included (flagged), for pricing carts.
pub async fn cart_products<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<Vec<CartProduct>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // one text parameter for any number of ids: a single statement, prepared once per connection;
    // the function keeps its query's plan (see migration m20261208_000001)
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    Ok(CartProduct::find_by_statement(stmt(
        "SELECT id, sku, title, price_minor, currency, available, deleted \
         FROM cart_products(string_to_array($1, ',')::bigint[])",
        vec![list.into()],
    ))
    .all(db)
    .await?)
}

pub async fn load_user_cart<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<UserCart, StoreError> {
    let cart = db.query_one_raw(stmt("SELECT id, version FROM carts WHERE user_id = $1", vec![user_id.into()])).await?;
    let Some(cart) = cart else {
        return Ok(UserCart { version: 0, lines: Vec::new() });
    };
    let cart_id: Uuid = cart.try_get("", "id")?;
    let lines = CartLine::find_by_statement(stmt(LINES, vec![cart_id.into()])).all(db).await?;
    Ok(UserCart { version: cart.try_get("", "version")?, lines })
}

/// Creates the user's cart if needed and locks it for this transaction; returns (id, version).
async fn lock_cart(tx: &DatabaseTransaction, user_id: Uuid) -> Result<(Uuid, i64), StoreError> {
    let row = tx
        .query_one_raw(stmt(
            // a new cart starts at 1: version 0 is "no cart", which a reader may have cached
            "INSERT INTO carts (id, user_id, version) VALUES ($1, $2, 1) ON CONFLICT (user_id) \
             DO UPDATE SET version = carts.version + 1, updated_at = now() RETURNING id, version",
            vec![Uuid::now_v7().into(), user_id.into()],
        ))
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((row.try_get("", "id")?, row.try_get("", "version")?))
}

async fn live_product(tx: &DatabaseTransaction, product_id: i64) -> Result<Option<CartProduct>, StoreError> {
    Ok(cart_products(tx, &[product_id]).await?.into_iter().find(|p| !p.deleted))
}

async fn line_quantity(tx: &DatabaseTransaction, cart_id: Uuid, product_id: i64) -> Result<Option<i32>, StoreError> {
    Ok(tx
        .query_one_raw(stmt(
            "SELECT quantity FROM cart_items WHERE cart_id = $1 AND product_id = $2",
            vec![cart_id.into(), product_id.into()],
        ))
        .await?
        .map(|row| row.try_get("", "quantity"))
        .transpose()?)
}

async fn other_currency(tx: &DatabaseTransaction, cart_id: Uuid, currency: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_one_raw(stmt(
            "SELECT currency FROM cart_items WHERE cart_id = $1 AND currency <> $2 LIMIT 1",
            vec![cart_id.into(), currency.into()],
        ))
        .await?
        .map(|row| row.try_get("", "currency"))
        .transpose()?)
}

async fn upsert_line(tx: &DatabaseTransaction, cart_id: Uuid, product: &CartProduct, quantity: i32) -> Result<(), StoreError> {
    // an existing line keeps the price and time it was first added at
    tx.execute_raw(stmt(
        "INSERT INTO cart_items (cart_id, product_id, quantity, unit_price_minor, currency) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now()",
        vec![cart_id.into(), product.id.into(), quantity.into(), product.price_minor.into(), product.currency.clone().into()],
    ))
    .await?;
    Ok(())
}

async fn lines_of(tx: &DatabaseTransaction, cart_id: Uuid) -> Result<Vec<CartLine>, StoreError> {
    Ok(CartLine::find_by_statement(stmt(LINES, vec![cart_id.into()])).all(tx).await?)
}

/// A cart with what pricing it needs: its products (deleted ones flagged) as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedCart {
    pub cart: UserCart,
    pub products: Vec<CartProduct>,
}

/// One row of `cart_changes(...)` for one change (see the migration that creates it).
#[derive(Debug, FromQueryResult)]
struct ChangeRow {
    status: i32,
    in_cart: i32,
    available: i32,
    cart_currency: Option<String>,
    version: i64,
    product_id: Option<i64>,
    quantity: Option<i32>,
    unit_price_minor: Option<i64>,
    currency: Option<String>,
    added_at: Option<DateTime<Utc>>,
    sku: Option<String>,
    title: Option<String>,
    price_minor: Option<i64>,
    current_currency: Option<String>,
    current_available: Option<i32>,
    deleted: Option<bool>,
}

/// Applies `change` to the user's cart on `db` (the pool, or a transaction it joins) and
/// returns the cart as committed, priced. One round trip: `cart_changes` locks the cart row
/// first, so concurrent changes to one cart queue up instead of losing each other's updates, and
/// a cart locked elsewhere is waited for as long as it takes.
pub async fn change_user_cart<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    change: CartChange,
    max_line: i32,
) -> Result<PricedCart, CartError> {
    let mut outcomes = change_user_carts(db, &[(user_id, change)], max_line, None).await?;
    outcomes.pop().ok_or(CartError::Store(StoreError::NotFound))?
}

/// The outcome of one change from its `cart_changes` rows: a refusal, or the cart as committed.
fn priced_change(rows: Vec<ChangeRow>, max_line: i32) -> Result<PricedCart, CartError> {
    let first = rows.first().ok_or(StoreError::NotFound)?;
    match first.status {
        0 => {}
        1 => return Err(CartError::LineLimit { max: max_line, in_cart: first.in_cart }),
        2 => return Err(CartError::InsufficientStock { available: first.available, in_cart: first.in_cart }),
        3 => return Err(CartError::LineNotFound),
        4 => {
            return Err(CartError::CurrencyMismatch {
                cart: first.cart_currency.clone().unwrap_or_default(),
                product: first.currency.clone().unwrap_or_default(),
            });
        }
        _ => return Err(CartError::ProductNotFound),
    }
    let version = first.version;
    let mut lines = Vec::with_capacity(rows.len());
    let mut products = Vec::with_capacity(rows.len());
    for row in rows {
        let (Some(product_id), Some(quantity), Some(unit_price_minor), Some(currency), Some(added_at)) =
            (row.product_id, row.quantity, row.unit_price_minor, row.currency, row.added_at)
        else {
            continue; // the empty cart's all-NULL line
        };
        lines.push(CartLine { product_id, quantity, unit_price_minor, currency, added_at });
        products.push(CartProduct {
            id: product_id,
            sku: row.sku.unwrap_or_default(),
            title: row.title.unwrap_or_default(),
            price_minor: row.price_minor.unwrap_or(unit_price_minor),
            currency: row.current_currency.unwrap_or_default(),
            available: row.current_available.unwrap_or(0),
            deleted: row.deleted.unwrap_or(false),
        });
    }
    lines.sort_by_key(|l| (l.added_at, l.product_id));
    Ok(PricedCart { cart: UserCart { version, lines }, products })
}

/// One row of `cart_changes(...)`: a row of the change at `idx`.
struct BatchRow {
    idx: i32,
    row: ChangeRow,
}

impl FromQueryResult for BatchRow {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, sea_orm::DbErr> {
        Ok(Self { idx: res.try_get(pre, "idx")?, row: ChangeRow::from_query_result(res, pre)? })
    }
}

/// Applies several users' changes in one statement and one commit, each exactly as
/// `change_user_cart` would, and returns their outcomes in the order given. Changes to one user
/// are applied in the order given. A refused change does not affect the others; an `Err` means
/// nothing was applied (the statement failed as a whole). `lock_timeout`, when given, fails the
/// statement rather than waiting longer for a cart locked elsewhere.
pub async fn change_user_carts<C: ConnectionTrait>(
    db: &C,
    changes: &[(Uuid, CartChange)],
    max_line: i32,
    lock_timeout: Option<std::time::Duration>,
) -> Result<Vec<Result<PricedCart, CartError>>, sea_orm::DbErr> {
    // Carts are locked in user order, so two batches running at once cannot deadlock; the
    // sort is stable, so one user's changes keep their order.
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| changes[i].0);
    let payload: Vec<serde_json::Value> = order
        .iter()
        .map(|&i| {
            let (user, change) = changes[i];
            let (mode, product, quantity) = change.parts();
            serde_json::json!({ "user": user, "newCart": Uuid::now_v7(), "mode": mode, "product": product, "quantity": quantity })
        })
        .collect();
    let rows = BatchRow::find_by_statement(stmt(
        "SELECT * FROM cart_changes($1, $2, $3)",
        vec![
            serde_json::Value::Array(payload).into(),
            max_line.into(),
            lock_timeout.map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX)).into(),
        ],
    ))
    .all(db)
    .await?;
    let mut per_change: Vec<Vec<ChangeRow>> = changes.iter().map(|_| Vec::new()).collect();
    for BatchRow { idx, row } in rows {
        let position = usize::try_from(idx).ok().and_then(|p| order.get(p)).copied();
        let position =
            position.ok_or_else(|| sea_orm::DbErr::Custom(format!("cart_changes returned change {idx} of {}", changes.len())))?;
        per_change[position].push(row);
    }
    Ok(per_change.into_iter().map(|rows| priced_change(rows, max_line)).collect())
}

/// Moves a wishlist item into the cart (adding `quantity`), in one transaction.
/// `LineNotFound` when the product is not on the wishlist.
pub async fn move_wishlist_item_to_cart<C: TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    user_id: Uuid,
    product_id: i64,
    quantity: i32,
    max_line: i32,
) -> Result<PricedCart, CartError> {
    let tx = db.begin().await?;
    let removed = tx
        .execute_raw(stmt("DELETE FROM wishlists WHERE user_id = $1 AND product_id = $2", vec![user_id.into(), product_id.into()]))
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(CartError::LineNotFound);
    }
    // a refused add rolls the wishlist removal back with it (the transaction is dropped)
    let cart = change_user_cart(&tx, user_id, CartChange::Add { product_id, quantity }, max_line).await?;
    tx.commit().await?;
    Ok(cart)
}

/// A line of an anonymous cart being merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeLine {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SkipReason {
    ProductUnavailable,
    CurrencyMismatch,
}

/// What a merge did, line by line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeReport {
    /// The session had been merged before: nothing was changed.
    pub already_merged: bool,
    /// (product, units added) for lines added in full.
    pub merged: Vec<(i64, i32)>,
    /// (product, units requested, units added) for lines cut down by stock or the line limit.
    pub capped: Vec<(i64, i32, i32)>,
    pub skipped: Vec<(i64, SkipReason)>,
}

/// Whether any cart of this anonymous session has been merged (merge ids are
/// `<session>:<take>`; a bare session id is what merges recorded before takes existed).
pub async fn session_merged<C: ConnectionTrait>(db: &C, session_id: &str) -> Result<bool, StoreError> {
    Ok(db
        .query_one_raw(stmt(
            // session ids are hex digits: nothing in them is a LIKE wildcard
            "SELECT EXISTS (SELECT 1 FROM cart_merges WHERE session_id = $1 OR session_id LIKE $2) AS merged",
            vec![session_id.into(), format!("{session_id}:%").into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "merged"))
        .transpose()?
        .unwrap_or(false))
}

/// Merges an anonymous cart into the user's cart once per merge id (one take of a session): quantities add, capped by
/// stock and the line limit.
pub async fn merge_into_user_cart<C: TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    user_id: Uuid,
    merge_id: &str,
    mut lines: Vec<MergeLine>,
    max_line: i32,
) -> Result<(MergeReport, UserCart), StoreError> {
    let tx = db.begin().await?;
    let (cart_id, version) = lock_cart(&tx, user_id).await?;
    let first_time = tx
        .execute_raw(stmt(
            "INSERT INTO cart_merges (session_id, user_id) VALUES ($1, $2) ON CONFLICT (session_id) DO NOTHING",
            vec![merge_id.into(), user_id.into()],
        ))
        .await?
        .rows_affected()
        == 1;
    let mut report = MergeReport { already_merged: !first_time, ..Default::default() };
    if first_time {
        lines.sort_by_key(|line| line.product_id);
        for line in lines {
            let Some(product) = live_product(&tx, line.product_id).await? else {
                report.skipped.push((line.product_id, SkipReason::ProductUnavailable));
                continue;
            };
            if other_currency(&tx, cart_id, &product.currency).await?.is_some() {
                report.skipped.push((line.product_id, SkipReason::CurrencyMismatch));
                continue;
            }
            let existing = line_quantity(&tx, cart_id, line.product_id).await?;
            let in_cart = existing.unwrap_or(0);
            let cap = max_line.min(product.available).max(in_cart);
            let target = in_cart.saturating_add(line.quantity).min(cap);
            let added = target - in_cart;
            if added < line.quantity {
                report.capped.push((line.product_id, line.quantity, added));
            } else {
                report.merged.push((line.product_id, added));
            }
            if added > 0 {
                // a new line keeps the price the shopper saw when adding it anonymously, unless
                // the product is priced in another currency since: then today's price is the one
                let seen = if line.currency == product.currency {
                    CartProduct { price_minor: line.unit_price_minor, currency: line.currency, ..product }
                } else {
                    product
                };
                upsert_line(&tx, cart_id, &seen, target).await?;
            }
        }
    }
    let lines = lines_of(&tx, cart_id).await?;
    tx.commit().await?;
    Ok((report, UserCart { version, lines }))
}

/// Takes bought units out of the user's cart inside the caller's transaction (lines the
/// shopper added meanwhile stay), and bumps the cart version so caches see the change.
/// Returns the cart's new version (`None`: the user has no cart).
pub async fn remove_bought(tx: &DatabaseTransaction, user_id: Uuid, bought: &[(i64, i32)]) -> Result<Option<i64>, StoreError> {
    let Some((cart_id, version)) = tx
        .query_one_raw(stmt(
            "UPDATE carts SET version = version + 1, updated_at = now() WHERE user_id = $1 RETURNING id, version",
            vec![user_id.into()],
        ))
        .await?
        .map(|row| Ok::<_, sea_orm::DbErr>((row.try_get::<Uuid>("", "id")?, row.try_get::<i64>("", "version")?)))
        .transpose()?
    else {
        return Ok(None);
    };
    for (product_id, quantity) in bought {
        tx.execute_raw(stmt(
            "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2 AND quantity <= $3",
            vec![cart_id.into(), (*product_id).into(), (*quantity).into()],
        ))
        .await?;
        tx.execute_raw(stmt(
            "UPDATE cart_items SET quantity = quantity - $3, updated_at = now() WHERE cart_id = $1 AND product_id = $2",
            vec![cart_id.into(), (*product_id).into(), (*quantity).into()],
        ))
        .await?;
    }
    Ok(Some(version))
}
