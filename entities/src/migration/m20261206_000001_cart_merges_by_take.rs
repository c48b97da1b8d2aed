//! A session's cart can now be merged more than once (lines added after a login are merged at
//! the next one): merges are recorded per take, `<session>:<take>`, and looked up by session
//! prefix, which this index serves whatever the database's collation.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX IF NOT EXISTS cart_merges_session_prefix ON cart_merges (session_id text_pattern_ops)")
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX IF EXISTS cart_merges_session_prefix").await.map(|_| ())
    }
}
