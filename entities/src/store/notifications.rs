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

#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub kind: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn find_by_key<C: ConnectionTrait>(db: &C, dedupe_key: &str) -> Result<Option<Notification>, StoreError> {
    use sea_orm::FromQueryResult;
    Ok(Notification::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, user_id, order_id, kind, dedupe_key, payload, status, attempts, created_at FROM notifications WHERE dedupe_key = $1",
        [dedupe_key.into()],
    ))
    .one(db)
    .await?)
}

/// Where a delivery attempt left the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    Logged,
    /// Still PENDING: another attempt follows.
    Retrying,
    Failed,
}

/// Records a delivery attempt and its outcome.
pub async fn record_attempt<C: ConnectionTrait>(db: &C, id: Uuid, status: DeliveryStatus, error: Option<&str>) -> Result<(), StoreError> {
    let status = match status {
        DeliveryStatus::Delivered => "DELIVERED",
        DeliveryStatus::Logged => "LOGGED",
        DeliveryStatus::Retrying => "PENDING",
        DeliveryStatus::Failed => "FAILED",
    };
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE notifications SET status = $2, attempts = attempts + 1, last_error = $3, \
         delivered_at = CASE WHEN $2 IN ('DELIVERED', 'LOGGED') THEN now() ELSE delivered_at END WHERE id = $1",
        [id.into(), status.into(), error.map(str::to_owned).into()],
    ))
    .await?;
    Ok(())
}
