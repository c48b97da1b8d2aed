use std::sync::Arc;

use sea_orm::{DatabaseConnection, TransactionTrait};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use emporium_entities::store::{
    notifications,
    orders::{self, Transition},
};
use emporium_workflows::order::contract::RecordTransitionInput;

use crate::business_failure;

/// The database side of an order's lifecycle.
pub struct OrderActivities {
    db: DatabaseConnection,
}

impl OrderActivities {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[activities]
impl OrderActivities {
    /// Implements `RecordTransition`.
    #[activity]
    pub async fn record_transition(self: Arc<Self>, _ctx: ActivityContext, input: RecordTransitionInput) -> Result<(), ActivityError> {
        self.record_transition_now(input).await
    }
}

impl OrderActivities {
    pub async fn record_transition_now(&self, input: RecordTransitionInput) -> Result<(), ActivityError> {
        let parse = |raw: &str| Uuid::parse_str(raw).map_err(|e| business_failure("invalid_input", format!("{raw:?}: {e}"), None::<()>));
        let order_id = parse(&input.order_id)?;
        let user_id = parse(&input.user_id)?;
        let transition = Transition {
            order_id,
            dedupe_key: input.dedupe_key.clone(),
            event: input.event.clone(),
            data: input.data.clone(),
            status: input.status.as_str().to_owned(),
            carrier: input.shipment.as_ref().map(|s| (s.carrier.clone(), s.tracking_number.clone())),
            restock: input.restock.iter().map(|i| (i.product_id, i.quantity)).collect(),
            count_as_returned: input.count_as_returned,
        };
        let tx = self.db.begin().await?;
        let applied = orders::record_transition(&tx, &transition).await?;
        if applied && let Some(n) = &input.notification {
            notifications::enqueue(&tx, user_id, Some(order_id), &n.kind, &n.dedupe_key, &n.payload).await?;
        }
        tx.commit().await?;
        if applied {
            tracing::info!(order_id = %order_id, event = input.event, status = input.status.as_str(), "order transition recorded");
        }
        Ok(())
    }
}
