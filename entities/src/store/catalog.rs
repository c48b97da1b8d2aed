//! Categories, products and their stock. Every product or stock change appends an outbox row
//! in the same transaction, which is why the writers take a `DatabaseTransaction`.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult, QueryOrder, Statement, Value,
};
use serde::Serialize;

use super::{PageRequest, StoreError, outbox};
use crate::entity::{categories, outbox::OutboxKind, products};

/// A product as shoppers see it: the row, its category and the stock on hand.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub id: i64,
    pub sku: String,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category_id: i64,
    pub category_slug: String,
    pub category_name: String,
    pub price_minor: i64,
    pub currency: String,
    pub attributes: serde_json::Value,
    pub image_keys: serde_json::Value,
    pub rating: f32,
    pub rating_count: i32,
    pub available: i32,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

const PRODUCT_VIEW: &str = "SELECT p.id, p.sku, p.title, p.description, p.brand, p.category_id, \
    c.slug AS category_slug, c.name AS category_name, p.price_minor, p.currency, p.attributes, \
    p.image_keys, p.rating, p.rating_count, COALESCE(i.available, 0) AS available, p.created_at, p.updated_at \
    FROM products p JOIN categories c ON c.id = p.category_id LEFT JOIN inventory i ON i.product_id = p.id \
    WHERE p.deleted_at IS NULL";

/// The ids of a category and all categories below it.
const CATEGORY_SUBTREE: &str = "WITH RECURSIVE subtree AS ( \
    SELECT id FROM categories WHERE id = $1 \
    UNION ALL SELECT c.id FROM categories c JOIN subtree s ON c.parent_id = s.id) SELECT id FROM subtree";

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

pub async fn list_categories<C: ConnectionTrait>(db: &C) -> Result<Vec<categories::Model>, StoreError> {
    Ok(categories::Entity::find().order_by_asc(categories::Column::Id).all(db).await?)
}

pub async fn find_category<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<categories::Model>, StoreError> {
    Ok(categories::Entity::find_by_id(id).one(db).await?)
}

pub async fn find_category_by_slug<C: ConnectionTrait>(db: &C, slug: &str) -> Result<Option<categories::Model>, StoreError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(categories::Entity::find().filter(categories::Column::Slug.eq(slug)).one(db).await?)
}

