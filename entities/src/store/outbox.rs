use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ConnectionTrait,
};
use serde::Serialize;

use super::StoreError;
use crate::entity::outbox::{self, OutboxKind};

/// Appends a change to the outbox. Call it inside the transaction that makes the change, so
/// the search index hears of exactly the changes that were committed.
pub async fn append<C: ConnectionTrait, P: Serialize>(
    db: &C,
    aggregate: &str,
    aggregate_id: impl ToString,
    kind: OutboxKind,
    payload: &P,
) -> Result<i64, StoreError> {
    let payload = serde_json::to_value(payload).map_err(|e| StoreError::Db(sea_orm::DbErr::Json(e.to_string())))?;
    let row = outbox::ActiveModel {
        id: NotSet,
        aggregate: Set(aggregate.to_owned()),
        aggregate_id: Set(aggregate_id.to_string()),
        kind: Set(kind),
        payload: Set(payload),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(row.id)
}
