use std::sync::Arc;

use sea_orm::DatabaseConnection;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use emporium_entities::store::inventory;
use emporium_workflows::sweeper::contract::{SweepInput, SweepOutput};

/// Stock housekeeping.
pub struct InventoryActivities {
    db: DatabaseConnection,
}

impl InventoryActivities {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[activities]
impl InventoryActivities {
    /// Implements `ReleaseExpiredReservations`.
    #[activity]
    pub async fn release_expired_reservations(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SweepInput,
    ) -> Result<SweepOutput, ActivityError> {
        let released = inventory::release_expired(&self.db, input.grace_secs).await?;
        if !released.is_empty() {
            tracing::warn!(owners = ?released, "sweeper released abandoned reservations");
        }
        Ok(SweepOutput { released })
    }
}
