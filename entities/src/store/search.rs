//! What the search indexer reads: the outbox in transaction order, and products as the index
//! holds them. The indexer never trusts outbox payloads (seeded rows carry only an id): for every
//! changed product it reads the current row, which is at least as new as the change.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};

use super::StoreError;

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// A position in the outbox ordered by (writing transaction, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct OutboxPosition {
    pub txid: u64,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct OutboxEntry {
    pub id: i64,
    pub txid: i64,
    pub aggregate: String,
    pub aggregate_id: String,
    pub kind: String,
}

impl OutboxEntry {
    pub fn position(&self) -> OutboxPosition {
        OutboxPosition { txid: self.txid as u64, id: self.id }
    }
}

/// Outbox rows after `after`, in (txid, id) order, read in the same snapshot as `xmin`: every
/// transaction with an id below `xmin` had finished when the rows were read, so rows below it
/// are final; rows at or above it may still be joined by rows of transactions still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxBatch {
    pub xmin: u64,
    pub rows: Vec<OutboxEntry>,
}

#[derive(Debug, FromQueryResult)]
struct XminRow {
    xmin: i64,
}

/// The oldest transaction still running, cluster-wide (`pg_snapshot_xmin`).
pub async fn snapshot_xmin<C: ConnectionTrait>(db: &C) -> Result<u64, StoreError> {
    let row = XminRow::find_by_statement(stmt("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin", vec![]))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.xmin as u64)
}

/// Which database this is (its oid and name): an index built from another database, or from
/// this one before it was recreated, must not be followed from its old checkpoint.
pub async fn database_identity<C: ConnectionTrait>(db: &C) -> Result<String, StoreError> {
    #[derive(Debug, FromQueryResult)]
    struct Row {
        identity: String,
    }
    let row = Row::find_by_statement(stmt(
        "SELECT oid::text || ':' || datname AS identity FROM pg_database WHERE datname = current_database()",
        vec![],
    ))
    .one(db)
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(row.identity)
}

/// Up to `limit` outbox rows after `after`, leaving out the ids in `skip`, and the xmin of the
/// snapshot they were read in.
pub async fn read_outbox<C: ConnectionTrait>(db: &C, after: OutboxPosition, skip: &[i64], limit: u64) -> Result<OutboxBatch, StoreError> {
    // One statement, so one snapshot: pg_current_snapshot() is the statement's own snapshot.
    #[derive(Debug, FromQueryResult)]
    struct Row {
        xmin: i64,
        rows: serde_json::Value,
    }
    let skip = skip.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let row = Row::find_by_statement(stmt(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
         COALESCE((SELECT jsonb_agg(jsonb_build_array(o.id, o.txid::text::bigint, o.aggregate, o.aggregate_id, o.kind) \
                   ORDER BY o.txid, o.id) \
          FROM (SELECT id, txid, aggregate, aggregate_id, kind FROM outbox \
                WHERE (txid, id) > ($1::text::xid8, $2) \
                  AND NOT (id = ANY(string_to_array($3, ',')::bigint[])) \
                ORDER BY txid, id LIMIT $4) o), '[]'::jsonb) AS rows",
        vec![after.txid.to_string().into(), after.id.into(), skip.into(), (limit as i64).into()],
    ))
    .one(db)
    .await?
    .ok_or(StoreError::NotFound)?;
    let tuples: Vec<(i64, i64, String, String, String)> =
        serde_json::from_value(row.rows).map_err(|e| StoreError::Db(sea_orm::DbErr::Json(e.to_string())))?;
    Ok(OutboxBatch {
        xmin: row.xmin as u64,
        rows: tuples
            .into_iter()
            .map(|(id, txid, aggregate, aggregate_id, kind)| OutboxEntry { id, txid, aggregate, aggregate_id, kind })
            .collect(),
    })
}

/// Deletes outbox rows older than `max_age_secs`; returns how many.
pub async fn prune_outbox<C: ConnectionTrait>(db: &C, max_age_secs: u64) -> Result<u64, StoreError> {
    Ok(db
        .execute_raw(stmt("DELETE FROM outbox WHERE created_at < now() - make_interval(secs => $1)", vec![(max_age_secs as f64).into()]))
        .await?
        .rows_affected())
}

/// A live product as the search index holds it.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct SearchProduct {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category_id: i64,
    pub price_minor: i64,
    pub currency: String,
    pub available: i32,
    pub rating: f32,
    pub rating_count: i32,
    pub created_at: DateTime<Utc>,
}

const SEARCH_PRODUCT: &str = "SELECT p.id, p.title, p.description, p.brand, p.category_id, p.price_minor, p.currency, \
    COALESCE(i.available, 0) AS available, p.rating, p.rating_count, p.created_at \
    FROM products p LEFT JOIN inventory i ON i.product_id = p.id WHERE p.deleted_at IS NULL";

/// The live products among `ids`; ids missing from the answer are deleted or never existed.
pub async fn search_products_by_ids<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<Vec<SearchProduct>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!("{SEARCH_PRODUCT} AND p.id = ANY(string_to_array($1, ',')::bigint[]) ORDER BY p.id");
    Ok(SearchProduct::find_by_statement(stmt(&sql, vec![list.into()])).all(db).await?)
}

/// Up to `limit` live products with ids above `after_id`, in id order (a full scan in pages).
pub async fn search_products_after<C: ConnectionTrait>(db: &C, after_id: i64, limit: u64) -> Result<Vec<SearchProduct>, StoreError> {
    let sql = format!("{SEARCH_PRODUCT} AND p.id > $1 ORDER BY p.id LIMIT $2");
    Ok(SearchProduct::find_by_statement(stmt(&sql, vec![after_id.into(), (limit as i64).into()])).all(db).await?)
}
