use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// Activities about the worker itself.
pub struct SystemActivities {
    db: DatabaseConnection,
}

impl SystemActivities {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[activities]
impl SystemActivities {
    /// Implements `emporium_workflows::probe::contract::DatabaseVersion`.
    #[activity]
    pub async fn database_version(self: Arc<Self>, _ctx: ActivityContext, _input: ()) -> Result<String, ActivityError> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT version() AS version"))
            .await?
            .ok_or_else(|| anyhow::anyhow!("SELECT version() returned no row"))?;
        Ok(row.try_get::<String>("", "version")?)
    }
}