/// Creates a category; `Duplicate` when the slug is taken. The caller checks the parent exists.
pub async fn create_category(
    tx: &DatabaseTransaction,
    parent_id: Option<i64>,
    name: &str,
    slug: &str,
) -> Result<categories::Model, StoreError> {
    let category = categories::ActiveModel {
        id: NotSet,
        parent_id: Set(parent_id),
        name: Set(name.to_owned()),
        slug: Set(slug.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(tx)
    .await?;
    outbox::append(
        tx,
        "category",
        category.id,
        OutboxKind::CategoryCreated,
        &serde_json::json!({
            "id": category.id, "parentId": category.parent_id, "name": category.name, "slug": category.slug,
        }),
    )
    .await?;
    Ok(category)
}

pub async fn get_product<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<ProductView>, StoreError> {
    let sql = format!("{PRODUCT_VIEW} AND p.id = $1");
    Ok(ProductView::find_by_statement(stmt(&sql, vec![id.into()])).one(db).await?)
}

/// A page of live products, oldest first, optionally within a category and its sub-categories,
/// with the total count of matching products.
pub async fn browse_products<C: ConnectionTrait>(
    db: &C,
    category_id: Option<i64>,
    page: PageRequest,
) -> Result<(Vec<ProductView>, u64), StoreError> {
    let (filter, mut values): (String, Vec<Value>) = match category_id {
        Some(id) => (format!(" AND p.category_id IN ({CATEGORY_SUBTREE})"), vec![id.into()]),
        None => (String::new(), vec![]),
    };
    let count_sql = format!("SELECT COUNT(*) AS total FROM products p WHERE p.deleted_at IS NULL{filter}");
    let total: i64 =
        db.query_one_raw(stmt(&count_sql, values.clone())).await?.map(|row| row.try_get("", "total")).transpose()?.unwrap_or(0);
    let n = values.len();
    let page_sql = format!("{PRODUCT_VIEW}{filter} ORDER BY p.id LIMIT ${} OFFSET ${}", n + 1, n + 2);
    values.push((page.limit as i64).into());
    values.push((page.offset() as i64).into());
    let items = ProductView::find_by_statement(stmt(&page_sql, values)).all(db).await?;
    Ok((items, total as u64))
}

/// What an admin gives to create a product.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: String,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category_id: i64,
    pub price_minor: i64,
    pub currency: String,
    pub attributes: serde_json::Value,
    pub image_keys: Vec<String>,
    pub initial_stock: i32,
}

/// Creates a product with its inventory row; `Duplicate` when the SKU is taken.
pub async fn create_product(tx: &DatabaseTransaction, new: NewProduct) -> Result<ProductView, StoreError> {
    let now = Utc::now();
    let product = products::ActiveModel {
        id: NotSet,
        sku: Set(new.sku),
        title: Set(new.title),
        description: Set(new.description),
        brand: Set(new.brand),
        category_id: Set(new.category_id),
        price_minor: Set(new.price_minor),
        currency: Set(new.currency),
        attributes: Set(new.attributes),
        image_keys: Set(serde_json::json!(new.image_keys)),
        rating: Set(0.0),
        rating_count: Set(0),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(tx)
    .await?;
    tx.execute_raw(stmt(
        "INSERT INTO inventory (product_id, available) VALUES ($1, $2)",
        vec![product.id.into(), new.initial_stock.into()],
    ))
    .await?;
    let view = get_product(tx, product.id).await?.ok_or(StoreError::NotFound)?;
    outbox::append(tx, "product", view.id, OutboxKind::ProductCreated, &view).await?;
    Ok(view)
}

/// The fields an admin may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub brand: Option<String>,
    pub category_id: Option<i64>,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub attributes: Option<serde_json::Value>,
    pub image_keys: Option<Vec<String>>,
}

/// Applies `changes` to a live product; `NotFound` for unknown or deleted products.
pub async fn update_product(tx: &DatabaseTransaction, id: i64, changes: ProductChanges) -> Result<ProductView, StoreError> {
    let current = lock_live_product(tx, id).await?;
    let mut product: products::ActiveModel = current.into();
    if let Some(v) = changes.title {
        product.title = Set(v);
    }
    if let Some(v) = changes.description {
        product.description = Set(v);
    }
    if let Some(v) = changes.brand {
        product.brand = Set(v);
    }
    if let Some(v) = changes.category_id {
        product.category_id = Set(v);
    }
    if let Some(v) = changes.price_minor {
        product.price_minor = Set(v);
    }
    if let Some(v) = changes.currency {
        product.currency = Set(v);
    }
    if let Some(v) = changes.attributes {
        product.attributes = Set(v);
    }
    if let Some(v) = changes.image_keys {
        product.image_keys = Set(serde_json::json!(v));
    }
    product.updated_at = Set(Utc::now());
    product.update(tx).await?;
    let view = get_product(tx, id).await?.ok_or(StoreError::NotFound)?;
    outbox::append(tx, "product", id, OutboxKind::ProductUpdated, &view).await?;
    Ok(view)
}

/// Soft-deletes a product: it leaves the catalogue, while orders keep pointing at it.
pub async fn delete_product(tx: &DatabaseTransaction, id: i64) -> Result<(), StoreError> {
    let deleted = tx
        .execute_raw(stmt(
            "UPDATE products SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL",
            vec![id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    outbox::append(tx, "product", id, OutboxKind::ProductDeleted, &serde_json::json!({ "id": id })).await?;
    Ok(())
}

/// Stock figures of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    pub product_id: i64,
    pub available: i32,
    pub reserved: i32,
    pub sold: i32,
    pub version: i64,
}

/// Sets the units available for sale (a stock count or a delivery). Reserved and sold units
/// are not touched: they belong to checkouts and orders.
pub async fn set_available_stock(tx: &DatabaseTransaction, product_id: i64, available: i32) -> Result<StockLevel, StoreError> {
    lock_live_product(tx, product_id).await?;
    let level = StockLevel::find_by_statement(stmt(
        "INSERT INTO inventory (product_id, available) VALUES ($1, $2) \
         ON CONFLICT (product_id) DO UPDATE SET available = EXCLUDED.available, \
         version = inventory.version + 1, updated_at = now() \
         RETURNING product_id, available, reserved, sold, version",
        vec![product_id.into(), available.into()],
    ))
    .one(tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    outbox::append(tx, "product", product_id, OutboxKind::StockChanged, &level).await?;
    Ok(level)
}

async fn lock_live_product(tx: &DatabaseTransaction, id: i64) -> Result<products::Model, StoreError> {
    products::Model::find_by_statement(stmt("SELECT * FROM products WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", vec![id.into()]))
        .one(tx)
        .await?
        .ok_or(StoreError::NotFound)
}
