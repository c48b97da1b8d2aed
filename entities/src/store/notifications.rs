//! Customer notifications, queued in the transaction or step that causes them.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use super::StoreError;

/// Queues a notification once per `dedupe_key` (a retried step queues nothing twice).
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Option<Uuid>,
    kind: &str,
    dedupe_key: &str,
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO notifications (id, user_id, order_id, kind, dedupe_key, payload) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (dedupe_key) DO NOTHING",
        [Uuid::now_v7().into(), user_id.into(), order_id.into(), kind.into(), dedupe_key.into(), payload.clone().into()],
    ))
    .await?;
    Ok(())
}
